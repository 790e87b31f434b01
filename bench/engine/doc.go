// Package engine compares herald's WebSocket engine (package ws, in its
// blocking and its event mode) with two peer libraries,
// github.com/gorilla/websocket and github.com/lxzan/gws, at the level of
// the engine: the same echo, fan-out and idle-connection workloads served
// by each, driven by one client library (gorilla's) for all of them.
//
// Server starts one engine on a loopback listener; the benchmarks in
// engine_test.go run the client side in a separate process (the test
// binary re-executed, see RunClient) so that the allocations and CPU
// profile the benchmark reports belong to the server engine alone.
// TestIdleMemory measures the memory an idle upgraded connection costs,
// each engine in a fresh server process (see RunIdleServer).
//
// RESULTS.md in this directory holds the measured figures and the
// commands that reproduce them.
package engine

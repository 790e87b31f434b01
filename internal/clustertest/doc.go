// Package clustertest holds herald's multi-process integration tests: it
// builds the herald binary, runs several nodes as separate processes on
// 127.0.0.1 sharing a Redis or NATS broker, and checks from the outside
// (server API over HTTP, clients over WebSocket) what a cluster promises:
// publications reach every node in order, presence and /api/info are
// cluster-wide, direct messages and disconnects reach the user's node, a
// client recovers on another node, and nodes ride out a broker outage.
//
// The tests need real servers. The shared ones come from HERALD_TEST_REDIS
// and HERALD_TEST_NATS (`eval "$(.ci/services start)"`); the outage tests
// start private redis-server and nats-server processes. Without them the
// tests skip, except under CI=true where they fail.
//
// BenchmarkCluster measures API publishes and WebSocket deliveries per
// second with one and three nodes (docs/scaling.md).
//
// The package has no non-test code.
package clustertest

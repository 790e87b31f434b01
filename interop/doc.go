// Package interop holds herald's WebSocket interoperability tests: herald's
// server (ws.Accept behind net/http and ws.AcceptConn on a raw listener,
// in blocking and in event mode) against gorilla/websocket, coder/websocket and the Node.js ws package as
// clients, and herald's client (ws.Dial) against gorilla/websocket and
// coder/websocket servers. It is a separate module so that those peers
// never become dependencies of herald itself.
//
// Every pairing runs the same script, with and without permessage-deflate:
// text and binary messages from empty to 1 MiB (some fragmented), pings in
// both directions, and closing handshakes started by either side with
// application close codes.
package interop

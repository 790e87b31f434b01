// Package ws is herald's WebSocket engine: RFC 6455 with permessage-deflate
// (RFC 7692), server (Accept, AcceptConn) and client (Dial).
package ws

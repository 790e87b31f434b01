package server

import (
	"fmt"

	wstransport "github.com/heraldhq/herald/internal/transport/ws"
	"github.com/heraldhq/herald/ws"
)

// newWSHandler builds the /ws handler from the configuration: allowed
// origins, compression, the per-connection outbound queue bounds and the
// message size limit.
func (n *node) newWSHandler() (*wstransport.Handler, error) {
	opts := wstransport.Options{
		Sessions:       n.sessions,
		MaxMessageSize: int(n.cfg.MaxMessageSize),
		Logger:         n.log,
		Metrics:        n.metrics.Transport(wstransport.TransportName),
		Accept: ws.AcceptOptions{
			OriginPatterns: n.cfg.AllowedOrigins,
			// The handler uses no request: the handshake is checked
			// from its head without building one (no garbage per
			// connection beyond the connection's own state).
			OmitRequest: true,
			Conn: ws.ConnOptions{
				QueueBytes:    n.cfg.ClientQueue.Bytes,
				QueueMessages: n.cfg.ClientQueue.Messages,
			},
		},
	}
	if n.cfg.Compression.Enabled {
		opts.Accept.Compression = &ws.CompressionOptions{Threshold: n.cfg.Compression.Threshold}
	}
	h, err := wstransport.NewHandler(opts)
	if err != nil {
		return nil, fmt.Errorf("server: %w", err)
	}
	return h, nil
}

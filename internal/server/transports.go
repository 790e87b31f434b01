package server

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"

	tcptransport "github.com/heraldhq/herald/internal/transport/tcp"
	udptransport "github.com/heraldhq/herald/internal/transport/udp"
)

// newSocketTransports creates the TCP and UDP transports that the
// configuration enables (tcp_listen, udp_listen). They share the session
// manager, and so the heartbeats and the drain, with WebSocket.
func (n *node) newSocketTransports(tcpTLS *tls.Config) error {
	if n.cfg.TCPListen != "" {
		t, err := tcptransport.New(tcptransport.Options{
			Sessions:      n.sessions,
			TLS:           tcpTLS,
			Metrics:       n.metrics.Transport(tcptransport.TransportName),
			MaxFrameSize:  int(n.cfg.MaxMessageSize),
			QueueBytes:    n.cfg.ClientQueue.Bytes,
			QueueMessages: n.cfg.ClientQueue.Messages,
			Logger:        n.log,
		})
		if err != nil {
			return fmt.Errorf("server: tcp transport: %w", err)
		}
		n.tcp = t
		n.tcpTLS = tcpTLS != nil
	}
	if n.cfg.UDPListen != "" {
		u, err := udptransport.New(udptransport.Options{
			Sessions: n.sessions,
			Logger:   n.log,
			Metrics:  n.metrics.Transport(udptransport.TransportName),
		})
		if err != nil {
			return fmt.Errorf("server: udp transport: %w", err)
		}
		n.udp = u
	}
	return n.registerSocketMetrics()
}

// registerSocketMetrics exports the TCP and UDP transports' counters.
func (n *node) registerSocketMetrics() error {
	m := n.metrics
	var regs []error
	if t := n.tcp; t != nil {
		regs = append(regs,
			m.CounterFunc("tcp_hello_failed_total", "TCP connections closed during the hello (bad magic, version, encoding, timeout).",
				func() float64 { return float64(t.Stats().HelloFailed) }),
			m.CounterFunc("tcp_overflows_total", "TCP publications refused by a full outbound queue (each disconnects a slow consumer).",
				func() float64 { return float64(t.Stats().Overflows) }),
		)
	}
	if u := n.udp; u != nil {
		regs = append(regs,
			m.CounterFunc("udp_malformed_total", "UDP datagrams that failed to parse.",
				func() float64 { return float64(u.Stats().Malformed) }),
			m.CounterFunc("udp_bad_secret_total", "UDP datagrams whose session secret did not match (dropped).",
				func() float64 { return float64(u.Stats().BadSecret) }),
			m.CounterFunc("udp_write_drops_total", "UDP datagrams dropped because the socket's send buffer was full.",
				func() float64 { return float64(u.Stats().WriteDrops) }),
			m.CounterFunc("udp_too_large_total", "UDP messages not sent because they exceed the datagram size.",
				func() float64 { return float64(u.Stats().TooLarge) }),
		)
	}
	return errors.Join(regs...)
}

// socketListeners are the bound sockets of the TCP and UDP transports.
type socketListeners struct {
	tcp *fdLimitListener
	udp *net.UDPConn
}

// listenSockets binds tcp_listen and udp_listen. On error nothing stays
// open.
func (n *node) listenSockets(ctx context.Context) (socketListeners, error) {
	var l socketListeners
	if n.tcp != nil {
		raw, err := listen(ctx, n.cfg.TCPListen, n.cfg.ListenBacklog)
		if err != nil {
			return l, fmt.Errorf("server: tcp_listen: %w", err)
		}
		l.tcp = newFDLimitListener(raw, n.log)
	}
	if n.udp != nil {
		var lc net.ListenConfig
		pc, err := lc.ListenPacket(ctx, "udp", n.cfg.UDPListen)
		if err != nil {
			l.close()
			return socketListeners{}, fmt.Errorf("server: udp_listen: %w", err)
		}
		l.udp = pc.(*net.UDPConn)
	}
	return l, nil
}

// close closes the sockets that are open; safe to call twice.
func (l socketListeners) close() {
	if l.tcp != nil {
		l.tcp.Close()
	}
	if l.udp != nil {
		l.udp.Close()
	}
}

// serveTCP and serveUDP run a transport's accept or read loop until its
// socket closes.
func (n *node) serveTCP(ln net.Listener) {
	if err := n.tcp.Serve(ln); err != nil && !errors.Is(err, tcptransport.ErrServerClosed) && !errors.Is(err, net.ErrClosed) {
		n.log.Error("TCP transport stopped", "error", err)
	}
}

func (n *node) serveUDP(pc *net.UDPConn) {
	if err := n.udp.Serve(pc); err != nil && !errors.Is(err, udptransport.ErrServerClosed) && !errors.Is(err, net.ErrClosed) {
		n.log.Error("UDP transport stopped", "error", err)
	}
}

// shutdownSockets stops the TCP and UDP transports after the drain: it
// closes their sockets and waits for their connections and workers.
func (n *node) shutdownSockets(ctx context.Context) error {
	var errs []error
	if n.tcp != nil {
		if err := n.tcp.Shutdown(ctx); err != nil {
			errs = append(errs, fmt.Errorf("tcp transport: %w", err))
		}
	}
	if n.udp != nil {
		if err := n.udp.Shutdown(ctx); err != nil {
			errs = append(errs, fmt.Errorf("udp transport: %w", err))
		}
	}
	return errors.Join(errs...)
}

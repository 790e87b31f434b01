package redisbroker

import (
	"context"
	"log/slog"
	"net"
	"sync"
	"syscall"

	"github.com/redis/go-redis/v9"
)

// masterTracker makes a Sentinel-managed shard follow failovers with its
// pub/sub connection too.
//
// go-redis learns of a failover from the Sentinel's +switch-master event or
// when it dials, and then drops its pooled command connections to the old
// master; it leaves a pub/sub connection alone. After a switchover the old
// master keeps running until the Sentinel demotes it (seconds later), so
// that connection stays healthy and subscribed while publications go to the
// new master: messages are silently lost and no reconnect is reported.
//
// The tracker sees every connection the client dials (a dial hook) and so
// the address go-redis currently resolves the master to. When a connection
// is dialed to a new address, every connection to another address is
// closed: the pub/sub reader then reconnects to the new master,
// resubscribes and reports HandleReconnect, and commands still in flight on
// the old master fail instead of writing there. It is safe for concurrent
// use.
type masterTracker struct {
	log *slog.Logger

	mu     sync.Mutex
	master string // remote address of the latest dial
	conns  map[*trackedConn]string
}

func newMasterTracker(log *slog.Logger) *masterTracker {
	return &masterTracker{log: log, conns: make(map[*trackedConn]string)}
}

// DialHook implements redis.Hook.
func (m *masterTracker) DialHook(next redis.DialHook) redis.DialHook {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		conn, err := next(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		return m.track(conn), nil
	}
}

// ProcessHook implements redis.Hook.
func (m *masterTracker) ProcessHook(next redis.ProcessHook) redis.ProcessHook { return next }

// ProcessPipelineHook implements redis.Hook.
func (m *masterTracker) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}

// track registers conn and, when it leads to a new master, closes the
// connections to the former one.
func (m *masterTracker) track(conn net.Conn) net.Conn {
	remote := conn.RemoteAddr().String()
	tc := &trackedConn{Conn: conn, m: m}
	var wrapped net.Conn = tc
	if sc, ok := conn.(syscall.Conn); ok {
		// Keep go-redis's liveness check of idle pooled connections.
		wrapped = &trackedSyscallConn{trackedConn: tc, sc: sc}
	}
	var stale []*trackedConn
	m.mu.Lock()
	m.conns[tc] = remote
	previous := m.master
	if previous != remote {
		m.master = remote
		for c, a := range m.conns {
			if a != remote {
				stale = append(stale, c)
				delete(m.conns, c)
			}
		}
	}
	m.mu.Unlock()
	if previous != "" && previous != remote {
		m.log.Info("redis master changed; dropping connections to the former master",
			"from", previous, "to", remote, "connections", len(stale))
	}
	for _, c := range stale {
		_ = c.Conn.Close()
	}
	return wrapped
}

func (m *masterTracker) forget(tc *trackedConn) {
	m.mu.Lock()
	delete(m.conns, tc)
	m.mu.Unlock()
}

// trackedConn is a connection the tracker may close on a master change.
type trackedConn struct {
	net.Conn
	m *masterTracker
}

func (c *trackedConn) Close() error {
	c.m.forget(c)
	return c.Conn.Close()
}

// NetConn returns the wrapped connection, as crypto/tls.Conn does, for
// go-redis's socket inspection.
func (c *trackedConn) NetConn() net.Conn { return c.Conn }

// trackedSyscallConn also exposes the socket of a TCP connection.
type trackedSyscallConn struct {
	*trackedConn
	sc syscall.Conn
}

func (c *trackedSyscallConn) SyscallConn() (syscall.RawConn, error) { return c.sc.SyscallConn() }

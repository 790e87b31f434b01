package server

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"time"
)

// newPprofServer returns the HTTP server of the opt-in profiling endpoint
// (config debug.pprof_listen): net/http/pprof's handlers under
// /debug/pprof/ and nothing else. It runs on a listener of its own, so the
// client-facing listener never serves profiles, and only on loopback
// unless the configuration is marked insecure.
func newPprofServer() *http.Server {
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index) // named profiles: heap, goroutine, allocs, ...
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	return &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 10 * time.Second,
	}
}

// startPprofLocked opens the profiling listener and serves it; s.mu is
// held. It does nothing when debug.pprof_listen is empty.
func (s *Server) startPprofLocked(ctx context.Context) error {
	addr := s.cfg.Debug.PprofListen
	if addr == "" {
		return nil
	}
	ln, err := listen(ctx, addr, 0)
	if err != nil {
		return fmt.Errorf("server: debug.pprof_listen: %w", err)
	}
	srv := newPprofServer()
	s.pprofSrv, s.pprofLn = srv, ln
	s.goLocked(func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) && !errors.Is(err, net.ErrClosed) {
			s.log.Error("profiling server stopped", "error", err)
		}
	})
	s.log.Warn("serving runtime profiles without authentication", "pprof", "http://"+ln.Addr().String()+"/debug/pprof/")
	return nil
}

// PprofAddr returns the address of the profiling listener, or "" when it
// is off or the server has not started.
func (s *Server) PprofAddr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.pprofLn == nil {
		return ""
	}
	return s.pprofLn.Addr().String()
}

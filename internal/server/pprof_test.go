package server

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/heraldhq/herald/internal/config"
)

func TestPprofEndpoint(t *testing.T) {
	s, _ := startServer(t, func(c *config.Config) { c.Debug.PprofListen = "127.0.0.1:0" })
	addr := s.PprofAddr()
	if addr == "" || addr == s.Addr() {
		t.Fatalf("profiling address %q (main listener %q)", addr, s.Addr())
	}
	if body := get(t, "http://"+addr+"/debug/pprof/"); !strings.Contains(body, "goroutine") {
		t.Errorf("profile index: %.200s", body)
	}
	if body := get(t, "http://"+addr+"/debug/pprof/heap?debug=1"); !strings.Contains(body, "heap profile") {
		t.Errorf("heap profile: %.200s", body)
	}
	// The client-facing listener never serves profiles, and the profiling
	// listener serves nothing else.
	for _, url := range []string{"http://" + s.Addr() + "/debug/pprof/", "http://" + addr + "/api/info"} {
		resp, err := http.Get(url)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusNotFound {
			t.Errorf("GET %s: %d, want 404", url, resp.StatusCode)
		}
	}
}

func TestPprofOffByDefault(t *testing.T) {
	s, _ := startServer(t, nil)
	if addr := s.PprofAddr(); addr != "" {
		t.Fatalf("profiling listener %s without debug.pprof_listen", addr)
	}
}

func TestPprofRefusesNonLoopback(t *testing.T) {
	_, err := New(Options{Config: testConfig(func(c *config.Config) { c.Debug.PprofListen = "0.0.0.0:0" }),
		Logger: slog.New(slog.DiscardHandler), Out: io.Discard})
	if err == nil || !strings.Contains(err.Error(), "debug.pprof_listen") {
		t.Fatalf("non-loopback pprof_listen: %v", err)
	}
	// With --insecure the configuration is accepted (not started here:
	// tests listen on loopback only).
	s, err := New(Options{Config: testConfig(func(c *config.Config) {
		c.Debug.PprofListen = "0.0.0.0:0"
		c.Insecure = true
	}), Logger: slog.New(slog.DiscardHandler), Out: io.Discard})
	if err != nil {
		t.Fatalf("insecure: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
}

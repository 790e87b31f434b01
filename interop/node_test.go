package interop

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/heraldhq/herald/ws"
)

// nodeClient finds node and the installed ws package. Without node the
// test is skipped on a developer machine; with CI set, a missing node or
// a missing `npm ci` fails it.
func nodeClient(t *testing.T) (node, script string) {
	t.Helper()
	ci := os.Getenv("CI") != ""
	node, err := exec.LookPath("node")
	if err != nil {
		if ci {
			t.Fatal("CI is set but node is not installed")
		}
		t.Skip("node is not installed")
	}
	dir, err := filepath.Abs("node")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "ws", "package.json")); err != nil {
		t.Fatalf("the ws package is not installed: run `npm ci` in interop/node (%v)", err)
	}
	return node, filepath.Join(dir, "client.mjs")
}

// TestNodeClient runs node/client.mjs (the Node.js ws package) against
// herald's server.
func TestNodeClient(t *testing.T) {
	node, script := nodeClient(t)
	starts := map[string]func(t *testing.T, opts *ws.AcceptOptions) testServer{
		"Accept":           heraldHTTPServer,
		"AcceptConn":       heraldRawServer,
		"AcceptConn+Serve": heraldEventRawServer, // event mode
	}
	configs := map[string]serverConfig{}
	for _, sc := range heraldServerConfigs() {
		configs[sc.name] = sc
	}
	// Client modes: plain (no offer), deflate (client_max_window_bits),
	// deflate-window10 (both windows limited to 1 KiB).
	pairings := []struct{ start, config, mode string }{
		{"Accept", "plain", "plain"},
		{"Accept", "plain", "deflate"},
		{"Accept", "deflate", "plain"},
		{"Accept", "deflate", "deflate"},
		{"Accept", "deflate", "deflate-window10"},
		{"Accept", "deflate-context", "deflate"},
		{"Accept", "deflate-window-10", "deflate-window10"},
		{"AcceptConn", "deflate", "deflate"},
		{"AcceptConn", "deflate-context", "deflate-window10"},
		{"AcceptConn+Serve", "deflate", "deflate"},
		{"AcceptConn+Serve", "deflate-window-10", "deflate-window10"},
	}
	for _, p := range pairings {
		mode := p.mode
		t.Run(p.start+"/"+p.config+"/"+mode, func(t *testing.T) {
			opts := configs[p.config].opts()
			srv := starts[p.start](t, opts)
			expect := "expect-plain"
			if mode != "plain" && opts.Compression != nil {
				expect = "expect-deflate"
			}
			ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
			defer cancel()
			out, err := exec.CommandContext(ctx, node, script, srv.url, mode, expect).CombinedOutput()
			if err != nil {
				t.Fatalf("node client: %v\n%s", err, out)
			}
			if end := waitEnd(t, srv.ends); end.code != clientCloseCode || end.reason != clientCloseReason {
				t.Fatalf("server saw close %d %q (%v), want %d %q", end.code, end.reason, end.err, clientCloseCode, clientCloseReason)
			}
			if end := waitEnd(t, srv.ends); end.err != nil {
				t.Fatalf("server close: %v", end.err)
			}
		})
	}
}

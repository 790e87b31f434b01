package interop

import (
	"testing"

	coder "github.com/coder/websocket"

	"github.com/heraldhq/herald/ws"
)

type clientKind struct {
	name     string
	compress bool // offers permessage-deflate
	dial     func(t *testing.T, url string) client
}

func peerClients() []clientKind {
	return []clientKind{
		{"gorilla", false, func(t *testing.T, url string) client { return dialGorilla(t, url, false) }},
		{"gorilla-deflate", true, func(t *testing.T, url string) client { return dialGorilla(t, url, true) }},
		{"coder", false, func(t *testing.T, url string) client { return dialCoder(t, url, coder.CompressionDisabled) }},
		{"coder-deflate-no-context", true, func(t *testing.T, url string) client {
			return dialCoder(t, url, coder.CompressionNoContextTakeover)
		}},
		{"coder-deflate-context", true, func(t *testing.T, url string) client {
			return dialCoder(t, url, coder.CompressionContextTakeover)
		}},
	}
}

type serverConfig struct {
	name string
	opts func() *ws.AcceptOptions
}

func heraldServerConfigs() []serverConfig {
	return []serverConfig{
		{"plain", func() *ws.AcceptOptions { return &ws.AcceptOptions{ReadLimit: readLimit} }},
		{"deflate", func() *ws.AcceptOptions {
			return &ws.AcceptOptions{ReadLimit: readLimit, Compression: &ws.CompressionOptions{}}
		}},
		{"deflate-context", func() *ws.AcceptOptions {
			return &ws.AcceptOptions{ReadLimit: readLimit, Compression: &ws.CompressionOptions{ContextTakeover: true, Threshold: 16}}
		}},
		{"deflate-window-10", func() *ws.AcceptOptions {
			return &ws.AcceptOptions{ReadLimit: readLimit, Compression: &ws.CompressionOptions{MaxWindowBits: 10, Level: 6}}
		}},
	}
}

// herald's server, through ws.Accept and ws.AcceptConn, against gorilla
// and coder clients. The pairings cover every negotiation outcome without
// running the whole cross product (each pairing moves several MiB, which
// is slow under the race detector).
func TestHeraldServer(t *testing.T) {
	starts := map[string]func(t *testing.T, opts *ws.AcceptOptions) testServer{
		"Accept":     heraldHTTPServer,
		"AcceptConn": heraldRawServer,
	}
	runServerPairings(t, starts, []serverPairing{
		{"Accept", "plain", "gorilla"},
		{"Accept", "plain", "coder-deflate-context"}, // offer declined: server without compression
		{"Accept", "deflate", "coder"},               // no offer
		{"Accept", "deflate", "gorilla-deflate"},
		{"Accept", "deflate", "coder-deflate-no-context"},
		{"Accept", "deflate", "coder-deflate-context"},
		{"Accept", "deflate-context", "gorilla-deflate"},
		{"Accept", "deflate-context", "coder-deflate-context"},
		{"Accept", "deflate-window-10", "coder-deflate-context"},
		{"AcceptConn", "plain", "coder"},
		{"AcceptConn", "deflate", "gorilla-deflate"},
		{"AcceptConn", "deflate-context", "coder-deflate-context"},
	})
}

// herald's client against gorilla and coder servers, and against herald's
// own server.
func TestHeraldClient(t *testing.T) {
	clientOpts := map[string]*ws.DialOptions{
		"plain":            {ReadLimit: readLimit},
		"deflate":          {ReadLimit: readLimit, Compression: &ws.CompressionOptions{}},
		"deflate-context":  {ReadLimit: readLimit, Compression: &ws.CompressionOptions{ContextTakeover: true, Threshold: 16}},
		"deflate-window-9": {ReadLimit: readLimit, Compression: &ws.CompressionOptions{MaxWindowBits: 9}},
	}
	servers := map[string]func(t *testing.T) testServer{
		"gorilla":                  func(t *testing.T) testServer { return gorillaServer(t, false) },
		"gorilla-deflate":          func(t *testing.T) testServer { return gorillaServer(t, true) },
		"coder":                    func(t *testing.T) testServer { return coderServer(t, coder.CompressionDisabled) },
		"coder-deflate-no-context": func(t *testing.T) testServer { return coderServer(t, coder.CompressionNoContextTakeover) },
		"coder-deflate-context":    func(t *testing.T) testServer { return coderServer(t, coder.CompressionContextTakeover) },
		"herald-deflate": func(t *testing.T) testServer {
			return heraldRawServer(t, &ws.AcceptOptions{ReadLimit: readLimit, Compression: &ws.CompressionOptions{}})
		},
	}
	pairings := []struct {
		server, client string
		compressed     bool // expected negotiation outcome
	}{
		{"gorilla", "plain", false},
		{"gorilla", "deflate", false}, // server without compression
		{"gorilla-deflate", "plain", false},
		{"gorilla-deflate", "deflate", true},
		{"gorilla-deflate", "deflate-window-9", true}, // gorilla answers without server_max_window_bits
		{"coder", "deflate", false},
		{"coder-deflate-no-context", "deflate", true},
		{"coder-deflate-context", "deflate-context", true},
		{"coder-deflate-context", "deflate", true},
		// coder/websocket declines offers that limit its window
		// (server_max_window_bits), as RFC 7692 §7.1.2.1 allows.
		{"coder-deflate-context", "deflate-window-9", false},
		{"herald-deflate", "deflate-context", true},
		{"herald-deflate", "deflate-window-9", true},
	}
	for _, p := range pairings {
		t.Run(p.server+"/"+p.client, func(t *testing.T) {
			srv := servers[p.server](t)
			opts := clientOpts[p.client]
			runScript(t, func(t *testing.T) client { return dialHerald(t, srv.url, opts) }, srv.ends, p.compressed, p.server == "herald-deflate")
		})
	}
}

// serverPairing names a herald server starter, one of heraldServerConfigs
// and one of peerClients.
type serverPairing struct{ start, config, client string }

// runServerPairings runs the interop script for each pairing, expecting
// compression exactly when the client offers it and the server enables it.
func runServerPairings(t *testing.T, starts map[string]func(t *testing.T, opts *ws.AcceptOptions) testServer, pairings []serverPairing) {
	configs := map[string]serverConfig{}
	for _, sc := range heraldServerConfigs() {
		configs[sc.name] = sc
	}
	clients := map[string]clientKind{}
	for _, ck := range peerClients() {
		clients[ck.name] = ck
	}
	for _, p := range pairings {
		t.Run(p.start+"/"+p.config+"/"+p.client, func(t *testing.T) {
			opts := configs[p.config].opts()
			ck := clients[p.client]
			srv := starts[p.start](t, opts)
			want := ck.compress && opts.Compression != nil
			runScript(t, func(t *testing.T) client { return ck.dial(t, srv.url) }, srv.ends, want, true)
		})
	}
}

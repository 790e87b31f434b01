// Package server assembles a herald node from its configuration: the
// broker, the hub, client sessions and transports, the server API, metrics,
// health endpoints and the embedded demo, all behind one HTTP listener.
//
// HTTP routes on Config.Listen:
//
//	/ws        WebSocket client connections
//	/api/      server API (X-API-Key)
//	/metrics   Prometheus metrics
//	/healthz   200 while the process runs
//	/readyz    200 while accepting clients with a connected broker; 503 before Start
//	           finished, while a cluster broker has not connected yet, and from the start of Shutdown
//	/          the embedded demo app and JavaScript client (demo.enabled)
//
// With tcp_listen and udp_listen the TCP and UDP transports serve the same
// protocol on their own sockets.
//
// With tls.cert_file and tls.key_file the HTTP listener serves HTTPS (and so
// wss://) and the TCP transport TLS (unless tls.plain_tcp). The certificate
// is re-read by Reload (the serve command calls it on SIGHUP) and whenever
// the files change; new handshakes get the new certificate.
//
// Lifecycle: New validates and builds everything without touching the
// network; Start raises the open file limit, starts the broker and hub,
// binds the listeners and serves; Shutdown drains. A Server is safe for
// concurrent use; Shutdown is idempotent, bounded by its context, and once
// it has begun the server starts no new goroutines.
//
// Goroutines owned by a Server: the HTTP serve loop, the TCP accept loop,
// the UDP read loop, the demo ticker and, with TLS, the certificate file
// watcher (started by New). Shutdown ends them and waits for them, also
// when Start was never called; the broker, hub, session manager and transports own their own
// goroutines and are closed by Shutdown too.
package server

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/heraldhq/herald/internal/config"
	"github.com/heraldhq/herald/internal/httpapi"
	"github.com/heraldhq/herald/internal/metrics"
	"github.com/heraldhq/herald/internal/tlsreload"
	wstransport "github.com/heraldhq/herald/internal/transport/ws"
	"github.com/heraldhq/herald/internal/wire"
)

// Options configure New. Config is required.
type Options struct {
	// Config is the validated configuration. New copies what it needs.
	Config *config.Config
	// Version is reported in connect replies, /api/info and logs.
	Version string
	// Logger receives operational logs. Default slog.Default().
	Logger *slog.Logger
	// Out receives the API key and token secret generated when the
	// configuration has none (loopback or --insecure only), and, once
	// Start succeeded, a short summary for a person at the terminal: the
	// URLs, an example publish with curl and an example token command
	// (configured secrets appear there only as placeholders). Default
	// os.Stdout.
	Out io.Writer
}

// Server is one herald node. Create it with New.
type Server struct {
	cfg     config.Config
	version string
	log     *slog.Logger
	metrics *metrics.Metrics

	apiKey      string
	tokenSecret string
	out         io.Writer // Options.Out
	// generatedKeys: the API key and token secret were generated (and
	// printed) rather than configured.
	generatedAPIKey, generatedSecret bool

	// certs serves and reloads the TLS certificate; nil without TLS.
	certs *tlsreload.Reloader

	node    *node // broker, hub, sessions, transports
	handler http.Handler
	httpSrv *http.Server
	ws      *wstransport.Handler

	ready atomic.Bool

	mu           sync.Mutex // guards the fields below
	started      bool
	shuttingDown bool
	ln           *fdLimitListener
	front        *wsFront        // routes WebSocket upgrades past net/http; nil with TLS
	socks        socketListeners // TCP and UDP transports' sockets
	pprofSrv     *http.Server    // debug.pprof_listen; nil when off
	pprofLn      net.Listener
	wg           sync.WaitGroup // goroutines started by goLocked
	cancelBG     context.CancelFunc

	shutdownOnce sync.Once
	shutdownDone chan struct{}
	shutdownErr  error
}

// New builds a server from opts without opening any socket. It refuses a
// configuration that exposes the server on a non-loopback address without
// an API key and a token key, unless Config.Insecure is set; missing keys
// are then (and on loopback addresses) generated and printed to Out.
func New(opts Options) (*Server, error) {
	if opts.Config == nil {
		return nil, errors.New("server: Config is required")
	}
	cfg := *opts.Config
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("server: %w", err)
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Out == nil {
		opts.Out = os.Stdout
	}
	if opts.Version == "" {
		opts.Version = "dev"
	}
	if cfg.Node == "" {
		cfg.Node, _ = os.Hostname()
	}
	if err := cfg.CheckExposure(); err != nil {
		return nil, fmt.Errorf("server: %w", err)
	}
	s := &Server{
		cfg:          cfg,
		version:      opts.Version,
		log:          opts.Logger,
		metrics:      metrics.New(),
		apiKey:       cfg.APIKey,
		tokenSecret:  cfg.Token.Secret,
		out:          opts.Out,
		shutdownDone: make(chan struct{}),
	}
	var generated []string
	if s.apiKey == "" {
		s.apiKey = randomKey()
		s.generatedAPIKey = true
		generated = append(generated, "api_key:      "+s.apiKey)
	}
	if !cfg.HasTokenKey() {
		s.tokenSecret = randomKey()
		s.generatedSecret = true
		generated = append(generated, "token.secret: "+s.tokenSecret)
	}
	if len(generated) > 0 {
		fmt.Fprintf(opts.Out, "herald: generated for this run only (set them in the configuration to keep them):\n  %s\n",
			strings.Join(generated, "\n  "))
	}

	var tcpTLS *tls.Config
	if cfg.TLS.Enabled() {
		certs, err := tlsreload.New(cfg.TLS.CertFile, cfg.TLS.KeyFile, s.log)
		if err != nil {
			return nil, fmt.Errorf("server: tls: %w", err)
		}
		s.certs = certs
		if !cfg.TLS.PlainTCP {
			tcpTLS = certs.TLSConfig()
		}
	}
	ok := false
	defer func() {
		if !ok && s.certs != nil {
			s.certs.Close()
		}
	}()

	n, err := newNode(&s.cfg, s.tokenSecret, s.version, s.log, s.metrics, tcpTLS)
	if err != nil {
		return nil, err
	}
	s.node = n
	api, err := httpapi.New(apiBackend{h: n.hub}, httpapi.Options{
		APIKey:           s.apiKey,
		MaxBodyBytes:     cfg.APIMaxBodySize,
		MaxBatchCommands: cfg.APIMaxBatchCommands,
		MaxHistoryLimit:  cfg.History.MaxLimit,
		Metrics:          s.metrics,
		Logger:           s.log,
	})
	if err != nil {
		n.close(context.Background())
		return nil, fmt.Errorf("server: %w", err)
	}

	wsh, err := n.newWSHandler()
	if err != nil {
		n.close(context.Background())
		return nil, err
	}
	s.ws = wsh
	mux := http.NewServeMux()
	mux.Handle(wsPath, wsh)
	mux.Handle(httpapi.Prefix, api)
	mux.Handle("/metrics", s.metrics.Handler())
	mux.HandleFunc("/healthz", s.healthz)
	mux.HandleFunc("/readyz", s.readyz)
	if cfg.Demo.Enabled {
		mux.Handle("/", n.demoHandler())
	}
	s.handler = mux
	s.httpSrv = &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: readHeaderTimeout,
		IdleTimeout:       90 * time.Second,
		MaxHeaderBytes:    16 << 10,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
	}
	ok = true
	return s, nil
}

// wsPath is where WebSocket clients connect.
const wsPath = "/ws"

// readHeaderTimeout bounds reading a request head, on the WebSocket path
// and through net/http.
const readHeaderTimeout = 10 * time.Second

// randomKey returns 32 random bytes, URL-safe base64 encoded (43 chars).
func randomKey() string {
	var b [32]byte
	_, _ = rand.Read(b[:]) // never fails on Linux (getrandom)
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// APIKey returns the effective API key (configured or generated).
func (s *Server) APIKey() string { return s.apiKey }

// TokenSecret returns the effective HS256 token secret (configured or
// generated; "" when only public keys are configured).
func (s *Server) TokenSecret() string { return s.tokenSecret }

// Handler returns the server's HTTP routes, for tests that serve them
// themselves.
func (s *Server) Handler() http.Handler { return s.handler }

// Addr returns the address the HTTP listener is bound to, or "" before
// Start.
func (s *Server) Addr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ln == nil {
		return ""
	}
	return s.ln.Addr().String()
}

// TCPAddr returns the address the TCP transport is bound to, or "" when
// it is off or before Start.
func (s *Server) TCPAddr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.socks.tcp == nil {
		return ""
	}
	return s.socks.tcp.Addr().String()
}

// UDPAddr returns the address the UDP transport is bound to, or "" when
// it is off or before Start.
func (s *Server) UDPAddr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.socks.udp == nil {
		return ""
	}
	return s.socks.udp.LocalAddr().String()
}

// Ready reports whether the server accepts clients.
func (s *Server) Ready() bool { return s.ready.Load() }

// errShuttingDown is returned by Start after Shutdown began.
var errShuttingDown = errors.New("server: shutting down")

// Start raises the open file limit, starts the broker and hub, binds the
// listeners and serves in the background. ctx bounds the start only. After
// a failed Start, call Shutdown to release what was started.
func (s *Server) Start(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.shuttingDown {
		return errShuttingDown
	}
	if s.started {
		return errors.New("server: already started")
	}
	s.started = true

	if soft, hard, err := raiseFDLimit(); err != nil {
		s.log.Warn("could not raise the open file limit", "error", err)
	} else {
		s.log.Info("open file limit", "soft", soft, "hard", hard)
	}
	if err := s.node.start(ctx); err != nil {
		return err
	}
	raw, err := listen(ctx, s.cfg.Listen, s.cfg.ListenBacklog)
	if err != nil {
		return fmt.Errorf("server: %w", err)
	}
	socks, err := s.node.listenSockets(ctx)
	if err != nil {
		raw.Close()
		return err
	}
	s.ln = newFDLimitListener(raw, s.log)
	s.socks = socks
	if err := s.startPprofLocked(ctx); err != nil {
		return err // Shutdown closes the listeners opened so far
	}
	bg, cancel := context.WithCancel(context.Background())
	s.cancelBG = cancel

	ln := s.ln
	var served net.Listener
	if s.certs != nil {
		// No ALPN: HTTP/1.1 only, since WebSocket upgrades need it.
		// Every TLS connection goes through net/http, which fills in
		// r.TLS only for a *tls.Conn it accepted itself (and a TLS
		// WebSocket connection keeps a reading goroutine anyway).
		served = tls.NewListener(ln, s.certs.TLSConfig())
	} else {
		s.front = newWSFront(ln, wsPath, s.ws.ServeConn, readHeaderTimeout)
		served = s.front
	}
	s.goLocked(func() {
		if err := s.httpSrv.Serve(served); err != nil && !errors.Is(err, http.ErrServerClosed) && !errors.Is(err, net.ErrClosed) {
			s.log.Error("HTTP server stopped", "error", err)
		}
	})
	if socks.tcp != nil {
		s.goLocked(func() { s.node.serveTCP(socks.tcp) })
	}
	if socks.udp != nil {
		s.goLocked(func() { s.node.serveUDP(socks.udp) })
	}
	if s.cfg.Demo.Enabled {
		s.goLocked(func() { s.node.runDemo(bg) })
	}
	if d := s.cfg.Memory.ReleaseAfterBurst; d > 0 {
		r := &memoryReleaser{conns: s.node.sessions.Len, release: releaseMemory, settle: d, log: s.log}
		s.goLocked(func() { r.run(bg) })
	}
	s.ready.Store(true)
	httpURL, wsURL := s.urlsLocked()
	attrs := []any{"version", s.version, "node", s.cfg.Node, "http", httpURL, "ws", wsURL}
	if socks.tcp != nil {
		attrs = append(attrs, "tcp", socks.tcp.Addr().String(), "tcp_tls", s.node.tcpTLS)
	}
	if socks.udp != nil {
		attrs = append(attrs, "udp", socks.udp.LocalAddr().String())
	}
	attrs = append(attrs, "broker", s.cfg.Broker.Type, "demo", s.cfg.Demo.Enabled)
	s.log.Info("herald listening", attrs...)
	s.printWelcomeLocked(socks)
	return nil
}

// printWelcomeLocked tells a person at the terminal where the node is and
// how to try it: the demo, the client endpoints, a publish with curl and a
// token for a user. Only generated secrets (already printed) appear in it;
// configured ones are shown as placeholders.
func (s *Server) printWelcomeLocked(socks socketListeners) {
	httpURL, wsURL := s.urlsLocked()
	var b strings.Builder
	fmt.Fprintf(&b, "herald %s serving on %s\n", s.version, httpURL)
	if s.cfg.Demo.Enabled {
		fmt.Fprintf(&b, "  demo:      %s/  (open it in two browser windows)\n", httpURL)
	}
	fmt.Fprintf(&b, "  websocket: %s\n", wsURL)
	if socks.tcp != nil {
		tls := ""
		if s.node.tcpTLS {
			tls = " (TLS)"
		}
		fmt.Fprintf(&b, "  tcp:       %s%s\n", socks.tcp.Addr(), tls)
	}
	if socks.udp != nil {
		fmt.Fprintf(&b, "  udp:       %s\n", socks.udp.LocalAddr())
	}
	key := "$HERALD_API_KEY"
	if s.generatedAPIKey {
		key = s.apiKey
	}
	if ch := s.exampleChannel(); ch != "" {
		fmt.Fprintf(&b, "  publish:   curl -H \"X-API-Key: %s\" -d '{\"channel\":\"%s\",\"data\":{\"text\":\"hello\"}}' %s/api/publish\n",
			key, ch, httpURL)
	}
	if s.tokenSecret != "" {
		secret := "$HERALD_TOKEN_SECRET"
		if s.generatedSecret {
			secret = s.tokenSecret
		}
		fmt.Fprintf(&b, "  token:     herald token --user 42 --token-secret %s\n", secret)
	}
	_, _ = io.WriteString(s.out, b.String())
}

// exampleChannel returns a channel clients may publish to in the
// configured namespaces (the demo chat's lobby by default), or "".
func (s *Server) exampleChannel() string {
	if _, ok := s.cfg.Namespace("chat"); ok {
		return "chat:lobby"
	}
	if _, ok := s.cfg.Namespace(""); ok {
		return "lobby"
	}
	if len(s.cfg.Namespaces) > 0 {
		return s.cfg.Namespaces[0].Name + ":example"
	}
	return ""
}

// URLs returns the base URL of the HTTP listener (http:// or https://) and
// the WebSocket endpoint (ws:// or wss://), or "" before Start.
func (s *Server) URLs() (httpURL, wsURL string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.urlsLocked()
}

func (s *Server) urlsLocked() (httpURL, wsURL string) {
	if s.ln == nil {
		return "", ""
	}
	addr := s.ln.Addr().String()
	if s.certs != nil {
		return "https://" + addr, "wss://" + addr + wsPath
	}
	return "http://" + addr, "ws://" + addr + wsPath
}

// Reload re-reads what can change without a restart: the TLS certificate
// and key. On failure the previous certificate stays in use and the error
// says why; without TLS it does nothing. Safe for concurrent use.
func (s *Server) Reload() error {
	if s.certs == nil {
		return nil
	}
	if err := s.certs.Reload(); err != nil {
		return fmt.Errorf("server: %w", err)
	}
	return nil
}

// TLSEnabled reports whether the listeners serve TLS.
func (s *Server) TLSEnabled() bool { return s.certs != nil }

// goLocked starts f as a goroutine owned by s; s.mu must be held and
// shutdown not begun.
func (s *Server) goLocked(f func()) {
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		f()
	}()
}

// Shutdown stops the server: /readyz turns 503, the HTTP and TCP listeners
// close (no new connections), every client is disconnected with 1001 and reconnect advice,
// spread over drain_timeout so that they do not all reconnect at the same
// moment, in-flight API requests finish, then the hub, sessions and broker
// close. When ctx ends first, whatever remains is closed at once. It
// returns the first error; calling it again waits for the first call and
// returns the same result.
func (s *Server) Shutdown(ctx context.Context) error {
	s.shutdownOnce.Do(func() {
		s.shutdownErr = s.shutdown(ctx)
		close(s.shutdownDone)
	})
	select {
	case <-s.shutdownDone:
		return s.shutdownErr
	case <-ctx.Done():
		return fmt.Errorf("server: shutdown: %w", ctx.Err())
	}
}

func (s *Server) shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.shuttingDown = true
	var ln net.Listener
	if s.ln != nil {
		ln = s.ln
	}
	if s.front != nil {
		ln = s.front // closes s.ln and waits for the heads being read
	}
	socks := s.socks
	cancel := s.cancelBG
	pprofSrv := s.pprofSrv
	s.mu.Unlock()
	s.ready.Store(false)
	s.log.Info("shutting down", "drain", s.cfg.DrainTimeout.String())

	var errs []error
	if ln != nil {
		if err := ln.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
			errs = append(errs, fmt.Errorf("close listener: %w", err))
		}
	}
	if socks.tcp != nil {
		socks.tcp.Close() // UDP stays open: its clients get the drain's 1001 through it
	}
	if pprofSrv != nil {
		// Profiles in progress (a 30 s CPU profile) are cut short rather
		// than waited for.
		if err := pprofSrv.Close(); err != nil {
			errs = append(errs, fmt.Errorf("close profiling server: %w", err))
		}
	}
	if cancel != nil {
		cancel() // demo ticker, memory releaser
	}
	// Clients first, spread over the drain window; a client reconnecting
	// meanwhile finds the listener closed and tries another node.
	if err := s.node.drain(ctx, s.cfg.DrainTimeout); err != nil {
		errs = append(errs, err)
	}
	if err := s.node.shutdownSockets(ctx); err != nil {
		errs = append(errs, err)
	}
	if err := s.httpSrv.Shutdown(ctx); err != nil {
		errs = append(errs, fmt.Errorf("http shutdown: %w", err))
		s.httpSrv.Close()
	}
	// The components close with a short bound of their own even when ctx
	// already ran out, so that they release what they hold.
	closeCtx, closeCancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
	defer closeCancel()
	if err := s.node.close(closeCtx); err != nil {
		errs = append(errs, err)
	}
	s.wg.Wait()
	if s.certs != nil {
		s.certs.Close()
	}
	if err := errors.Join(errs...); err != nil {
		s.log.Warn("shutdown finished with errors", "error", err)
		return fmt.Errorf("server: shutdown: %w", err)
	}
	s.log.Info("shutdown complete")
	return nil
}

func (s *Server) healthz(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	_, _ = io.WriteString(w, `{"status":"ok"}`+"\n")
}

func (s *Server) readyz(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	if !s.ready.Load() || !brokerConnected(s.node.broker) {
		w.WriteHeader(http.StatusServiceUnavailable)
		_, _ = io.WriteString(w, `{"status":"not ready"}`+"\n")
		return
	}
	_, _ = io.WriteString(w, `{"status":"ready"}`+"\n")
}

// NewLogger returns the logger described by c writing to w.
func NewLogger(c config.Log, w io.Writer) *slog.Logger {
	var level slog.Level
	switch c.Level {
	case "debug":
		level = slog.LevelDebug
	case "warn":
		level = slog.LevelWarn
	case "error":
		level = slog.LevelError
	default:
		level = slog.LevelInfo
	}
	opts := &slog.HandlerOptions{Level: level}
	if c.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// shutdownDisconnect is what clients receive when the node drains.
var shutdownDisconnect = wire.Disconnect{Code: wire.DisconnectShutdown, Reason: "server shutting down", Reconnect: true}

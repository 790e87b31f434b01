package engine

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
	"github.com/heraldhq/herald/ws"
	"github.com/lxzan/gws"
)

// Engine names a server engine under comparison.
type Engine string

// The engines compared.
const (
	// HeraldEvent is herald's event mode: ws.AcceptConn, then Conn.Serve;
	// messages arrive on the poller's workers, replies are queued.
	HeraldEvent Engine = "herald-event"
	// HeraldBlocking is herald's blocking mode: ws.AcceptConn and one
	// goroutine per connection looping on Read and Write.
	HeraldBlocking Engine = "herald-blocking"
	// Gorilla is gorilla/websocket behind net/http: Upgrader.Upgrade with
	// its default buffers (the hijacked 4 KiB reader and writer), then one
	// goroutine per connection looping on ReadMessage and WriteMessage.
	Gorilla Engine = "gorilla"
	// GWS is lxzan/gws's event API: the connection's ReadLoop runs in the
	// goroutine that accepted it (as gws.Server does) and calls
	// OnMessage, which replies with WriteMessage.
	GWS Engine = "gws"
)

// Engines lists every engine, herald first.
var Engines = []Engine{HeraldEvent, HeraldBlocking, Gorilla, GWS}

// ParseEngine returns the Engine called name.
func ParseEngine(name string) (Engine, error) {
	for _, e := range Engines {
		if string(e) == name {
			return e, nil
		}
	}
	return "", fmt.Errorf("engine: unknown engine %q", name)
}

// Config selects what a Server runs.
type Config struct {
	Engine Engine
	// Deflate enables permessage-deflate without context takeover in
	// either direction, at compression level 1, compressing every data
	// message whatever its size (gorilla has no threshold, so the others
	// are set to compress everything too).
	Deflate bool
	// Track keeps every connection in a set so that Broadcast can reach
	// them and Close can close them. Without it the server holds no
	// reference of its own (the idle-memory measurement), Broadcast
	// reaches nobody, and Close waits for the clients to disconnect.
	Track bool
}

// Server is one engine serving WebSocket connections on a loopback
// listener. Every data message it receives is echoed back unchanged.
// Its methods are safe for concurrent use.
type Server struct {
	cfg Config
	url string
	ln  net.Listener
	hs  *http.Server // Gorilla only

	heraldOpts *ws.AcceptOptions
	gorillaUp  *websocket.Upgrader
	gwsUp      *gws.Upgrader

	upgraded atomic.Int64 // connections that completed the handshake
	open     atomic.Int64 // upgraded connections not yet ended

	mu      sync.Mutex
	closed  bool
	herald  map[*ws.Conn]struct{}
	gorilla map[*gorillaConn]struct{}
	gws     map[*gws.Conn]struct{}

	// Broadcast's reusable snapshots of the sets, under bcastMu.
	bcastMu      sync.Mutex
	bcastHerald  []*ws.Conn
	bcastGorilla []*gorillaConn
	bcastGWS     []*gws.Conn

	wg        sync.WaitGroup // accept loop, per-connection goroutines, event-mode connections
	closeOnce sync.Once
}

// NewServer starts cfg.Engine on a new listener on 127.0.0.1.
func NewServer(cfg Config) (*Server, error) {
	if _, err := ParseEngine(string(cfg.Engine)); err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("engine: listen: %w", err)
	}
	s := &Server{
		cfg:     cfg,
		url:     "ws://" + ln.Addr().String() + "/",
		ln:      ln,
		herald:  map[*ws.Conn]struct{}{},
		gorilla: map[*gorillaConn]struct{}{},
		gws:     map[*gws.Conn]struct{}{},
	}
	switch cfg.Engine {
	case HeraldEvent, HeraldBlocking:
		s.heraldOpts = &ws.AcceptOptions{ReadLimit: 16 << 20}
		if cfg.Deflate {
			s.heraldOpts.Compression = &ws.CompressionOptions{Threshold: 1, Level: 1}
		}
		s.wg.Add(1)
		go s.acceptLoop(s.serveHerald)
	case Gorilla:
		s.gorillaUp = &websocket.Upgrader{EnableCompression: cfg.Deflate}
		s.hs = &http.Server{Handler: http.HandlerFunc(s.serveGorilla), ReadHeaderTimeout: 10 * time.Second}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			_ = s.hs.Serve(ln) // returns when Close closes the server
		}()
	case GWS:
		opt := &gws.ServerOption{ReadMaxPayloadSize: 16 << 20}
		if cfg.Deflate {
			opt.PermessageDeflate = gws.PermessageDeflate{Enabled: true, Level: 1, Threshold: 1}
		}
		s.gwsUp = gws.NewUpgrader((*gwsHandler)(s), opt)
		s.wg.Add(1)
		go s.acceptLoop(s.serveGWS)
	}
	return s, nil
}

// URL is the ws:// URL clients dial.
func (s *Server) URL() string { return s.url }

// Engine returns the engine served.
func (s *Server) Engine() Engine { return s.cfg.Engine }

// Upgraded returns how many connections completed the handshake.
func (s *Server) Upgraded() int64 { return s.upgraded.Load() }

// Open returns how many upgraded connections have not ended yet.
func (s *Server) Open() int64 { return s.open.Load() }

// acceptLoop hands every accepted connection to serve on its own
// goroutine (the handshake reads from the network).
func (s *Server) acceptLoop(serve func(net.Conn)) {
	defer s.wg.Done()
	for {
		nc, err := s.ln.Accept()
		if err != nil {
			return // the listener was closed
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			serve(nc)
		}()
	}
}

// Close stops accepting, closes every tracked connection and waits for
// everything the server started. It is idempotent.
func (s *Server) Close() error {
	s.closeOnce.Do(func() {
		if s.hs != nil {
			// Shutdown returns once no handler is running (upgraded
			// connections are hijacked, so it does not wait for them).
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			if s.hs.Shutdown(ctx) != nil {
				_ = s.hs.Close()
			}
			cancel()
		} else {
			_ = s.ln.Close()
		}
		s.mu.Lock()
		s.closed = true
		hc := keys(s.herald)
		gc := keys(s.gorilla)
		wc := keys(s.gws)
		s.mu.Unlock()
		for _, c := range hc {
			_ = c.CloseNow()
		}
		for _, c := range gc {
			_ = c.c.Close()
		}
		for _, c := range wc {
			_ = c.NetConn().Close()
		}
	})
	s.wg.Wait()
	return nil
}

func keys[K comparable](m map[K]struct{}) []K {
	return appendKeys(make([]K, 0, len(m)), m)
}

func appendKeys[K comparable](dst []K, m map[K]struct{}) []K {
	for k := range m {
		dst = append(dst, k)
	}
	return dst
}

// clearSlice drops the references s holds and returns it empty.
func clearSlice[T any](s []T) []T {
	clear(s)
	return s[:0]
}

// track counts a new connection and registers it when the server tracks
// them; with goroutine set it also counts, in s.wg, a goroutine the caller
// is about to start for it. It reports false when the server is closing
// (the caller closes the connection and calls untrack). Doing both under
// s.mu keeps Close from waiting on s.wg while a connection is being added.
func track[K comparable](s *Server, m map[K]struct{}, c K, goroutine bool) bool {
	s.upgraded.Add(1)
	s.open.Add(1)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	if s.cfg.Track {
		m[c] = struct{}{}
	}
	if goroutine {
		s.wg.Add(1)
	}
	return true
}

func untrack[K comparable](s *Server, m map[K]struct{}, c K) {
	s.open.Add(-1)
	if !s.cfg.Track {
		return
	}
	s.mu.Lock()
	delete(m, c)
	s.mu.Unlock()
}

// serveHerald runs herald's handshake and then the connection, in event
// mode (Serve returns at once) or blocking mode (this goroutine reads).
func (s *Server) serveHerald(nc net.Conn) {
	c, _, err := ws.AcceptConn(nc, s.heraldOpts)
	if err != nil {
		return // AcceptConn answered and closed nc
	}
	if s.cfg.Engine == HeraldEvent {
		s.serveHeraldEvent(c)
		return
	}
	if !track(s, s.herald, c, false) { // this goroutine is counted already
		_ = c.CloseNow()
		untrack(s, s.herald, c)
		return
	}
	defer untrack(s, s.herald, c)
	ctx := context.Background()
	for {
		typ, data, err := c.Read(ctx)
		if err != nil {
			_ = c.CloseNow()
			return
		}
		if err := c.Write(ctx, typ, data); err != nil {
			return
		}
	}
}

// serveHeraldEvent switches c to event mode. Serve must come before c is
// shared (Broadcast), and OnClose, which may run on a poller worker as
// soon as Serve has registered c, must find c tracked: both happen under
// s.mu, which OnClose takes too.
func (s *Server) serveHeraldEvent(c *ws.Conn) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		_ = c.CloseNow()
		return
	}
	s.wg.Add(1) // done by OnClose
	if err := c.Serve((*heraldHandler)(s)); err != nil {
		s.wg.Done() // Serve closed c; no OnClose follows
		return
	}
	s.upgraded.Add(1)
	s.open.Add(1)
	if s.cfg.Track {
		s.herald[c] = struct{}{}
	}
}

// heraldHandler is the event-mode echo handler.
type heraldHandler Server

func (h *heraldHandler) OnMessage(c *ws.Conn, typ ws.MessageType, data []byte) {
	// In event mode Write copies data into the outbound queue.
	if err := c.Write(context.Background(), typ, data); err != nil {
		_ = c.CloseNow()
	}
}

func (h *heraldHandler) OnClose(c *ws.Conn, _ error) {
	s := (*Server)(h)
	untrack(s, s.herald, c)
	s.wg.Done()
}

// serveGorilla upgrades in the net/http handler and hands the connection
// to a goroutine of its own, so the handler returns and net/http releases
// its per-request state (gorilla's chat example does the same).
func (s *Server) serveGorilla(w http.ResponseWriter, r *http.Request) {
	wc, err := s.gorillaUp.Upgrade(w, r, nil)
	if err != nil {
		return // Upgrade answered the request
	}
	if s.cfg.Deflate {
		_ = wc.SetCompressionLevel(1) // gorilla's default, set for clarity
	}
	c := &gorillaConn{c: wc}
	// net/http's handler goroutines are not in s.wg: track counts the
	// reading goroutine before Close can wait.
	if !track(s, s.gorilla, c, true) {
		_ = wc.Close()
		untrack(s, s.gorilla, c)
		return
	}
	go func() {
		defer s.wg.Done()
		defer untrack(s, s.gorilla, c)
		defer wc.Close()
		for {
			typ, data, err := wc.ReadMessage()
			if err != nil {
				return
			}
			c.wmu.Lock()
			err = wc.WriteMessage(typ, data)
			c.wmu.Unlock()
			if err != nil {
				return
			}
		}
	}()
}

// gorillaConn serialises writes, which gorilla leaves to the application
// (one concurrent writer per connection).
type gorillaConn struct {
	c   *websocket.Conn
	wmu sync.Mutex
}

// serveGWS reads the request and upgrades the way gws.Server does, then
// runs the connection's ReadLoop on this goroutine until it ends.
func (s *Server) serveGWS(nc net.Conn) {
	br := bufio.NewReaderSize(nc, 4<<10)
	_ = nc.SetReadDeadline(time.Now().Add(10 * time.Second))
	r, err := http.ReadRequest(br)
	if err != nil {
		_ = nc.Close()
		return
	}
	_ = nc.SetReadDeadline(time.Time{})
	c, err := s.gwsUp.UpgradeFromConn(nc, br, r)
	if err != nil {
		return // UpgradeFromConn answered and closed nc
	}
	c.ReadLoop() // OnOpen tracks, OnClose untracks
}

// gwsHandler is the gws echo handler.
type gwsHandler Server

func (h *gwsHandler) OnOpen(c *gws.Conn) {
	s := (*Server)(h)
	if !track(s, s.gws, c, false) { // ReadLoop runs on a counted goroutine
		_ = c.NetConn().Close()
	}
}

func (h *gwsHandler) OnClose(c *gws.Conn, _ error) {
	s := (*Server)(h)
	untrack(s, s.gws, c)
}

func (h *gwsHandler) OnPing(c *gws.Conn, payload []byte) { _ = c.WritePong(payload) }

func (h *gwsHandler) OnPong(*gws.Conn, []byte) {}

func (h *gwsHandler) OnMessage(c *gws.Conn, m *gws.Message) {
	defer m.Close() // returns the message's buffer to gws's pool
	if err := c.WriteMessage(m.Opcode, m.Bytes()); err != nil {
		_ = c.NetConn().Close()
	}
}

// ErrNotTracked is returned by Broadcast on a server started without
// Config.Track.
var ErrNotTracked = errors.New("engine: server does not track its connections")

// Broadcast sends payload as one binary message to every tracked
// connection, with each engine's encode-once facility: herald's
// NewPreparedMessage with Enqueue (event mode) or WritePrepared (blocking
// mode), gorilla's PreparedMessage with WritePreparedMessage, gws's
// Broadcaster. It returns when every connection has been handed the
// message: gorilla and herald's blocking mode write it on the calling
// goroutine, herald's event mode and gws queue it for their own writers.
func (s *Server) Broadcast(ctx context.Context, payload []byte) error {
	if !s.cfg.Track {
		return ErrNotTracked
	}
	// The snapshot slices are reused, so that the harness adds no
	// per-connection allocation to the engines'.
	s.bcastMu.Lock()
	defer s.bcastMu.Unlock()
	s.mu.Lock()
	hc := appendKeys(s.bcastHerald[:0], s.herald)
	gc := appendKeys(s.bcastGorilla[:0], s.gorilla)
	wc := appendKeys(s.bcastGWS[:0], s.gws)
	s.mu.Unlock()
	defer func() {
		s.bcastHerald, s.bcastGorilla, s.bcastGWS = clearSlice(hc), clearSlice(gc), clearSlice(wc)
	}()
	var errs []error
	switch s.cfg.Engine {
	case HeraldEvent, HeraldBlocking:
		pm := ws.NewPreparedMessage(ws.MessageBinary, payload)
		for _, c := range hc {
			var err error
			if s.cfg.Engine == HeraldEvent {
				err = c.Enqueue(pm)
			} else {
				err = c.WritePrepared(ctx, pm)
			}
			if err != nil {
				errs = append(errs, err)
			}
		}
	case Gorilla:
		pm, err := websocket.NewPreparedMessage(websocket.BinaryMessage, payload)
		if err != nil {
			return fmt.Errorf("engine: broadcast: %w", err)
		}
		for _, c := range gc {
			c.wmu.Lock()
			err := c.c.WritePreparedMessage(pm)
			c.wmu.Unlock()
			if err != nil {
				errs = append(errs, err)
			}
		}
	case GWS:
		b := gws.NewBroadcaster(gws.OpcodeBinary, payload)
		for _, c := range wc {
			if err := b.Broadcast(c); err != nil {
				errs = append(errs, err)
			}
		}
		_ = b.Close()
	}
	if len(errs) > 0 {
		return fmt.Errorf("engine: broadcast failed on %d connections, first: %w", len(errs), errs[0])
	}
	return nil
}

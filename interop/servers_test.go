package interop

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	coder "github.com/coder/websocket"
	gorilla "github.com/gorilla/websocket"

	"github.com/heraldhq/herald/ws"
)

// testServer is a server under test: its ws:// URL and how its
// connections ended.
type testServer struct {
	url  string
	ends chan serverEnd
}

// serveHerald runs herald's script server on one connection.
func serveHerald(c *ws.Conn, ends chan<- serverEnd) {
	ctx := context.Background()
	var pings sync.WaitGroup
	defer pings.Wait()
	for {
		typ, data, err := c.Read(ctx)
		if err != nil {
			var ce *ws.CloseError
			if errors.As(err, &ce) {
				ends <- serverEnd{code: int(ce.Code), reason: ce.Reason}
			} else {
				ends <- serverEnd{code: -1, err: err}
			}
			return
		}
		if typ == ws.MessageText {
			switch string(data) {
			case "cmd:compressed":
				reply := "false"
				if c.Compressed() {
					reply = "true"
				}
				data = []byte(reply)
			case "cmd:ping":
				// Ping needs this loop to keep reading for the pong.
				pings.Add(1)
				go func() {
					defer pings.Done()
					pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
					defer cancel()
					reply := "pong-ok"
					if _, err := c.Ping(pctx); err != nil {
						reply = "ping failed: " + err.Error()
					}
					_ = c.Write(ctx, ws.MessageText, []byte(reply))
				}()
				continue
			case "cmd:close":
				err := c.Close(serverCloseCode, serverCloseReason)
				ends <- serverEnd{code: serverCloseCode, err: err}
				return
			}
		}
		if err := c.Write(ctx, typ, data); err != nil {
			ends <- serverEnd{code: -1, err: err}
			return
		}
	}
}

// heraldHTTPServer serves with ws.Accept behind net/http.
func heraldHTTPServer(t *testing.T, opts *ws.AcceptOptions) testServer {
	ends := make(chan serverEnd, 4)
	var conns sync.WaitGroup
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := ws.Accept(w, r, opts)
		if err != nil {
			ends <- serverEnd{code: -1, err: err}
			return
		}
		conns.Add(1)
		defer conns.Done()
		serveHerald(c, ends)
		c.CloseNow()
	}))
	t.Cleanup(func() {
		srv.Close()
		conns.Wait()
	})
	return testServer{url: "ws" + srv.URL[len("http"):], ends: ends}
}

// heraldRawServer serves with ws.AcceptConn on a plain listener.
func heraldRawServer(t *testing.T, opts *ws.AcceptOptions) testServer {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ends := make(chan serverEnd, 4)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				c, _, err := ws.AcceptConn(nc, opts)
				if err != nil {
					ends <- serverEnd{code: -1, err: err}
					return
				}
				serveHerald(c, ends)
				c.CloseNow()
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		wg.Wait()
	})
	return testServer{url: "ws://" + ln.Addr().String() + "/", ends: ends}
}

// gorillaServer serves the script with gorilla/websocket.
func gorillaServer(t *testing.T, compress bool) testServer {
	ends := make(chan serverEnd, 4)
	up := gorilla.Upgrader{EnableCompression: compress}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := up.Upgrade(w, r, nil)
		if err != nil {
			ends <- serverEnd{code: -1, err: err}
			return
		}
		defer c.Close()
		c.SetReadLimit(readLimit)
		// The pong handler runs inside ReadMessage, on this goroutine, so
		// it may write.
		c.SetPongHandler(func(string) error { return c.WriteMessage(gorilla.TextMessage, []byte("pong-ok")) })
		for {
			typ, data, err := c.ReadMessage()
			if err != nil {
				var ce *gorilla.CloseError
				if errors.As(err, &ce) {
					ends <- serverEnd{code: ce.Code, reason: ce.Text}
				} else {
					ends <- serverEnd{code: -1, err: err}
				}
				return
			}
			if typ == gorilla.TextMessage {
				switch string(data) {
				case "cmd:compressed":
					data = []byte("unknown")
				case "cmd:ping":
					if err := c.WriteControl(gorilla.PingMessage, []byte("srv"), time.Now().Add(5*time.Second)); err != nil {
						ends <- serverEnd{code: -1, err: err}
						return
					}
					continue
				case "cmd:close":
					err := c.WriteControl(gorilla.CloseMessage, gorilla.FormatCloseMessage(serverCloseCode, serverCloseReason), time.Now().Add(5*time.Second))
					// Wait for the client's close frame before closing TCP.
					if err == nil {
						_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
						for {
							if _, _, rerr := c.ReadMessage(); rerr != nil {
								var ce *gorilla.CloseError
								if !errors.As(rerr, &ce) || ce.Code != serverCloseCode {
									err = rerr
								}
								break
							}
						}
					}
					ends <- serverEnd{code: serverCloseCode, err: err}
					return
				}
			}
			if err := c.WriteMessage(typ, data); err != nil {
				ends <- serverEnd{code: -1, err: err}
				return
			}
		}
	}))
	t.Cleanup(srv.Close)
	return testServer{url: "ws" + srv.URL[len("http"):], ends: ends}
}

// coderServer serves the script with coder/websocket.
func coderServer(t *testing.T, mode coder.CompressionMode) testServer {
	ends := make(chan serverEnd, 4)
	var pings sync.WaitGroup
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := coder.Accept(w, r, &coder.AcceptOptions{CompressionMode: mode})
		if err != nil {
			ends <- serverEnd{code: -1, err: err}
			return
		}
		defer c.CloseNow()
		c.SetReadLimit(readLimit)
		ctx := r.Context()
		for {
			typ, data, err := c.Read(ctx)
			if err != nil {
				var ce coder.CloseError
				if errors.As(err, &ce) {
					ends <- serverEnd{code: int(ce.Code), reason: ce.Reason}
				} else {
					ends <- serverEnd{code: -1, err: err}
				}
				return
			}
			if typ == coder.MessageText {
				switch string(data) {
				case "cmd:compressed":
					data = []byte("unknown")
				case "cmd:ping":
					pings.Add(1)
					go func() {
						defer pings.Done()
						pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
						defer cancel()
						reply := "pong-ok"
						if err := c.Ping(pctx); err != nil {
							reply = "ping failed: " + err.Error()
						}
						_ = c.Write(ctx, coder.MessageText, []byte(reply))
					}()
					continue
				case "cmd:close":
					ends <- serverEnd{code: serverCloseCode, err: c.Close(serverCloseCode, serverCloseReason)}
					return
				}
			}
			if err := c.Write(ctx, typ, data); err != nil {
				ends <- serverEnd{code: -1, err: err}
				return
			}
		}
	}))
	t.Cleanup(func() {
		srv.Close()
		pings.Wait()
	})
	return testServer{url: "ws" + srv.URL[len("http"):], ends: ends}
}

package interop

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	coder "github.com/coder/websocket"
	gorilla "github.com/gorilla/websocket"

	"github.com/heraldhq/herald/ws"
)

func timeoutCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func deflateIn(resp *http.Response) bool {
	return resp != nil && strings.Contains(resp.Header.Get("Sec-WebSocket-Extensions"), "permessage-deflate")
}

// heraldClient drives a connection made by ws.Dial.
type heraldClient struct {
	c    *ws.Conn
	ctx  context.Context
	resp *http.Response
}

func dialHerald(t *testing.T, url string, opts *ws.DialOptions) client {
	ctx := timeoutCtx(t)
	c, resp, err := ws.Dial(ctx, url, opts)
	if err != nil {
		t.Fatalf("ws.Dial: %v", err)
	}
	if c.Compressed() != deflateIn(resp) {
		t.Fatalf("Compressed() = %v, response extensions %q", c.Compressed(), resp.Header.Get("Sec-WebSocket-Extensions"))
	}
	return &heraldClient{c: c, ctx: ctx, resp: resp}
}

func (h *heraldClient) write(typ int, p []byte, frames int) error {
	if frames <= 1 {
		return h.c.Write(h.ctx, ws.MessageType(typ), p)
	}
	w, err := h.c.Writer(h.ctx, ws.MessageType(typ))
	if err != nil {
		return err
	}
	for _, part := range splitFrames(p, frames) {
		if _, err := w.Write(part); err != nil {
			return err
		}
	}
	return w.Close()
}

func (h *heraldClient) read() (int, []byte, error) {
	typ, p, err := h.c.Read(h.ctx)
	return int(typ), p, err
}

func (h *heraldClient) ping() error {
	return pingWhileEchoing(h, func() error {
		_, err := h.c.Ping(h.ctx)
		return err
	})
}

func (h *heraldClient) close(code int, reason string) error {
	return h.c.Close(ws.StatusCode(code), reason)
}

func (h *heraldClient) closeCode(err error) int { return int(ws.CloseStatus(err)) }
func (h *heraldClient) negotiated() bool        { return h.c.Compressed() }
func (h *heraldClient) kill()                   { h.c.CloseNow() }

// gorillaClient drives a gorilla/websocket client connection.
type gorillaClient struct {
	c     *gorilla.Conn
	resp  *http.Response
	pongs chan struct{}
}

func dialGorilla(t *testing.T, url string, compress bool) client {
	d := gorilla.Dialer{
		EnableCompression: compress,
		WriteBufferSize:   4096, // NextWriter fragments messages at this size
		HandshakeTimeout:  10 * time.Second,
	}
	c, resp, err := d.DialContext(timeoutCtx(t), url, nil)
	if err != nil {
		t.Fatalf("gorilla dial: %v", err)
	}
	c.SetReadLimit(readLimit)
	g := &gorillaClient{c: c, resp: resp, pongs: make(chan struct{}, 1)}
	c.SetPongHandler(func(string) error {
		select {
		case g.pongs <- struct{}{}:
		default:
		}
		return nil
	})
	return g
}

func (g *gorillaClient) write(typ int, p []byte, frames int) error {
	if frames <= 1 {
		return g.c.WriteMessage(typ, p)
	}
	w, err := g.c.NextWriter(typ)
	if err != nil {
		return err
	}
	for _, part := range splitFrames(p, frames) {
		if _, err := w.Write(part); err != nil {
			return err
		}
	}
	return w.Close()
}

func (g *gorillaClient) read() (int, []byte, error) { return g.c.ReadMessage() }

func (g *gorillaClient) ping() error {
	return pingWhileEchoing(g, func() error {
		if err := g.c.WriteControl(gorilla.PingMessage, []byte("cli"), time.Now().Add(5*time.Second)); err != nil {
			return err
		}
		select {
		case <-g.pongs:
			return nil
		case <-time.After(10 * time.Second):
			return errors.New("no pong")
		}
	})
}

func (g *gorillaClient) close(code int, reason string) error {
	if err := g.c.WriteControl(gorilla.CloseMessage, gorilla.FormatCloseMessage(code, reason), time.Now().Add(5*time.Second)); err != nil {
		return err
	}
	// RFC 6455 §7.1.1-2: wait for the server's close frame and its TCP close.
	if err := g.c.SetReadDeadline(time.Now().Add(10 * time.Second)); err != nil {
		return err
	}
	for {
		_, _, err := g.c.ReadMessage()
		if err == nil {
			continue
		}
		var ce *gorilla.CloseError
		if !errors.As(err, &ce) || ce.Code != code {
			return err
		}
		return g.c.Close()
	}
}

func (g *gorillaClient) closeCode(err error) int {
	var ce *gorilla.CloseError
	if errors.As(err, &ce) {
		return ce.Code
	}
	return -1
}

func (g *gorillaClient) negotiated() bool { return deflateIn(g.resp) }
func (g *gorillaClient) kill()            { g.c.Close() }

// coderClient drives a coder/websocket client connection.
type coderClient struct {
	c    *coder.Conn
	ctx  context.Context
	resp *http.Response
}

func dialCoder(t *testing.T, url string, mode coder.CompressionMode) client {
	ctx := timeoutCtx(t)
	c, resp, err := coder.Dial(ctx, url, &coder.DialOptions{CompressionMode: mode})
	if err != nil {
		t.Fatalf("coder dial: %v", err)
	}
	c.SetReadLimit(readLimit)
	return &coderClient{c: c, ctx: ctx, resp: resp}
}

func (k *coderClient) write(typ int, p []byte, frames int) error {
	if frames <= 1 {
		return k.c.Write(k.ctx, coder.MessageType(typ), p)
	}
	w, err := k.c.Writer(k.ctx, coder.MessageType(typ))
	if err != nil {
		return err
	}
	for _, part := range splitFrames(p, frames) {
		if _, err := w.Write(part); err != nil {
			return err
		}
	}
	return w.Close()
}

func (k *coderClient) read() (int, []byte, error) {
	typ, p, err := k.c.Read(k.ctx)
	return int(typ), p, err
}

func (k *coderClient) ping() error {
	return pingWhileEchoing(k, func() error { return k.c.Ping(k.ctx) })
}

func (k *coderClient) close(code int, reason string) error {
	return k.c.Close(coder.StatusCode(code), reason)
}

func (k *coderClient) closeCode(err error) int { return int(coder.CloseStatus(err)) }
func (k *coderClient) negotiated() bool        { return deflateIn(k.resp) }
func (k *coderClient) kill()                   { k.c.CloseNow() }

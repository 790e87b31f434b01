package interop

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	coder "github.com/coder/websocket"
	gorilla "github.com/gorilla/websocket"

	"github.com/heraldhq/herald/ws"
)

// handshakeServer accepts with herald and closes each connection right
// away (the close reason is the subprotocol chosen).
func handshakeServer(t *testing.T, opts *ws.AcceptOptions) string {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := ws.Accept(w, r, opts)
		if err != nil {
			return
		}
		_ = c.Close(ws.StatusNormalClosure, c.Subprotocol())
	}))
	t.Cleanup(srv.Close)
	return "ws" + srv.URL[len("http"):]
}

// RFC 6455 §4.2.2 step 5.4 and §11.3.4: the peer clients see the
// subprotocol herald selects (the first of the client's list that the
// server supports), and herald's client sees the peer servers' choice.
func TestSubprotocolInterop(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	url := handshakeServer(t, &ws.AcceptOptions{Subprotocols: []string{"v3", "v2", "v1"}})

	gc, resp, err := (&gorilla.Dialer{Subprotocols: []string{"v1", "v2"}}).DialContext(ctx, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if gc.Subprotocol() != "v1" || resp.Header.Get("Sec-WebSocket-Protocol") != "v1" {
		t.Errorf("gorilla client got subprotocol %q", gc.Subprotocol())
	}
	gc.Close()

	cc, _, err := coder.Dial(ctx, url, &coder.DialOptions{Subprotocols: []string{"v9", "v2"}})
	if err != nil {
		t.Fatal(err)
	}
	if cc.Subprotocol() != "v2" {
		t.Errorf("coder client got subprotocol %q", cc.Subprotocol())
	}
	cc.CloseNow()

	// No common subprotocol: the handshake succeeds without one.
	cc, resp, err = coder.Dial(ctx, url, &coder.DialOptions{Subprotocols: []string{"mqtt"}})
	if err != nil {
		t.Fatal(err)
	}
	if cc.Subprotocol() != "" || resp.Header.Get("Sec-WebSocket-Protocol") != "" {
		t.Errorf("coder client got subprotocol %q", cc.Subprotocol())
	}
	cc.CloseNow()

	// herald's client against a coder server.
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := coder.Accept(w, r, &coder.AcceptOptions{Subprotocols: []string{"v2"}})
		if err != nil {
			return
		}
		_ = c.Close(coder.StatusNormalClosure, "")
	}))
	defer srv.Close()
	hc, _, err := ws.Dial(ctx, "ws"+srv.URL[len("http"):], &ws.DialOptions{Subprotocols: []string{"v1", "v2"}})
	if err != nil {
		t.Fatal(err)
	}
	if hc.Subprotocol() != "v2" {
		t.Errorf("herald client got subprotocol %q", hc.Subprotocol())
	}
	hc.CloseNow()
}

// RFC 6455 §4.2.2 and §10.2: the peer clients see herald's rejections as
// HTTP errors with the status herald sent.
func TestRejectionInterop(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	url := handshakeServer(t, &ws.AcceptOptions{OriginPatterns: []string{"*.allowed.example"}})

	h := http.Header{"Origin": {"https://evil.example"}}
	_, resp, err := (&gorilla.Dialer{}).DialContext(ctx, url, h)
	if !errors.Is(err, gorilla.ErrBadHandshake) || resp == nil || resp.StatusCode != http.StatusForbidden {
		t.Errorf("gorilla: %v, response %+v; want 403", err, resp)
	}
	_, resp, err = coder.Dial(ctx, url, &coder.DialOptions{HTTPHeader: h})
	if err == nil || resp == nil || resp.StatusCode != http.StatusForbidden {
		t.Errorf("coder: %v, response %+v; want 403", err, resp)
	}

	h = http.Header{"Origin": {"https://app.allowed.example"}}
	gc, _, err := (&gorilla.Dialer{}).DialContext(ctx, url, h)
	if err != nil {
		t.Fatalf("allowed origin: %v", err)
	}
	gc.Close()

	// A plain HTTP request gets 426 Upgrade Required.
	req, _ := http.NewRequestWithContext(ctx, "GET", "http"+url[len("ws"):], nil)
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUpgradeRequired || resp.Header.Get("Upgrade") != "websocket" {
		t.Errorf("plain GET: %d, Upgrade %q", resp.StatusCode, resp.Header.Get("Upgrade"))
	}
	http.DefaultClient.CloseIdleConnections()
}

package server

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/http"
	"testing"
	"time"

	"github.com/heraldhq/herald/ws"
)

// BenchmarkPublishToSubscriber measures one publication's round trip on a
// node: an HTTP API publish (keep-alive connection) until the WebSocket
// subscriber has read the publication.
func BenchmarkPublishToSubscriber(b *testing.B) {
	s, err := New(Options{Config: testConfig(nil), Logger: slog.New(slog.DiscardHandler), Out: io.Discard})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	defer func() {
		if err := s.Shutdown(ctx); err != nil {
			b.Error(err)
		}
	}()
	if err := s.Start(ctx); err != nil {
		b.Fatal(err)
	}
	c, _, err := ws.Dial(ctx, "ws://"+s.Addr()+"/ws", nil)
	if err != nil {
		b.Fatal(err)
	}
	defer c.CloseNow()
	for _, cmd := range []string{
		`{"id":1,"method":"connect","params":{}}`,
		`{"id":2,"method":"subscribe","params":{"channel":"bench"}}`,
	} {
		if err := c.Write(ctx, ws.MessageText, []byte(cmd)); err != nil {
			b.Fatal(err)
		}
		if _, _, err := c.Read(ctx); err != nil {
			b.Fatal(err)
		}
	}
	client := &http.Client{}
	defer client.CloseIdleConnections()
	body := []byte(`{"channel":"bench","data":{"text":"hello"}}`)
	url := "http://" + s.Addr() + "/api/publish"
	b.ResetTimer()
	for b.Loop() {
		req, _ := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
		req.Header.Set("X-API-Key", s.APIKey())
		resp, err := client.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			b.Fatalf("status %d", resp.StatusCode)
		}
		for {
			_, msg, err := c.Read(ctx)
			if err != nil {
				b.Fatal(err)
			}
			if bytes.Contains(msg, []byte(`"publication"`)) {
				break
			}
		}
	}
}

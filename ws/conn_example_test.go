package ws_test

import (
	"context"
	"log/slog"
	"net/http"

	"github.com/heraldhq/herald/ws"
)

// chatHandler echoes every message and logs how connections end.
type chatHandler struct{}

func (chatHandler) OnMessage(c *ws.Conn, typ ws.MessageType, data []byte) {
	// data is only valid during the call; EnqueueMessage copies it.
	if err := c.EnqueueMessage(typ, data); err != nil {
		c.Close(ws.StatusPolicyViolation, "slow consumer")
	}
}

func (chatHandler) OnClose(c *ws.Conn, err error) {
	slog.Info("connection closed", "remote", c.RemoteAddr(), "code", ws.CloseStatus(err), "err", err)
}

// An event-mode server: no goroutine and no buffer per idle connection.
func ExampleConn_Serve() {
	http.HandleFunc("/ws", func(w http.ResponseWriter, r *http.Request) {
		c, err := ws.Accept(w, r, &ws.AcceptOptions{Compression: &ws.CompressionOptions{}})
		if err != nil {
			return // Accept has answered the request
		}
		if err := c.Serve(chatHandler{}); err != nil {
			slog.Warn("serve", "err", err)
		}
	})
}

// A blocking client that sends one message and waits for the answer.
func ExampleDial() {
	ctx := context.Background()
	c, _, err := ws.Dial(ctx, "ws://127.0.0.1:8000/ws", nil)
	if err != nil {
		return
	}
	defer c.CloseNow()
	if err := c.Write(ctx, ws.MessageText, []byte(`{"id":1}`)); err != nil {
		return
	}
	if _, reply, err := c.Read(ctx); err == nil {
		slog.Info("reply", "data", string(reply))
	}
	c.Close(ws.StatusNormalClosure, "")
}

// Broadcasting: one prepared message, encoded (and compressed) once, is
// queued on every connection without a copy.
func ExampleNewPreparedMessage() {
	var conns []*ws.Conn // event-mode connections
	pm := ws.NewPreparedMessage(ws.MessageText, []byte(`{"channel":"news","data":"hello"}`))
	for _, c := range conns {
		if err := c.Enqueue(pm); err != nil {
			// ws.ErrQueueFull: this consumer is too slow.
			c.Close(ws.StatusPolicyViolation, "slow consumer")
		}
	}
}

package main

import (
	"encoding/json"
	"net/http"
	"sync/atomic"

	"github.com/gorilla/websocket"
)

// gorillaHub is the hub of gorilla/websocket's chat example, extended to
// channels: one goroutine owns the channel map; every connection has a
// reader goroutine and a writer goroutine draining a buffered channel.
// A publication becomes one PreparedMessage (framed once) that every
// subscriber's writer sends. A connection whose buffer is full is dropped.
type gorillaHub struct {
	upgrader websocket.Upgrader
	queue    int
	ops      chan func(map[string]map[*gorillaClient]struct{})
	dropped  atomic.Int64
}

type gorillaClient struct {
	conn *websocket.Conn
	send chan *websocket.PreparedMessage
	subs []string
}

func newGorillaHub(queue int) *gorillaHub {
	h := &gorillaHub{
		upgrader: websocket.Upgrader{ReadBufferSize: 4096, WriteBufferSize: 4096},
		queue:    queue,
		ops:      make(chan func(map[string]map[*gorillaClient]struct{}), 4096),
	}
	go h.run()
	return h
}

func (h *gorillaHub) run() {
	channels := map[string]map[*gorillaClient]struct{}{}
	for op := range h.ops {
		op(channels)
	}
}

func (h *gorillaHub) publish(channel string, data []byte) { h.publishFrom(nil, 0, channel, data) }

// publishFrom publishes; when from and id are set, from is answered
// {"id":id} after the publication was queued to every subscriber.
func (h *gorillaHub) publishFrom(from *gorillaClient, id uint64, channel string, data []byte) {
	pm, err := websocket.NewPreparedMessage(websocket.TextMessage, data)
	if err != nil {
		return
	}
	var ack *websocket.PreparedMessage
	if from != nil && id != 0 {
		if ack, err = websocket.NewPreparedMessage(websocket.TextMessage, ackFrame(id)); err != nil {
			return
		}
	}
	h.ops <- func(chs map[string]map[*gorillaClient]struct{}) {
		for c := range chs[channel] {
			select {
			case c.send <- pm:
			default:
				h.dropClient(chs, c)
			}
		}
		if ack != nil && from.subs != nil { // nil subs: dropped, queue closed
			select {
			case from.send <- ack:
			default:
				h.dropClient(chs, from)
			}
		}
	}
}

// dropClient unsubscribes c everywhere and closes its queue; runs on the
// hub goroutine.
func (h *gorillaHub) dropClient(chs map[string]map[*gorillaClient]struct{}, c *gorillaClient) {
	for _, name := range c.subs {
		if set := chs[name]; set != nil {
			if _, ok := set[c]; ok {
				delete(set, c)
				if len(set) == 0 {
					delete(chs, name)
				}
			}
		}
	}
	if c.subs != nil {
		c.subs = nil
		close(c.send)
		h.dropped.Add(1)
	}
}

func (h *gorillaHub) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	conn, err := h.upgrader.Upgrade(w, r, nil)
	if err != nil {
		return
	}
	c := &gorillaClient{conn: conn, send: make(chan *websocket.PreparedMessage, h.queue), subs: []string{}}
	go c.writeLoop()
	go h.readLoop(c)
}

func (c *gorillaClient) writeLoop() {
	defer c.conn.Close()
	for pm := range c.send {
		if err := c.conn.WritePreparedMessage(pm); err != nil {
			// Keep draining until the hub closes the queue.
			for range c.send {
			}
			return
		}
	}
}

func (h *gorillaHub) readLoop(c *gorillaClient) {
	defer func() {
		h.ops <- func(chs map[string]map[*gorillaClient]struct{}) { h.dropClient(chs, c) }
		c.conn.Close()
	}()
	for {
		_, msg, err := c.conn.ReadMessage()
		if err != nil {
			return
		}
		var cmd command
		if json.Unmarshal(msg, &cmd) != nil {
			return
		}
		switch {
		case cmd.Sub != "":
			ch := cmd.Sub
			ok, _ := json.Marshal(map[string]string{"ok": ch})
			pm, _ := websocket.NewPreparedMessage(websocket.TextMessage, ok)
			h.ops <- func(chs map[string]map[*gorillaClient]struct{}) {
				if c.subs == nil {
					return // dropped
				}
				set := chs[ch]
				if set == nil {
					set = map[*gorillaClient]struct{}{}
					chs[ch] = set
				}
				set[c] = struct{}{}
				c.subs = append(c.subs, ch)
				select {
				case c.send <- pm:
				default:
					h.dropClient(chs, c)
				}
			}
		case cmd.Pub != "" && len(cmd.Data) > 0:
			h.publishFrom(c, cmd.ID, cmd.Pub, cmd.Data)
		}
	}
}

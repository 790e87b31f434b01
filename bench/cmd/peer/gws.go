package main

import (
	"encoding/json"
	"net/http"
	"sync"

	"github.com/lxzan/gws"
)

// gwsHub uses gws's event API: gws runs a read loop per connection and
// calls OnMessage; writes go through each connection's asynchronous
// write queue. A publication is sent with a gws.Broadcaster, which frames
// it once for all subscribers. Channels live in a map under a lock.
type gwsHub struct {
	gws.BuiltinEventHandler
	upgrader *gws.Upgrader
	mu       sync.RWMutex
	channels map[string]map[*gws.Conn]struct{}
	subsOf   sync.Map // *gws.Conn -> *[]string, touched only by its read loop and OnClose
}

func newGWSHub() *gwsHub {
	h := &gwsHub{channels: map[string]map[*gws.Conn]struct{}{}}
	h.upgrader = gws.NewUpgrader(h, &gws.ServerOption{})
	return h
}

func (h *gwsHub) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	socket, err := h.upgrader.Upgrade(w, r)
	if err != nil {
		return
	}
	h.subsOf.Store(socket, &[]string{})
	go socket.ReadLoop()
}

func (h *gwsHub) publish(channel string, data []byte) {
	b := gws.NewBroadcaster(gws.OpcodeText, data)
	h.mu.RLock()
	for c := range h.channels[channel] {
		_ = b.Broadcast(c)
	}
	h.mu.RUnlock()
	_ = b.Close()
}

func (h *gwsHub) OnMessage(socket *gws.Conn, message *gws.Message) {
	defer message.Close()
	var cmd command
	if json.Unmarshal(message.Bytes(), &cmd) != nil {
		_ = socket.WriteClose(1003, nil)
		return
	}
	switch {
	case cmd.Sub != "":
		h.mu.Lock()
		set := h.channels[cmd.Sub]
		if set == nil {
			set = map[*gws.Conn]struct{}{}
			h.channels[cmd.Sub] = set
		}
		set[socket] = struct{}{}
		h.mu.Unlock()
		if v, ok := h.subsOf.Load(socket); ok {
			p := v.(*[]string)
			*p = append(*p, cmd.Sub)
		}
		ok, _ := json.Marshal(map[string]string{"ok": cmd.Sub})
		socket.WriteAsync(gws.OpcodeText, ok, nil)
	case cmd.Pub != "" && len(cmd.Data) > 0:
		// message's buffer is reused after OnMessage returns.
		h.publish(cmd.Pub, append([]byte(nil), cmd.Data...))
		if cmd.ID != 0 {
			socket.WriteAsync(gws.OpcodeText, ackFrame(cmd.ID), nil)
		}
	}
}

func (h *gwsHub) OnClose(socket *gws.Conn, _ error) {
	v, ok := h.subsOf.LoadAndDelete(socket)
	if !ok {
		return
	}
	h.mu.Lock()
	for _, ch := range *v.(*[]string) {
		if set := h.channels[ch]; set != nil {
			delete(set, socket)
			if len(set) == 0 {
				delete(h.channels, ch)
			}
		}
	}
	h.mu.Unlock()
}

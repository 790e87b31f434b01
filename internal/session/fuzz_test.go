package session

import (
	"testing"

	"github.com/heraldhq/herald/internal/wire"
)

// FuzzSessionMessage feeds arbitrary messages to a connected session. The
// session must never panic, every message it sends must decode, no
// command id may be answered twice, and a well-formed command with an id
// must be answered exactly once unless the session closed.
func FuzzSessionMessage(f *testing.F) {
	for _, s := range []string{
		`{"id":2,"method":"subscribe","params":{"channel":"chat:a"}}`,
		`{"id":2,"method":"subscribe","params":{"channel":"chat:a","since":{"offset":3,"epoch":"x"}}}`,
		`{"id":3,"method":"publish","params":{"channel":"chat:a","data":{"t":1}}}`,
		`{"id":4,"method":"history","params":{"channel":"chat:a","limit":-1,"reverse":true}}`,
		`{"id":5,"method":"presence","params":{"channel":"chat:a"}}`,
		`{"id":6,"method":"refresh","params":{"token":"a.b.c"}}`,
		`{"id":7,"method":"send","params":{"user":"u","data":1}}`,
		`{"method":"pong"}`,
		`{"id":8,"method":"connect"}`,
		`{"id":0,"method":"ping"}`,
		`[1,2]`,
		``,
	} {
		f.Add([]byte(s))
	}
	e := newEnv(f, func(c *Config) { c.AllowSend = true })
	f.Fuzz(func(t *testing.T, msg []byte) {
		c := e.clientFor(t)
		if r := c.call("connect", nil); r.Error != nil {
			t.Fatalf("connect: %+v", r.Error)
		}
		cmd, decodeErr := wire.JSON.DecodeCommand(msg)
		if cmd != nil {
			c.methods[cmd.ID] = cmd.Method
		}
		c.s.HandleMessage(msg)

		c.ft.mu.Lock()
		msgs := append([][]byte(nil), c.ft.msgs[c.read:]...)
		closed := c.ft.closed
		c.ft.mu.Unlock()
		replies := map[uint32]int{}
		for _, b := range msgs {
			r, _, err := wire.JSON.DecodeServerMessage(b, func(id uint32) wire.Method { return c.methods[id] })
			if err != nil {
				t.Fatalf("session sent undecodable %q: %v", b, err)
			}
			if r != nil {
				replies[r.ID]++
				if replies[r.ID] > 1 {
					t.Fatalf("command %d answered twice", r.ID)
				}
			}
		}
		if decodeErr == nil && cmd.Method != wire.MethodPong && !closed && replies[cmd.ID] != 1 {
			t.Fatalf("command %d (%s) got %d replies", cmd.ID, cmd.Method, replies[cmd.ID])
		}
		c.s.Disconnect(wire.Disconnect{Code: wire.DisconnectNormal})
	})
}

package hub

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

func TestControlRoundTrip(t *testing.T) {
	msgs := []*controlMessage{
		{Type: ctlMessage, From: "n1", User: "u1", Data: []byte("{ \"a\" :\n 1 }"), Info: &ClientInfo{Client: "c", User: "u9", ConnInfo: []byte(`{"x":1}`)}},
		{Type: ctlDisconnect, From: "n1", User: "u1", Client: "c1", Code: 3503, Reason: "bye"},
		{Type: ctlUnsubscribe, From: "n1", Client: "c1", Channel: "chat:room", Code: 2000, Again: true},
		{Type: ctlNode, From: "n2", Node: &NodeInfo{ID: "n2", Clients: 3}},
	}
	for _, m := range msgs {
		b, err := encodeControl(m)
		if err != nil {
			t.Fatalf("encode %s: %v", m.Type, err)
		}
		got, err := decodeControl(b)
		if err != nil {
			t.Fatalf("decode %s: %v", m.Type, err)
		}
		if got.Type != m.Type || got.User != m.User || got.Client != m.Client || got.Channel != m.Channel ||
			got.Code != m.Code || got.Again != m.Again || !bytes.Equal(got.Data, m.Data) {
			t.Fatalf("round trip of %s: %+v", m.Type, got)
		}
	}
	// Data travels byte for byte, newlines included.
	b, _ := encodeControl(msgs[0])
	if !bytes.HasSuffix(b, msgs[0].Data) {
		t.Fatalf("payload re-encoded: %q", b)
	}
}

func TestDecodeControlRejects(t *testing.T) {
	for _, in := range []string{
		"", "{}", "{}\n", `{"type":"message","user":"u"}` + "\n",
		`{"type":"message","data":"x"}` + "\nx",
		`{"type":"disconnect"}` + "\n",
		`{"type":"disconnect","user":"u","code":70000}` + "\n",
		`{"type":"unsubscribe","user":"u","channel":"bad channel"}` + "\n",
		`{"type":"node","node":{}}` + "\n",
		`{"type":"bogus"}` + "\n",
		`not json` + "\n",
	} {
		if _, err := decodeControl([]byte(in)); err == nil {
			t.Errorf("decodeControl(%q) accepted", in)
		}
	}
	huge := []byte(`{"type":"message","user":"u"}` + "\n" + strings.Repeat("x", MaxControlSize))
	if _, err := decodeControl(huge); !errors.Is(err, errControlTooLarge) {
		t.Errorf("oversized control message: %v", err)
	}
}

func FuzzDecodeControl(f *testing.F) {
	f.Add([]byte(`{"type":"message","from":"n1","user":"u1"}` + "\n" + `{"text":"hi"}`))
	f.Add([]byte(`{"type":"disconnect","from":"n1","user":"u1","code":3003,"reason":"x"}` + "\n"))
	f.Add([]byte(`{"type":"unsubscribe","from":"n1","client":"c","channel":"chat:1","code":2000}` + "\n"))
	f.Add([]byte(`{"type":"node","from":"n2","node":{"id":"n2","clients":1}}` + "\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := decodeControl(data)
		if err != nil {
			return
		}
		// Whatever decodes must re-encode and decode to the same command.
		b, err := encodeControl(m)
		if err != nil {
			if errors.Is(err, ErrDataTooLarge) {
				return
			}
			t.Fatalf("re-encode: %v", err)
		}
		m2, err := decodeControl(b)
		if err != nil {
			t.Fatalf("decode of re-encoded message: %v", err)
		}
		if m2.Type != m.Type || m2.User != m.User || m2.Client != m.Client || m2.Channel != m.Channel || !bytes.Equal(m2.Data, m.Data) {
			t.Fatalf("unstable round trip: %+v vs %+v", m, m2)
		}
	})
}

func TestNodeReportPrefix(t *testing.T) {
	for _, id := range []string{"n1", `odd"id\`, "ünï"} {
		b, err := encodeControl(&controlMessage{Type: ctlNode, From: id, Node: &NodeInfo{ID: id}})
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.HasPrefix(b, nodeReportPrefix(id)) {
			t.Errorf("report of %q = %s, prefix %s", id, b, nodeReportPrefix(id))
		}
		other, err := encodeControl(&controlMessage{Type: ctlNode, From: id + "x", Node: &NodeInfo{ID: id + "x"}})
		if err != nil {
			t.Fatal(err)
		}
		if bytes.HasPrefix(other, nodeReportPrefix(id)) {
			t.Errorf("report of %q matches the prefix of %q", id+"x", id)
		}
	}
}

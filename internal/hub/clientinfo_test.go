package hub_test

import (
	"testing"

	"github.com/heraldhq/herald/internal/hub"
	"github.com/heraldhq/herald/internal/membroker"
)

// infoSub offers its own description to the hub (hub.ClientInfoSource).
type infoSub struct {
	*testSub
	info *hub.ClientInfo
}

func (s *infoSub) ClientInfo() *hub.ClientInfo { return s.info }

func TestClientInfoSource(t *testing.T) {
	f := newHub(t, hub.Config{}, func(mb *membroker.Broker) hub.Broker { return mb })
	conn := []byte(`{"name":"ann"}`)

	// A matching description is used as is.
	good := &infoSub{testSub: newSub("good", "u1")}
	good.conn = conn
	good.info = &hub.ClientInfo{Client: "good", User: "u1", ConnInfo: conn}
	// One that disagrees with ClientID/UserID/ConnInfo is ignored: the
	// presence entry must describe the subscriber as it reports itself.
	bad := &infoSub{testSub: newSub("bad", "u2")}
	bad.conn = conn
	bad.info = &hub.ClientInfo{Client: "bad", User: "someone-else", ConnInfo: conn}
	// A nil description is ignored too.
	none := &infoSub{testSub: newSub("none", "u3")}

	for _, s := range []*infoSub{good, bad, none} {
		if err := f.h.AddClient(s); err != nil {
			t.Fatal(err)
		}
		if err := f.h.Subscribe(f.ctx, s, "pres:ci", hub.SubscribeOptions{}, s.onResult); err != nil {
			t.Fatal(err)
		}
	}
	// Channel info makes the subscription's description its own.
	withChan := &infoSub{testSub: newSub("chan", "u4")}
	withChan.info = &hub.ClientInfo{Client: "chan", User: "u4"}
	if err := f.h.AddClient(withChan); err != nil {
		t.Fatal(err)
	}
	if err := f.h.Subscribe(f.ctx, withChan, "pres:ci", hub.SubscribeOptions{ChanInfo: []byte(`{"r":1}`)}, withChan.onResult); err != nil {
		t.Fatal(err)
	}

	p, err := f.h.Presence(f.ctx, "pres:ci")
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"good": "u1", "bad": "u2", "none": "u3", "chan": "u4"}
	if len(p) != len(want) {
		t.Fatalf("presence %v", p)
	}
	for id, user := range want {
		got := p[id]
		if got == nil || got.Client != id || got.User != user {
			t.Fatalf("presence[%s] = %+v, want user %s", id, got, user)
		}
	}
	if string(p["good"].ConnInfo) != string(conn) || p["none"].ConnInfo != nil {
		t.Fatalf("conn info: good %q none %q", p["good"].ConnInfo, p["none"].ConnInfo)
	}
	if string(p["chan"].ChanInfo) != `{"r":1}` || p["good"].ChanInfo != nil {
		t.Fatalf("chan info: chan %q good %q", p["chan"].ChanInfo, p["good"].ChanInfo)
	}
	if withChan.info.ChanInfo != nil {
		t.Fatal("the subscriber's own description was modified")
	}
}

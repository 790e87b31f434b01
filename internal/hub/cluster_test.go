package hub_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/heraldhq/herald/internal/hub"
	"github.com/heraldhq/herald/internal/membroker"
)

// recordingBroker records every control message this node publishes.
type recordingBroker struct {
	*membroker.Broker
	mu      sync.Mutex
	control [][]byte
}

func (b *recordingBroker) PublishControl(ctx context.Context, data []byte) error {
	b.mu.Lock()
	b.control = append(b.control, bytes.Clone(data))
	b.mu.Unlock()
	return b.Broker.PublishControl(ctx, data)
}

// nodeReports decodes the node reports published so far.
func (b *recordingBroker) nodeReports(t *testing.T) []hub.NodeInfo {
	t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []hub.NodeInfo
	for _, m := range b.control {
		header, _, _ := bytes.Cut(m, []byte("\n"))
		var env struct {
			Type string        `json:"type"`
			Node *hub.NodeInfo `json:"node"`
		}
		if err := json.Unmarshal(header, &env); err != nil {
			t.Fatalf("control message %q: %v", m, err)
		}
		if env.Type == "node" {
			out = append(out, *env.Node)
		}
	}
	return out
}

func TestNodeReportListsTopChannels(t *testing.T) {
	var rb *recordingBroker
	f := newHub(t, hub.Config{NodeID: "n1", NodeInfoInterval: 20 * time.Millisecond, NodeInfoChannels: 2},
		func(mb *membroker.Broker) hub.Broker {
			rb = &recordingBroker{Broker: mb}
			return rb
		})
	// hist:big has 3 subscribers, hist:mid 2, hist:small 1: only the two
	// largest fit the bound of 2.
	for i := range 3 {
		s := f.client(t, fmt.Sprintf("c%d", i), "")
		f.subscribe(t, s, "hist:big", nil)
		if i < 2 {
			f.subscribe(t, s, "hist:mid", nil)
		}
		if i == 0 {
			f.subscribe(t, s, "hist:small", nil)
		}
	}
	// Alone, the node leaves the list out of its reports: nobody reads it.
	var last hub.NodeInfo
	// Reports are made in the background, so earlier ones may count only
	// some of the subscriptions.
	poll(t, "a report of every subscription", func() bool {
		r := rb.nodeReports(t)
		if len(r) == 0 {
			return false
		}
		last = r[len(r)-1]
		return last.Channels == 3 && last.Subscriptions == 6
	})
	if last.TopChannels != nil {
		t.Fatalf("report of a lone node %+v", last)
	}
	// Once another node reports itself, the list is published.
	peer := []byte(`{"type":"node","from":"n2","node":{"id":"n2"}}` + "\n")
	poll(t, "a report with the channel list", func() bool {
		f.h.HandleControl(peer) // keeps n2 alive at this short interval
		r := rb.nodeReports(t)
		last = r[len(r)-1]
		return last.TopChannels != nil
	})
	if last.Subscriptions != 6 || len(last.TopChannels) != 2 || last.TopChannels["hist:big"] != 3 || last.TopChannels["hist:mid"] != 2 {
		t.Fatalf("report %+v", last)
	}
	// LocalInfo stays cheap: no channel list.
	if l := f.h.LocalInfo(); l.TopChannels != nil || l.Channels != 3 {
		t.Fatalf("LocalInfo %+v", l)
	}
}

func TestClusterChannelsSumsNodes(t *testing.T) {
	f := newHub(t, hub.Config{NodeID: "n1", NodeInfoInterval: time.Hour}, nil)
	// The hub's own first report comes back to it.
	poll(t, "first own report", func() bool { return f.h.Counters().ControlReceived == 1 })
	s := f.client(t, "s", "u")
	f.subscribe(t, s, "hist:a", nil)
	report := `{"type":"node","from":"n2","node":{"id":"n2","clients":5,"channels":2,"subscriptions":5,` +
		`"top_channels":{"hist:a":2,"hist:b":3}}}` + "\n"
	if err := f.mb.PublishControl(f.ctx, []byte(report)); err != nil {
		t.Fatal(err)
	}
	got := f.h.ClusterChannels()
	if len(got) != 2 || got["hist:a"] != 3 || got["hist:b"] != 3 {
		t.Fatalf("cluster channels %v", got)
	}
	// Local-only view is unchanged.
	if local := f.h.Channels(); len(local) != 1 || local["hist:a"] != 1 {
		t.Fatalf("local channels %v", local)
	}
	// A report from a node not seen before makes this node answer with
	// its own at once, not an interval (an hour) later: the memory broker
	// delivers that answer back here as a second control message.
	poll(t, "announcement answering a new node", func() bool { return f.h.Counters().ControlReceived == 3 })
	// A node already known does not trigger another announcement.
	if err := f.mb.PublishControl(f.ctx, []byte(report)); err != nil {
		t.Fatal(err)
	}
	if c := f.h.Counters().ControlReceived; c != 4 {
		t.Fatalf("control messages received %d, want 4 (no second announcement)", c)
	}
}

func TestNodeReportChannelListValidated(t *testing.T) {
	f := newHub(t, hub.Config{NodeID: "n1", NodeInfoInterval: time.Hour}, nil)
	base := f.h.Counters().ControlErrors
	var many bytes.Buffer
	many.WriteString(`{"type":"node","from":"n3","node":{"id":"n3","top_channels":{`)
	for i := range hub.MaxNodeInfoChannels + 1 {
		if i > 0 {
			many.WriteByte(',')
		}
		fmt.Fprintf(&many, `"c%d":1`, i)
	}
	many.WriteString("}}}\n")
	for _, bad := range [][]byte{
		many.Bytes(),
		[]byte(`{"type":"node","from":"n3","node":{"id":"n3","top_channels":{"bad channel":1}}}` + "\n"),
		[]byte(`{"type":"node","from":"n3","node":{"id":"n3","top_channels":{"ok":-1}}}` + "\n"),
	} {
		if err := f.mb.PublishControl(f.ctx, bad); err != nil {
			t.Fatal(err)
		}
	}
	if got := f.h.Counters().ControlErrors - base; got != 3 {
		t.Fatalf("control errors %d, want 3", got)
	}
	if n := len(f.h.Nodes()); n != 1 {
		t.Fatalf("nodes %d after invalid reports, want 1", n)
	}
}

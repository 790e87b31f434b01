package wire

import (
	"bytes"
	"errors"
	"reflect"
	"strings"
	"testing"
)

func TestDatagramRoundTrip(t *testing.T) {
	connect := Binary.AppendCommand(nil, sampleCommands()[0].cmd)
	push := Binary.AppendPush(nil, samplePublicationPush())
	tests := []struct {
		name string
		d    Datagram
		size int // expected encoded size; 0 to skip
	}{
		{"connect", Datagram{Kind: DatagramConnect, Nonce: 0x0102030405060708, Message: connect}, MinConnectDatagramSize},
		{"connect_large", Datagram{Kind: DatagramConnect, Nonce: 1,
			Message: Binary.AppendCommand(nil, &Command{ID: 1, Method: MethodConnect, Connect: &ConnectParams{Token: strings.Repeat("t", 2000)}})}, 0},
		{"accept", Datagram{Kind: DatagramAccept, Nonce: 7, Session: 0xdeadbeefcafef00d, Secret: 0x1122334455667788,
			Message: Binary.AppendReply(nil, &Reply{ID: 1, Connect: &ConnectResult{Client: "c1", Ping: 25, Pong: true}})}, 0},
		{"accept_failed", Datagram{Kind: DatagramAccept, Nonce: 7,
			Message: Binary.AppendReply(nil, &Reply{ID: 1, Error: &Error{Code: ErrUnauthorized, Message: "bad token"}})}, 0},
		{"data", Datagram{Kind: DatagramData, Session: 9, Secret: 10, Seq: 11, Message: push}, DataHeaderSize + len(push)},
		{"keepalive", Datagram{Kind: DatagramData, Session: 9, Secret: 10, Seq: 12}, DataHeaderSize},
		{"close", Datagram{Kind: DatagramClose, Session: 9, Secret: 10, Seq: 13,
			Message: Binary.AppendPush(nil, &Push{Type: PushDisconnect, Disconnect: &Disconnect{Code: DisconnectNoPong, Reconnect: true}})}, 0},
		{"reset", Datagram{Kind: DatagramReset, Session: 9}, ResetSize},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := AppendDatagram([]byte("pre"), &tt.d)
			if err != nil {
				t.Fatal(err)
			}
			b = b[3:]
			if tt.size != 0 && len(b) != tt.size {
				t.Fatalf("size %d, want %d", len(b), tt.size)
			}
			var got Datagram
			if err := ParseDatagram(b, &got); err != nil {
				t.Fatalf("parse %x: %v", b, err)
			}
			if !reflect.DeepEqual(got, tt.d) {
				t.Fatalf("got %+v\nwant %+v", got, tt.d)
			}
		})
	}
}

func TestDatagramHeaderLayout(t *testing.T) {
	h := AppendDataHeader(nil, DatagramData, 0x0102030405060708, 0x1112131415161718, 0x2122232425262728)
	want := []byte{1, 3, 1, 2, 3, 4, 5, 6, 7, 8, 0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17, 0x18,
		0x21, 0x22, 0x23, 0x24, 0x25, 0x26, 0x27, 0x28}
	if !bytes.Equal(h, want) {
		t.Fatalf("header %x, want %x", h, want)
	}
}

func TestParseDatagramErrors(t *testing.T) {
	connect, _ := AppendDatagram(nil, &Datagram{Kind: DatagramConnect, Nonce: 1, Message: []byte{1, 8, 1}})
	lying := bytes.Clone(connect)
	lying[10], lying[11] = 0xff, 0xff // message length beyond the datagram
	data := AppendDataHeader(nil, DatagramData, 1, 2, 3)
	tests := map[string][]byte{
		"empty":             nil,
		"one byte":          {1},
		"bad version":       {2, 3, 0, 0},
		"unknown kind":      {1, 9, 0, 0},
		"kind zero":         {1, 0},
		"short connect":     connect[:MinConnectDatagramSize-1],
		"lying connect":     lying,
		"short accept":      make([]byte, AcceptHeaderSize-1),
		"short data":        data[:DataHeaderSize-1],
		"zero session":      AppendDataHeader(nil, DatagramData, 0, 2, 3),
		"zero seq":          AppendDataHeader(nil, DatagramClose, 1, 2, 0),
		"long reset":        {1, 5, 0, 0, 0, 0, 0, 0, 0, 1, 0},
		"oversized":         append(bytes.Clone(data), make([]byte, MaxDatagramSize)...),
		"short reset":       {1, 5, 0},
		"accept bad header": append([]byte{1, 2}, make([]byte, 10)...),
	}
	tests["short accept"][0], tests["short accept"][1] = 1, 2
	for name, b := range tests {
		var d Datagram
		if err := ParseDatagram(b, &d); !errors.Is(err, ErrBadDatagram) {
			t.Errorf("%s: err = %v", name, err)
		}
	}
	if _, err := AppendDatagram(nil, &Datagram{Kind: 42}); !errors.Is(err, ErrBadDatagram) {
		t.Errorf("unknown kind encoded: %v", err)
	}
	if _, err := AppendDatagram(nil, &Datagram{Kind: DatagramData, Session: 1, Seq: 1, Message: make([]byte, MaxDatagramSize)}); !errors.Is(err, ErrBadDatagram) {
		t.Errorf("oversized datagram encoded: %v", err)
	}
	if _, err := AppendDatagram(nil, &Datagram{Kind: DatagramConnect, Message: make([]byte, 70000)}); !errors.Is(err, ErrBadDatagram) {
		t.Errorf("oversized connect encoded: %v", err)
	}
}

// TestDatagramNoAmplification checks the anti-amplification rule for the
// answers the server gives unauthenticated datagrams: an accept carrying a
// generous connect reply, or an error, is never larger than the smallest
// connect datagram, and a reset is never larger than the smallest data
// datagram that can trigger it.
func TestDatagramNoAmplification(t *testing.T) {
	long := strings.Repeat("x", 64)
	replies := []*Reply{
		{ID: 1<<32 - 1, Connect: &ConnectResult{Client: long, Version: long, Node: long, Expires: true, TTL: 1<<32 - 1, Ping: 1<<32 - 1, Pong: true}},
		{ID: 1<<32 - 1, Error: &Error{Code: ErrUnauthorized, Message: strings.Repeat("m", 512), Temporary: true}},
	}
	for _, r := range replies {
		b, err := AppendDatagram(nil, &Datagram{Kind: DatagramAccept, Nonce: 1, Session: 2, Secret: 3, Message: Binary.AppendReply(nil, r)})
		if err != nil {
			t.Fatal(err)
		}
		if len(b) > MinConnectDatagramSize {
			t.Errorf("accept of %d bytes exceeds the minimum connect of %d", len(b), MinConnectDatagramSize)
		}
	}
	reset, _ := AppendDatagram(nil, &Datagram{Kind: DatagramReset, Session: 1})
	if len(reset) > DataHeaderSize {
		t.Errorf("reset of %d bytes exceeds a bare data datagram", len(reset))
	}
}

func TestReplayWindow(t *testing.T) {
	var w ReplayWindow
	steps := []struct {
		seq  uint64
		want bool
	}{
		{0, false}, {1, true}, {1, false}, {3, true}, {2, true}, {2, false}, {3, false},
		{100, true}, {37, true}, {36, false}, {37, false}, {99, true}, {100, false},
		{1000, true}, {999, true}, {937, true}, {936, false}, {1 << 63, true}, {1000, false},
	}
	for i, s := range steps {
		if got := w.Accept(s.seq); got != s.want {
			t.Fatalf("step %d: Accept(%d) = %v, want %v", i, s.seq, got, s.want)
		}
	}
	if w.Highest() != 1<<63 {
		t.Fatalf("Highest = %d", w.Highest())
	}
}

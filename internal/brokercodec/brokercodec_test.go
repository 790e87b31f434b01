package brokercodec

import (
	"bytes"
	"errors"
	"reflect"
	"testing"

	"github.com/heraldhq/herald/internal/hub"
)

func TestPublicationRoundTrip(t *testing.T) {
	cases := []*hub.Publication{
		{Data: []byte(`{"a":1}`)},
		{Data: []byte{0, 1, 2, 0xff, '\n', ' '}, Time: 1700000000123},
		{Data: []byte(`"x"`), Time: -5, Info: &hub.ClientInfo{Client: "c", User: "u", ConnInfo: []byte(`{"c":1}`), ChanInfo: []byte(`[2]`)}},
		{Data: []byte(`null`), Info: &hub.ClientInfo{}},
	}
	for i, want := range cases {
		enc := AppendPublication([]byte("prefix"), want)
		if !bytes.HasPrefix(enc, []byte("prefix")) {
			t.Fatalf("case %d: prefix lost", i)
		}
		got, err := DecodePublication(enc[len("prefix"):])
		if err != nil {
			t.Fatalf("case %d: %v", i, err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("case %d: got %+v, want %+v", i, got, want)
		}
	}
}

func TestClientInfoRoundTrip(t *testing.T) {
	want := &hub.ClientInfo{Client: "c1", User: "u1", ConnInfo: []byte(`{"a":1}`), ChanInfo: []byte(`{"b":2}`)}
	got, err := DecodeClientInfo(AppendClientInfo(nil, want))
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Fatalf("got %+v, %v", got, err)
	}
}

func TestDecodeRejectsCorruptInput(t *testing.T) {
	good := AppendPublication(nil, &hub.Publication{Data: []byte("abc"), Info: &hub.ClientInfo{Client: "c"}})
	cases := map[string][]byte{
		"empty":          nil,
		"version":        append([]byte{9}, good[1:]...),
		"flags":          append([]byte{version, 0x80}, good[2:]...),
		"truncated":      good[:len(good)-1],
		"trailing":       append(bytes.Clone(good), 0),
		"huge length":    {version, 0, 0, 0xff, 0xff, 0xff, 0xff, 0x0f},
		"length > input": {version, 0, 0, 10, 'a'},
	}
	for name, b := range cases {
		if _, err := DecodePublication(b); !errors.Is(err, ErrCorrupt) {
			t.Errorf("%s: error %v, want ErrCorrupt", name, err)
		}
	}
	if _, err := DecodeClientInfo([]byte{version, 3, 'a'}); !errors.Is(err, ErrCorrupt) {
		t.Errorf("truncated info: %v", err)
	}
}

func FuzzDecodePublication(f *testing.F) {
	f.Add(AppendPublication(nil, &hub.Publication{Data: []byte(`{"a":1}`), Time: 42}))
	f.Add(AppendPublication(nil, &hub.Publication{Data: []byte(`1`), Info: &hub.ClientInfo{Client: "c", User: "u"}}))
	f.Fuzz(func(t *testing.T, b []byte) {
		pub, err := DecodePublication(b)
		if err != nil {
			return
		}
		// Whatever decodes survives a round trip unchanged.
		again, err := DecodePublication(AppendPublication(nil, pub))
		if err != nil || !reflect.DeepEqual(again, pub) {
			t.Fatalf("round trip of %+v: %+v, %v", pub, again, err)
		}
	})
}

func FuzzDecodeClientInfo(f *testing.F) {
	f.Add(AppendClientInfo(nil, &hub.ClientInfo{Client: "c", User: "u", ChanInfo: []byte(`{}`)}))
	f.Fuzz(func(t *testing.T, b []byte) {
		info, err := DecodeClientInfo(b)
		if err != nil {
			return
		}
		again, err := DecodeClientInfo(AppendClientInfo(nil, info))
		if err != nil || !reflect.DeepEqual(again, info) {
			t.Fatalf("round trip of %+v: %+v, %v", info, again, err)
		}
	})
}

package ws

import (
	"bytes"
	"errors"
	"fmt"
	"testing"
)

// TestMaskBytes checks the word-at-a-time masking against the byte-wise
// definition of RFC 6455 §5.3 for every length, start offset and split.
func TestMaskBytes(t *testing.T) {
	key := [4]byte{0xa1, 0xb2, 0xc3, 0xd4}
	for n := 0; n < 80; n++ {
		for pos := 0; pos < 4; pos++ {
			src := make([]byte, n)
			for i := range src {
				src[i] = byte(i*31 + 7)
			}
			want := make([]byte, n)
			for i := range src {
				want[i] = src[i] ^ key[(pos+i)&3]
			}
			for split := 0; split <= n; split += max(1, n/5) {
				got := append([]byte(nil), src...)
				p := maskBytes(key, pos, got[:split])
				p = maskBytes(key, p, got[split:])
				if !bytes.Equal(got, want) {
					t.Fatalf("n=%d pos=%d split=%d: wrong mask", n, pos, split)
				}
				if p != (pos+n)&3 {
					t.Fatalf("n=%d pos=%d: next offset %d", n, pos, p)
				}
			}
		}
	}
}

// parsed is what a parser emitted, normalised for comparison.
type parsed struct {
	events []string
	err    StatusCode
}

// runParser feeds in to a parser in pieces of the given sizes (cycled)
// and records every event and the failure code.
func runParser(p *frameParser, in []byte, pieces []int) parsed {
	var out parsed
	var msg []byte
	i := 0
	for len(in) > 0 {
		n := len(in)
		if len(pieces) > 0 {
			n = min(n, max(1, pieces[i%len(pieces)]))
			i++
		}
		chunk := in[:n]
		in = in[n:]
		for len(chunk) > 0 {
			c, ev, err := p.parse(chunk)
			chunk = chunk[c:]
			if err != nil {
				var perr *ProtocolError
				if !errors.As(err, &perr) {
					panic("parser error is not a *ProtocolError")
				}
				out.err = perr.Code
				return out
			}
			switch ev.kind {
			case evControl:
				out.events = append(out.events, fmt.Sprintf("ctrl %d %x", ev.op, ev.data))
			case evData:
				msg = append(msg, ev.data...)
				if ev.fin {
					out.events = append(out.events, fmt.Sprintf("msg %d %v %x", ev.op, ev.compressed, msg))
					msg = msg[:0]
				}
			case evNone:
				if c == 0 && len(chunk) > 0 {
					panic("parser made no progress")
				}
			}
		}
	}
	return out
}

// TestParserSplits checks that the parser produces the same events
// whatever the input's split into reads (the event mode's reads are
// arbitrary), down to one byte at a time.
func TestParserSplits(t *testing.T) {
	var stream []byte
	for _, f := range []rawFrame{
		fr(opText, true, text("hello")),
		fr(opBinary, false, bytes.Repeat([]byte{9}, 300)),
		fr(opPing, true, text("in between")),
		fr(opContinuation, true, bytes.Repeat([]byte{8}, 70000)),
		fr(opPong, true, bytes.Repeat([]byte{7}, 125)),
		fr(opText, false, []byte("κό\xcf")),
		fr(opContinuation, true, []byte("\x83με")),
		fr(opClose, true, closePayload(StatusGoingAway, "bye")),
	} {
		stream = append(stream, f.bytes(true)...)
	}
	whole := newFrameParser(true, false, 1<<20)
	want := runParser(&whole, append([]byte(nil), stream...), nil)
	if want.err != 0 || len(want.events) != 6 {
		t.Fatalf("whole stream: %d events, err %v", len(want.events), want.err)
	}
	for _, pieces := range [][]int{{1}, {2}, {3, 5, 7}, {13}, {4096}, {1, 100, 1, 1000}} {
		p := newFrameParser(true, false, 1<<20)
		got := runParser(&p, append([]byte(nil), stream...), pieces)
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("pieces %v: events differ", pieces)
		}
		p.release()
	}
}

// TestFrameHeaderRoundTrip checks appendFrameHeader against the parser
// at every length-encoding boundary (RFC 6455 §5.2).
func TestFrameHeaderRoundTrip(t *testing.T) {
	for _, n := range []int{0, 1, 125, 126, 127, 65535, 65536, 1 << 20} {
		for _, masked := range []bool{false, true} {
			payload := make([]byte, n)
			key := [4]byte{1, 2, 3, 4}
			h := appendFrameHeader(nil, true, false, opBinary, n, masked, key)
			if len(h) != frameHeaderLen(n, masked) {
				t.Fatalf("n=%d: header %d bytes, frameHeaderLen %d", n, len(h), frameHeaderLen(n, masked))
			}
			frame := append(h, payload...)
			if masked {
				maskBytes(key, 0, frame[len(h):])
			}
			p := newFrameParser(masked, false, 1<<30)
			got := runParser(&p, frame, nil)
			if got.err != 0 || len(got.events) != 1 {
				t.Fatalf("n=%d masked=%v: %+v", n, masked, got.err)
			}
		}
	}
}

// TestParserNoAllocs checks that parsing valid frames allocates nothing.
func TestParserNoAllocs(t *testing.T) {
	var stream []byte
	for _, f := range []rawFrame{fr(opText, true, text("hello")), fr(opPing, true, text("p")), fr(opBinary, true, make([]byte, 1000))} {
		stream = append(stream, f.bytes(true)...)
	}
	buf := make([]byte, len(stream))
	p := newFrameParser(true, false, 1<<20)
	allocs := testing.AllocsPerRun(100, func() {
		copy(buf, stream)
		in := buf
		for len(in) > 0 {
			n, _, err := p.parse(in)
			if err != nil {
				t.Fatal(err)
			}
			in = in[n:]
		}
	})
	if allocs != 0 {
		t.Fatalf("%v allocations per parse", allocs)
	}
}

func FuzzFrameParser(f *testing.F) {
	f.Add(fr(opText, true, text("hello")).bytes(true), []byte{1}, true, false)
	f.Add(concat(fr(opBinary, false, text("ab")).bytes(true), fr(opPing, true, nil).bytes(true), fr(opContinuation, true, text("c")).bytes(true)), []byte{3, 1}, true, false)
	f.Add(fr(opClose, true, closePayload(1000, "x")).bytes(false), []byte{2}, false, false)
	f.Add(rawFrame{op: opText, fin: true, rsv: rsv1Bit, payload: []byte{0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00}}.bytes(true), []byte{5}, true, true)
	f.Add(rawFrame{op: opBinary, fin: true, lengthOver: 1 << 40}.bytes(true), []byte{}, true, false)
	f.Fuzz(func(t *testing.T, in, pieces []byte, server, deflate bool) {
		const limit = 4096
		sizes := make([]int, len(pieces))
		for i, b := range pieces {
			sizes[i] = int(b)
		}
		p := newFrameParser(server, deflate, limit)
		whole := runParser(&p, append([]byte(nil), in...), nil)
		q := newFrameParser(server, deflate, limit)
		split := runParser(&q, append([]byte(nil), in...), sizes)
		if fmt.Sprint(whole) != fmt.Sprint(split) {
			t.Fatalf("whole and split parses differ:\n%v\n%v", whole, split)
		}
		for _, e := range whole.events {
			// Each event renders its payload in hex: 2 chars a byte.
			if len(e) > 2*limit+32 {
				t.Fatalf("event beyond the read limit: %d chars", len(e))
			}
		}
		if whole.err != 0 {
			// A failed parser stays failed.
			if _, _, err := p.parse([]byte{0x81, 0x80, 0, 0, 0, 0}); err == nil {
				t.Fatal("failed parser accepted more input")
			}
		}
		p.release()
		q.release()
	})
}

// TestParserHoldsNothingIdle checks that a control frame split across
// reads borrows a pooled buffer only until it is delivered.
func TestParserHoldsNothingIdle(t *testing.T) {
	ping := fr(opPing, true, text("split ping")).bytes(true)
	p := newFrameParser(true, false, 1<<20)
	n, ev, err := p.parse(ping[:8])
	if err != nil || ev.kind != evNone || n != 8 || p.ctrl == nil {
		t.Fatalf("first half: %d %v %v (buffer held: %v)", n, ev.kind, err, p.ctrl != nil)
	}
	_, ev, err = p.parse(ping[8:])
	if err != nil || ev.kind != evControl || string(ev.data) != "split ping" {
		t.Fatalf("second half: %v %q %v", ev.kind, ev.data, err)
	}
	p.release()
	if p.ctrl != nil {
		t.Fatal("parser keeps a control buffer while idle")
	}
}

// A frame header split across reads is gathered in a pooled buffer that
// survives release between the reads (the event mode releases after
// every turn) and is given back once the header is decoded.
func TestParserSplitHeaderAcrossRelease(t *testing.T) {
	frame := fr(opBinary, true, bytes.Repeat([]byte{5}, 300)).bytes(true) // 2+2+4 header bytes
	p := newFrameParser(true, false, 1<<20)
	n, ev, err := p.parse(frame[:3])
	if err != nil || ev.kind != evNone || n != 3 || p.ctrl == nil {
		t.Fatalf("first 3 bytes: %d %v %v (buffer held: %v)", n, ev.kind, err, p.ctrl != nil)
	}
	p.release()
	n, ev, err = p.parse(frame[3:])
	if err != nil || ev.kind != evData || n != len(frame)-3 || !bytes.Equal(ev.data, bytes.Repeat([]byte{5}, 300)) || !ev.fin {
		t.Fatalf("rest: %d %v %v", n, ev.kind, err)
	}
	if p.ctrl != nil {
		t.Fatal("parser keeps the header buffer once the header is decoded")
	}
}

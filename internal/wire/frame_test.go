package wire

import (
	"bytes"
	"errors"
	"io"
	"reflect"
	"testing"
)

// testStream returns frames of assorted sizes (including keepalives) glued
// into one stream, and the non-empty payloads it carries.
func testStream() (stream []byte, payloads [][]byte) {
	sizes := []int{1, 0, 5, 300, 0, 0, 1000, 2, 4, 3, 513}
	for i, n := range sizes {
		p := make([]byte, n)
		for j := range p {
			p[j] = byte(i*31 + j)
		}
		stream = AppendFrame(stream, p)
		if n > 0 {
			payloads = append(payloads, p)
		}
	}
	return stream, payloads
}

// feedAll feeds chunks to d and returns copies of the payloads.
func feedAll(t testing.TB, d *FrameDecoder, chunks ...[]byte) ([][]byte, error) {
	var out [][]byte
	for _, p := range chunks {
		for len(p) > 0 {
			payload, n, err := d.Next(p)
			if err != nil {
				return out, err
			}
			if n < 0 || n > len(p) || (payload == nil && n != len(p)) {
				t.Fatalf("Next consumed %d of %d with payload %v", n, len(p), payload != nil)
			}
			p = p[n:]
			if payload != nil {
				out = append(out, bytes.Clone(payload))
			}
		}
	}
	d.Release()
	return out, nil
}

func TestFrameDecoderGlued(t *testing.T) {
	stream, want := testStream()
	var d FrameDecoder
	got, err := feedAll(t, &d, stream)
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Fatalf("got %d payloads, err %v; want %d", len(got), err, len(want))
	}
	if d.Pending() {
		t.Fatalf("Pending after a complete stream")
	}
}

func TestFrameDecoderEverySplit(t *testing.T) {
	stream, want := testStream()
	for i := 0; i <= len(stream); i++ {
		var d FrameDecoder
		got, err := feedAll(t, &d, stream[:i], stream[i:])
		if err != nil || !reflect.DeepEqual(got, want) {
			t.Fatalf("split at %d: got %d payloads, err %v", i, len(got), err)
		}
	}
	// Every pair of split points on a shorter stream.
	short := stream[:60]
	var ref FrameDecoder
	wantShort, _ := feedAll(t, &ref, short)
	for i := 0; i <= len(short); i++ {
		for j := i; j <= len(short); j++ {
			var d FrameDecoder
			got, err := feedAll(t, &d, short[:i], short[i:j], short[j:])
			if err != nil || !reflect.DeepEqual(got, wantShort) {
				t.Fatalf("split at %d,%d: got %d payloads, err %v", i, j, len(got), err)
			}
		}
	}
}

func TestFrameDecoderByteByByte(t *testing.T) {
	stream, want := testStream()
	var d FrameDecoder
	chunks := make([][]byte, len(stream))
	for i := range stream {
		chunks[i] = stream[i : i+1]
	}
	got, err := feedAll(t, &d, chunks...)
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Fatalf("got %d payloads, err %v", len(got), err)
	}
}

func TestFrameDecoderLargeFrame(t *testing.T) {
	p := bytes.Repeat([]byte("abcdefg"), 30000) // over the pooled sizes
	stream := AppendFrame(nil, p)
	d := FrameDecoder{MaxFrameSize: 1 << 20}
	got, err := feedAll(t, &d, stream[:1000], stream[1000:100000], stream[100000:])
	if err != nil || len(got) != 1 || !bytes.Equal(got[0], p) {
		t.Fatalf("large frame: %d payloads, err %v", len(got), err)
	}
	var small FrameDecoder
	if _, err := feedAll(t, &small, stream); !errors.Is(err, ErrFrameTooLarge) {
		t.Fatalf("default limit: err = %v", err)
	}
}

func TestFrameDecoderTooLarge(t *testing.T) {
	check := func(t *testing.T, err error) {
		t.Helper()
		var pe *ProtocolError
		if !errors.Is(err, ErrFrameTooLarge) || !errors.As(err, &pe) || pe.Code != DisconnectMessageTooBig {
			t.Fatalf("err = %v, want ProtocolError 1009 wrapping ErrFrameTooLarge", err)
		}
	}
	// A 4 GiB header fails on its own, without any payload.
	var d FrameDecoder
	_, n, err := d.Next([]byte{0xff, 0xff, 0xff, 0xff})
	check(t, err)
	if n != 4 || d.buf != nil {
		t.Fatalf("consumed %d, buffered %d", n, cap(d.buf))
	}
	// Split header.
	var d2 FrameDecoder
	if _, _, err := d2.Next([]byte{0xff, 0xff}); err != nil {
		t.Fatal(err)
	}
	_, _, err = d2.Next([]byte{0xff, 0xff})
	check(t, err)
	// The error is sticky.
	_, _, err = d2.Next(AppendFrame(nil, []byte("ok")))
	check(t, err)
	check(t, d2.Err())
	// One byte over a configured limit, after good frames.
	d3 := FrameDecoder{MaxFrameSize: 10}
	stream := AppendFrame(AppendFrame(nil, []byte("0123456789")), make([]byte, 11))
	got, err := feedAll(t, &d3, stream)
	check(t, err)
	if len(got) != 1 {
		t.Fatalf("got %d payloads before the error", len(got))
	}
	// Reset recovers for a new stream.
	d3.Reset()
	if got, err := feedAll(t, &d3, AppendFrame(nil, []byte("x"))); err != nil || len(got) != 1 {
		t.Fatalf("after Reset: %v %v", got, err)
	}
}

func TestFrameDecoderPendingAndRelease(t *testing.T) {
	frame := AppendFrame(nil, []byte("hello world"))
	var d FrameDecoder
	if p, n, err := d.Next(frame[:2]); p != nil || n != 2 || err != nil || !d.Pending() {
		t.Fatalf("partial header: %v %d %v pending=%v", p, n, err, d.Pending())
	}
	if p, n, err := d.Next(frame[2:8]); p != nil || n != 6 || err != nil || !d.Pending() || d.buf == nil {
		t.Fatalf("partial payload: %v %d %v", p, n, err)
	}
	p, n, err := d.Next(frame[8:])
	if string(p) != "hello world" || n != len(frame)-8 || err != nil || d.Pending() {
		t.Fatalf("completion: %q %d %v", p, n, err)
	}
	d.Release()
	if d.buf != nil || d.done != nil {
		t.Fatalf("decoder holds a buffer after Release")
	}
	// A whole frame in one chunk aliases the input.
	frame2 := AppendFrame(nil, []byte("abc"))
	p, _, _ = d.Next(frame2)
	if &p[0] != &frame2[4] {
		t.Fatalf("whole frame was copied")
	}
}

func TestStartFinishFrame(t *testing.T) {
	push := samplePublicationPush()
	for _, c := range codecs {
		buf, start := StartFrame([]byte("prefix"))
		buf = c.AppendPush(buf, push)
		buf = FinishFrame(buf, start)
		want := AppendFrame([]byte("prefix"), c.AppendPush(nil, push))
		if !bytes.Equal(buf, want) {
			t.Fatalf("%s: StartFrame/FinishFrame = %x, want %x", c.Name(), buf, want)
		}
	}
}

func TestFrameReader(t *testing.T) {
	stream, want := testStream()
	fr := NewFrameReader(bytes.NewReader(stream), 0)
	var got [][]byte
	for {
		p, err := fr.ReadFrame()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, bytes.Clone(p))
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %d payloads, want %d", len(got), len(want))
	}
	// Truncated inside a header and inside a payload.
	for _, cut := range []int{2, 6} {
		fr := NewFrameReader(bytes.NewReader(AppendFrame(nil, []byte("hello"))[:cut]), 0)
		if _, err := fr.ReadFrame(); err != io.ErrUnexpectedEOF {
			t.Errorf("cut at %d: err = %v", cut, err)
		}
	}
	fr = NewFrameReader(bytes.NewReader(AppendFrame(nil, make([]byte, 100))), 99)
	if _, err := fr.ReadFrame(); !errors.Is(err, ErrFrameTooLarge) {
		t.Errorf("oversized: err = %v", err)
	}
}

func TestHello(t *testing.T) {
	ch := AppendClientHello(nil, ProtocolVersion, EncodingBinary)
	if string(ch) != "HRLD\x01\x01" || len(ch) != ClientHelloSize {
		t.Fatalf("client hello %q", ch)
	}
	h, err := ParseClientHello(append(ch, 0, 0, 0, 9)) // frame bytes may follow
	if err != nil || h.Version != 1 || h.Encoding != EncodingBinary || AnswerHello(h) != HelloOK {
		t.Fatalf("ParseClientHello = %+v, %v", h, err)
	}
	for i := 0; i < len(ch); i++ {
		if _, err := ParseClientHello(ch[:i]); err != ErrHelloIncomplete {
			t.Errorf("prefix %q: err = %v", ch[:i], err)
		}
	}
	for _, bad := range []string{"G", "GET / HTTP/1.1\r\n", "HRLX\x01\x00", "\x16\x03\x01"} {
		if _, err := ParseClientHello([]byte(bad)); err != ErrBadHello {
			t.Errorf("%q: err = %v", bad, err)
		}
	}
	if s := AnswerHello(Hello{Version: 2, Encoding: EncodingJSON}); s != HelloUnsupportedVersion {
		t.Errorf("version 2: %v", s)
	}
	if s := AnswerHello(Hello{Version: 1, Encoding: 2}); s != HelloUnsupportedEncoding {
		t.Errorf("encoding 2: %v", s)
	}
	sh := AppendServerHello(nil, ProtocolVersion, EncodingJSON, HelloUnsupportedEncoding)
	if string(sh) != "HRLD\x01\x00\x02" || len(sh) != ServerHelloSize {
		t.Fatalf("server hello %q", sh)
	}
	h, err = ParseServerHello(sh)
	if err != nil || h.Status != HelloUnsupportedEncoding || h.Status.String() != "unsupported encoding" {
		t.Fatalf("ParseServerHello = %+v, %v", h, err)
	}
	if _, err := ParseServerHello(sh[:6]); err != ErrHelloIncomplete {
		t.Fatalf("short server hello: %v", err)
	}
}

func TestReadHello(t *testing.T) {
	stream := append(AppendClientHello(nil, 1, EncodingJSON), AppendFrame(nil, []byte("x"))...)
	r := bytes.NewReader(stream)
	h, err := ReadClientHello(r)
	if err != nil || h.Version != 1 || h.Encoding != EncodingJSON {
		t.Fatalf("ReadClientHello = %+v, %v", h, err)
	}
	if r.Len() != FrameHeaderSize+1 {
		t.Fatalf("ReadClientHello consumed frame bytes: %d left", r.Len())
	}
	if _, err := ReadClientHello(bytes.NewReader([]byte("GET / HTTP/1.1\r\n"))); err != ErrBadHello {
		t.Fatalf("garbage: %v", err)
	}
	if _, err := ReadClientHello(bytes.NewReader([]byte("HRLD\x01"))); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("truncated: %v", err)
	}
	h, err = ReadServerHello(bytes.NewReader(AppendServerHello(nil, 1, EncodingBinary, HelloUnsupportedVersion)))
	if err != nil || h.Status != HelloUnsupportedVersion || h.Encoding != EncodingBinary {
		t.Fatalf("ReadServerHello = %+v, %v", h, err)
	}
}

package wire

import (
	"bytes"
	"errors"
	"io"
	"reflect"
	"testing"
)

// Seeds shared by the fuzz targets; the checked-in corpora under
// testdata/fuzz hold more.
func addCommandSeeds(f *testing.F, c Codec) {
	for _, s := range sampleCommands() {
		f.Add(c.AppendCommand(nil, s.cmd))
	}
}

func checkCommandError(t *testing.T, err error) {
	var ce *CommandError
	var pe *ProtocolError
	if !errors.As(err, &ce) && !errors.As(err, &pe) {
		t.Fatalf("error %T %v is neither *CommandError nor *ProtocolError", err, err)
	}
	if ce != nil && ce.Code != ErrBadRequest && ce.Code != ErrMethodNotFound {
		t.Fatalf("command error code %d", ce.Code)
	}
}

func FuzzDecodeCommandJSON(f *testing.F) {
	addCommandSeeds(f, JSON)
	f.Add([]byte(`{"id":1,"method":"nope"}`))
	f.Add([]byte(`{"id":1,"method":"subscribe","params":{"channel":"a","since":{"offset":1,"epoch":"e"}}}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		// The fast decoder must agree with encoding/json whenever it
		// accepts an input.
		if fast, ok := decodeJSONCommandFast(b); ok {
			ref, err := decodeJSONCommandReflect(b)
			if err != nil || !reflect.DeepEqual(fast, ref) {
				t.Fatalf("fast decoder disagrees on %q:\n fast %s\n ref  %s, %v", b, dump(fast), dump(ref), err)
			}
		}
		cmd, err := JSON.DecodeCommand(b)
		if err != nil {
			checkCommandError(t, err)
			return
		}
		// What decodes re-encodes to JSON that decodes to the same command,
		// and survives the binary codec unchanged.
		enc := JSON.AppendCommand(nil, cmd)
		if !ValidJSON(enc) {
			t.Fatalf("re-encoding %q is not JSON: %q", b, enc)
		}
		again, err := JSON.DecodeCommand(enc)
		if err != nil {
			t.Fatalf("re-encoding %q does not decode: %v", enc, err)
		}
		if !reflect.DeepEqual(again, cmd) {
			t.Fatalf("JSON round trip changed %q:\n%s\n%s", b, dump(cmd), dump(again))
		}
		bin, err := Binary.DecodeCommand(Binary.AppendCommand(nil, cmd))
		if err != nil || !reflect.DeepEqual(bin, cmd) {
			t.Fatalf("binary round trip of %q: %s, %v", b, dump(bin), err)
		}
	})
}

func FuzzDecodeCommandBinary(f *testing.F) {
	addCommandSeeds(f, Binary)
	f.Add([]byte{1, 99, 7})
	f.Add([]byte{1, byte(MethodHistory), 1, 1, 'c', 3, 3, 5, 1, 'e'})
	f.Fuzz(func(t *testing.T, b []byte) {
		cmd, err := Binary.DecodeCommand(b)
		if err != nil {
			checkCommandError(t, err)
			return
		}
		enc := Binary.AppendCommand(nil, cmd)
		if len(enc) > len(b) {
			// Encoders write minimal varints and no padding.
			t.Fatalf("re-encoding of %x grew to %x", b, enc)
		}
		again, err := Binary.DecodeCommand(enc)
		if err != nil || !reflect.DeepEqual(again, cmd) {
			t.Fatalf("binary round trip of %x: %s, %v", b, dump(again), err)
		}
	})
}

func FuzzDecodePushBinary(f *testing.F) {
	for _, s := range samplePushes() {
		f.Add(Binary.AppendPush(nil, s.push))
	}
	for _, s := range sampleReplies() {
		f.Add(Binary.AppendReply(nil, s.reply))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		// Server messages: pushes and replies share the decoder entry.
		r, p, err := Binary.DecodeServerMessage(b, nil)
		if err != nil {
			var pe *ProtocolError
			if !errors.As(err, &pe) {
				t.Fatalf("error %T %v is not a *ProtocolError", err, err)
			}
			return
		}
		if (r == nil) == (p == nil) {
			t.Fatalf("DecodeServerMessage(%x) = %v, %v", b, r, p)
		}
		var enc []byte
		if p != nil {
			enc = Binary.AppendPush(nil, p)
			again, err := Binary.DecodePush(enc)
			if err != nil || !reflect.DeepEqual(again, p) {
				t.Fatalf("push round trip of %x: %s, %v", b, dump(again), err)
			}
			return
		}
		enc = Binary.AppendReply(nil, r)
		again, err := Binary.DecodeReply(enc, nil)
		if err != nil || !reflect.DeepEqual(again, r) {
			t.Fatalf("reply round trip of %x: %s, %v", b, dump(again), err)
		}
	})
}

func FuzzFrameDecoder(f *testing.F) {
	stream, _ := testStream()
	f.Add(stream, uint16(7))
	f.Add([]byte{0, 0, 0, 0, 0, 0, 0, 1, 'x'}, uint16(5))
	f.Add([]byte{0xff, 0xff, 0xff, 0xff}, uint16(1))
	f.Add([]byte{0, 0, 4, 1, 'a'}, uint16(2))
	f.Fuzz(func(t *testing.T, b []byte, split uint16) {
		const limit = 1024
		if len(b) > 4096 {
			return
		}
		// Reference: the blocking reader over the same bytes.
		var want [][]byte
		fr := NewFrameReader(bytes.NewReader(b), limit)
		var wantErr error
		for {
			p, err := fr.ReadFrame()
			if err != nil {
				if err != io.EOF {
					wantErr = err
				}
				break
			}
			want = append(want, bytes.Clone(p))
		}
		cut := int(split) % (len(b) + 1)
		chunks := [][]byte{b[:cut], b[cut:]}
		bytewise := make([][]byte, len(b))
		for i := range b {
			bytewise[i] = b[i : i+1]
		}
		for _, feed := range [][][]byte{{b}, chunks, bytewise} {
			d := FrameDecoder{MaxFrameSize: limit}
			got, err := feedAll(t, &d, feed...)
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("decoder got %d payloads, reader %d", len(got), len(want))
			}
			tooLarge := errors.Is(wantErr, ErrFrameTooLarge)
			if errors.Is(err, ErrFrameTooLarge) != tooLarge {
				t.Fatalf("decoder err %v, reader err %v", err, wantErr)
			}
			// A truncated stream leaves a partial frame pending.
			if wantErr == io.ErrUnexpectedEOF && !d.Pending() {
				t.Fatalf("truncated stream but nothing pending")
			}
		}
	})
}

func FuzzDatagram(f *testing.F) {
	for _, d := range []Datagram{
		{Kind: DatagramConnect, Nonce: 1, Message: Binary.AppendCommand(nil, sampleCommands()[0].cmd)},
		{Kind: DatagramAccept, Nonce: 1, Session: 2, Secret: 3, Message: []byte{2, 0, 1}},
		{Kind: DatagramData, Session: 2, Secret: 3, Seq: 4, Message: Binary.AppendPush(nil, samplePublicationPush())},
		{Kind: DatagramClose, Session: 2, Secret: 3, Seq: 5},
		{Kind: DatagramReset, Session: 2},
	} {
		b, err := AppendDatagram(nil, &d)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var d Datagram
		if err := ParseDatagram(b, &d); err != nil {
			if !errors.Is(err, ErrBadDatagram) {
				t.Fatalf("error %v does not wrap ErrBadDatagram", err)
			}
			return
		}
		if len(d.Message) > 0 && !bytesWithin(d.Message, b) {
			t.Fatalf("message does not alias the input")
		}
		enc, err := AppendDatagram(nil, &d)
		if err != nil {
			t.Fatalf("re-encoding %+v: %v", d, err)
		}
		var again Datagram
		if err := ParseDatagram(enc, &again); err != nil || !reflect.DeepEqual(again, d) {
			t.Fatalf("round trip of %x: %+v, %v", b, again, err)
		}
		if d.Kind != DatagramConnect && !bytes.Equal(enc, b) {
			t.Fatalf("re-encoding differs:\n%x\n%x", b, enc)
		}
		// The message itself is a binary server or client message: decoding
		// it must fail cleanly or succeed.
		if d.Kind == DatagramConnect || d.Kind == DatagramData {
			if _, err := Binary.DecodeCommand(d.Message); err != nil {
				checkCommandError(t, err)
			}
		}
	})
}

func bytesWithin(sub, b []byte) bool {
	for i := range b {
		if &b[i] == &sub[0] {
			return i+len(sub) <= len(b)
		}
	}
	return false
}

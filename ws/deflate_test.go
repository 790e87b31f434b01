package ws

import (
	"bytes"
	"context"
	"io"
	"net"
	"testing"

	"github.com/klauspost/compress/flate"
)

// deflateMsg compresses p as a permessage-deflate payload (RFC 7692
// §7.2.1): sync flush, tail stripped. A non-nil w keeps its context.
func deflateMsg(t testing.TB, w *flate.Writer, p []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	if w == nil {
		var err error
		w, err = flate.NewWriter(&buf, 5)
		if err != nil {
			t.Fatal(err)
		}
	} else {
		w.Reset(&buf)
	}
	w.Write(p)
	w.Flush()
	b := buf.Bytes()
	if !bytes.HasSuffix(b, []byte{0, 0, 0xff, 0xff}) {
		t.Fatal("no sync marker")
	}
	return b[:len(b)-4]
}

// inflateMsg undoes deflateMsg.
func inflateMsg(t testing.TB, p []byte) []byte {
	t.Helper()
	r := flate.NewReader(io.MultiReader(bytes.NewReader(p), bytes.NewReader(deflateTail)))
	out, err := io.ReadAll(r)
	if err != nil {
		t.Fatalf("inflate: %v", err)
	}
	return out
}

func compressedFrame(op opcode, fin bool, payload []byte) rawFrame {
	return rawFrame{op: op, fin: fin, rsv: rsv1Bit, payload: payload}
}

// TestCompressionProtocol runs RFC 7692 cases against a server with
// permessage-deflate (echoes are sent uncompressed: the threshold is
// high), in both modes over both transports.
func TestCompressionProtocol(t *testing.T) {
	hello := deflateMsg(t, nil, text("hello, compressed world"))
	bomb := deflateMsg(t, nil, make([]byte, 4<<20))
	badUTF8 := deflateMsg(t, nil, []byte("ok \xed\xa0\x80"))
	split := deflateMsg(t, nil, bytes.Repeat(text("fragmented "), 50))
	cases := []protocolCase{
		{name: "12.1 compressed text", rfc: "RFC 7692 §7.2.2", send: []rawFrame{compressedFrame(opText, true, hello)}, want: []peerFrame{echoed(opText, text("hello, compressed world"))}},
		{name: "12.2 compressed message in fragments", rfc: "RFC 7692 §6.1", send: []rawFrame{compressedFrame(opBinary, false, split[:10]), fr(opPing, true, nil), fr(opContinuation, false, split[10:11]), fr(opContinuation, true, split[11:])},
			want: []peerFrame{echoed(opPong, []byte{}), echoed(opBinary, bytes.Repeat(text("fragmented "), 50))}},
		{name: "12.3 uncompressed message on a deflate connection", rfc: "RFC 7692 §6", send: []rawFrame{fr(opText, true, text("plain"))}, want: []peerFrame{echoed(opText, text("plain"))}},
		{name: "12.4 empty compressed message", rfc: "RFC 7692 §7.2.3.6", send: []rawFrame{compressedFrame(opText, true, []byte{0x00})}, want: []peerFrame{echoed(opText, []byte{})}},
		{name: "13.1 RSV1 on a continuation frame", rfc: "RFC 7692 §6.1", send: []rawFrame{compressedFrame(opText, false, hello[:3]), compressedFrame(opContinuation, true, hello[3:])}, wantClose: StatusProtocolError},
		{name: "13.2 RSV1 on a control frame", rfc: "RFC 7692 §6.1", send: []rawFrame{compressedFrame(opPing, true, nil)}, wantClose: StatusProtocolError},
		{name: "13.3 RSV2 still reserved", rfc: "RFC 6455 §5.2", send: []rawFrame{{op: opText, fin: true, rsv: rsv2Bit, payload: text("x")}}, wantClose: StatusProtocolError},
		{name: "13.4 invalid deflate data", rfc: "RFC 7692 §7.2.2", send: []rawFrame{compressedFrame(opBinary, true, []byte{0xff, 0xff, 0xff, 0x00, 0x12})}, wantClose: StatusInvalidFramePayloadData},
		{name: "13.5 decompression bomb over the read limit", rfc: "RFC 6455 §10.4", send: []rawFrame{compressedFrame(opBinary, true, bomb)}, wantClose: StatusMessageTooBig},
		{name: "13.6 compressed text not UTF-8", rfc: "RFC 6455 §8.1", send: []rawFrame{compressedFrame(opText, true, badUTF8)}, wantClose: StatusInvalidFramePayloadData},
	}
	if len(bomb) > 100_000 {
		t.Fatalf("bomb is %d bytes, not below the read limit", len(bomb))
	}
	params := func() *deflateParams {
		return &deflateParams{writeNoContextTakeover: true, readNoContextTakeover: true, threshold: 1 << 30}
	}
	for _, tr := range transports {
		for _, mode := range modes {
			for _, pc := range cases {
				t.Run(tr.name+"/"+mode.name+"/"+pc.name, func(t *testing.T) {
					runProtocolCase(t, tr.pair, mode.event, pc, pairOpts{readLimit: 100_000, serverDeflate: params()})
				})
			}
		}
	}
}

// TestCompressionReadContextTakeover checks that a server that agreed to
// client context takeover inflates each message with the previous ones'
// window (RFC 7692 §7.2.2), in both modes.
func TestCompressionReadContextTakeover(t *testing.T) {
	var buf bytes.Buffer
	w, _ := flate.NewWriter(&buf, 5)
	msgs := [][]byte{bytes.Repeat(text("window "), 40), bytes.Repeat(text("window "), 40), text("window window")}
	var frames []rawFrame
	var want []peerFrame
	for _, m := range msgs {
		buf.Reset()
		w.Write(m)
		w.Flush()
		b := append([]byte(nil), buf.Bytes()[:buf.Len()-4]...)
		frames = append(frames, compressedFrame(opText, true, b))
		want = append(want, echoed(opText, m))
	}
	// The second message must actually depend on the first's window.
	if len(frames[1].payload) >= len(frames[0].payload) {
		t.Fatalf("second message (%d bytes) does not use the window", len(frames[1].payload))
	}
	for _, mode := range modes {
		t.Run(mode.name, func(t *testing.T) {
			runProtocolCase(t, tcpPair, mode.event, protocolCase{rfc: "RFC 7692 §7.2.2", send: frames, want: want},
				pairOpts{readLimit: 1 << 20, serverDeflate: &deflateParams{writeNoContextTakeover: true, threshold: 1 << 30}})
		})
	}
}

// TestCompressionWrite checks what a client receives from a compressing
// server (RFC 7692 §7.2.1): RSV1 and a deflate payload for messages at
// or over the threshold, plain frames below it, and a prepared message's
// shared compressed frame.
func TestCompressionWrite(t *testing.T) {
	for _, mode := range []string{"write", "prepared", "writer"} {
		t.Run(mode, func(t *testing.T) {
			sc, cc := tcpPair(t)
			srv := newConn(connConfig{netConn: sc, isServer: true, deflate: &deflateParams{writeNoContextTakeover: true, readNoContextTakeover: true, threshold: 100}})
			defer srv.CloseNow()
			peer := &rawPeer{t: t, conn: cc}
			big := bytes.Repeat(text("compress me "), 100)
			small := text("tiny")
			ctx := context.Background()
			for _, m := range [][]byte{big, small} {
				var err error
				switch mode {
				case "write":
					err = srv.Write(ctx, MessageText, m)
				case "prepared":
					err = srv.WritePrepared(ctx, NewPreparedMessage(MessageText, m))
				case "writer":
					var w io.WriteCloser
					if w, err = srv.Writer(ctx, MessageText); err == nil {
						w.Write(m)
						err = w.Close()
					}
				}
				if err != nil {
					t.Fatal(err)
				}
				f, err := peer.readFrame(true)
				if err != nil {
					t.Fatal(err)
				}
				wantRSV1 := len(m) >= 100 || mode == "writer"
				if f.rsv1 != wantRSV1 || !f.fin || f.op != opText {
					t.Fatalf("%d-byte message: rsv1=%v fin=%v op=%v", len(m), f.rsv1, f.fin, f.op)
				}
				got := f.data
				if f.rsv1 {
					got = inflateMsg(t, f.data)
					if len(m) >= 100 && len(f.data) >= len(m) {
						t.Fatalf("compressed %d bytes into %d", len(m), len(f.data))
					}
				}
				if !bytes.Equal(got, m) {
					t.Fatalf("payload differs")
				}
			}
		})
	}
}

// TestCompressionConnPairs runs Conn-to-Conn echoes with every
// combination of context takeover and small windows (RFC 7692 §7.1.1,
// §7.1.2).
func TestCompressionConnPairs(t *testing.T) {
	for _, takeover := range []bool{false, true} {
		for _, bits := range []int{9, 15} {
			for _, mode := range modes {
				t.Run(mode.name+"/takeover="+map[bool]string{true: "yes", false: "no"}[takeover]+"/bits="+itoa(bits), func(t *testing.T) {
					p := func() *deflateParams {
						return &deflateParams{writeNoContextTakeover: !takeover, readNoContextTakeover: !takeover, writeWindowBits: bits, readWindowBits: bits, threshold: 16, level: 6}
					}
					sc, cc := tcpPair(t)
					srv, cli := newConnPair(t, sc, cc, pairOpts{serverDeflate: p(), clientDeflate: p()})
					wait := startEcho(t, srv, mode.event)
					ctx := context.Background()
					pm := NewPreparedMessage(MessageBinary, bytes.Repeat(text("prepared "), 300))
					for i := range 20 {
						msg := bytes.Repeat([]byte{byte('a' + i%3)}, 100+i*997)
						var err error
						switch i % 4 {
						case 3:
							err = cli.WritePrepared(ctx, pm)
							msg = pm.Payload()
						case 1:
							var w io.WriteCloser
							if w, err = cli.Writer(ctx, MessageBinary); err == nil {
								for p := msg; len(p) > 0; p = p[min(len(p), 5000):] {
									w.Write(p[:min(len(p), 5000)])
								}
								err = w.Close()
							}
						default:
							err = cli.Write(ctx, MessageBinary, msg)
						}
						if err != nil {
							t.Fatal(err)
						}
						_, got, err := cli.Read(ctx)
						if err != nil {
							t.Fatalf("message %d: %v", i, err)
						}
						if !bytes.Equal(got, msg) {
							t.Fatalf("message %d differs", i)
						}
					}
					cli.Close(StatusNormalClosure, "")
					if err := wait(); CloseStatus(err) != StatusNormalClosure {
						t.Fatalf("server: %v", err)
					}
				})
			}
		}
	}
}

// FuzzInflate feeds arbitrary compressed payloads to the event-mode
// inflate path: it must never panic, never return more than the read
// limit, and agree with a plain decompressor on what it accepts.
func FuzzInflate(f *testing.F) {
	f.Add(deflateMsg(f, nil, text("hello hello hello")), false)
	f.Add(deflateMsg(f, nil, make([]byte, 10000)), false)
	f.Add(deflateMsg(f, nil, []byte("\xed\xa0\x80")), true)
	f.Add([]byte{0x00}, true)
	f.Add([]byte{0xff, 0xff, 0xff}, false)
	f.Fuzz(func(t *testing.T, in []byte, text bool) {
		const limit = 4096
		sc, _ := net.Pipe()
		c := newConn(connConfig{netConn: sc, isServer: true, readLimit: limit,
			deflate: &deflateParams{writeNoContextTakeover: true, readNoContextTakeover: true}})
		defer c.CloseNow()
		out, perr := c.inflateMessage(in, text)
		if perr != nil {
			switch perr.Code {
			case StatusMessageTooBig, StatusInvalidFramePayloadData:
			default:
				t.Fatalf("unexpected failure code %v", perr.Code)
			}
			return
		}
		defer putMsgBuf(out)
		if len(*out) > limit {
			t.Fatalf("inflated %d bytes past the limit", len(*out))
		}
		ref, err := io.ReadAll(io.LimitReader(flate.NewReader(io.MultiReader(bytes.NewReader(in), bytes.NewReader(deflateTail))), limit+1))
		if err != nil || !bytes.Equal(ref, *out) {
			t.Fatalf("accepted input the reference rejects or decodes differently: %v", err)
		}
	})
}

package ws

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"net"
	"strings"
	"testing"
	"time"
)

// protocolCase is one Autobahn-style case: the frames a raw client sends
// to a server Conn that echoes messages, what the client must receive
// back (echoed messages and pongs), and the close code the server must
// send (0: the connection stays healthy and closes normally when asked).
type protocolCase struct {
	name      string
	rfc       string
	send      []rawFrame
	want      []peerFrame
	wantClose StatusCode
}

func text(s string) []byte { return []byte(s) }

func closePayload(code StatusCode, reason string) []byte {
	return appendClosePayload(nil, code, reason)
}

func fr(op opcode, fin bool, payload []byte) rawFrame {
	return rawFrame{op: op, fin: fin, payload: payload}
}

func echoed(op opcode, payload []byte) peerFrame {
	return peerFrame{fin: true, op: op, data: payload}
}

func protocolCases() []protocolCase {
	long125 := bytes.Repeat([]byte{0xfe}, 125)
	var cases []protocolCase
	add := func(c ...protocolCase) { cases = append(cases, c...) }

	// 1 Framing
	add(
		protocolCase{name: "1.1 text 7-bit length", rfc: "§5.2", send: []rawFrame{fr(opText, true, text("hello"))}, want: []peerFrame{echoed(opText, text("hello"))}},
		protocolCase{name: "1.1 empty text", rfc: "§5.6", send: []rawFrame{fr(opText, true, nil)}, want: []peerFrame{echoed(opText, []byte{})}},
		protocolCase{name: "1.2 binary 16-bit length", rfc: "§5.2", send: []rawFrame{fr(opBinary, true, bytes.Repeat([]byte{1}, 300))}, want: []peerFrame{echoed(opBinary, bytes.Repeat([]byte{1}, 300))}},
		protocolCase{name: "1.2 binary 64-bit length", rfc: "§5.2", send: []rawFrame{fr(opBinary, true, bytes.Repeat([]byte{2}, 70000))}, want: []peerFrame{echoed(opBinary, bytes.Repeat([]byte{2}, 70000))}},
		protocolCase{name: "1.3 non-minimal 16-bit length accepted", rfc: "§5.2", send: []rawFrame{{op: opText, fin: true, payload: text("abc"), lenEncode: 16}}, want: []peerFrame{echoed(opText, text("abc"))}},
		protocolCase{name: "1.3 non-minimal 64-bit length accepted", rfc: "§5.2", send: []rawFrame{{op: opText, fin: true, payload: text("abc"), lenEncode: 64}}, want: []peerFrame{echoed(opText, text("abc"))}},
		protocolCase{name: "1.4 64-bit length with MSB set", rfc: "§5.2", send: []rawFrame{{op: opBinary, fin: true, lengthOver: 1 << 63}}, wantClose: StatusProtocolError},
		protocolCase{name: "1.5 unmasked client frame", rfc: "§5.1", send: []rawFrame{{op: opText, fin: true, payload: text("x"), unmasked: true}}, wantClose: StatusProtocolError},
	)
	// 2 Pings and pongs
	pings := make([]rawFrame, 10)
	pongs := make([]peerFrame, 10)
	for i := range pings {
		pings[i] = fr(opPing, true, []byte{byte(i)})
		pongs[i] = echoed(opPong, []byte{byte(i)})
	}
	add(
		protocolCase{name: "2.1 ping without payload", rfc: "§5.5.2", send: []rawFrame{fr(opPing, true, nil)}, want: []peerFrame{echoed(opPong, []byte{})}},
		protocolCase{name: "2.2 ping with 125-byte payload", rfc: "§5.5.2", send: []rawFrame{fr(opPing, true, long125)}, want: []peerFrame{echoed(opPong, long125)}},
		protocolCase{name: "2.5 ping with 126-byte payload", rfc: "§5.5", send: []rawFrame{fr(opPing, true, bytes.Repeat([]byte{1}, 126))}, wantClose: StatusProtocolError},
		protocolCase{name: "2.6 unsolicited pong ignored", rfc: "§5.5.3", send: []rawFrame{fr(opPong, true, text("x")), fr(opText, true, text("after"))}, want: []peerFrame{echoed(opText, text("after"))}},
		protocolCase{name: "2.10 ten pings, ten pongs in order", rfc: "§5.5.3", send: pings, want: pongs},
		protocolCase{name: "2.11 fragmented ping", rfc: "§5.5", send: []rawFrame{fr(opPing, false, text("a")), fr(opContinuation, true, text("b"))}, wantClose: StatusProtocolError},
	)
	// 3 Reserved bits (no extension negotiated)
	for _, rsv := range []byte{rsv1Bit, rsv2Bit, rsv3Bit, rsv1Bit | rsv2Bit | rsv3Bit} {
		for _, op := range []opcode{opText, opBinary, opPing, opClose} {
			add(protocolCase{name: "3 reserved bits " + itoa(int(rsv)) + " on opcode " + itoa(int(op)), rfc: "§5.2",
				send: []rawFrame{fr(opText, true, text("ok")), {op: op, fin: true, rsv: rsv, payload: text("bad")}},
				want: []peerFrame{echoed(opText, text("ok"))}, wantClose: StatusProtocolError})
		}
	}
	// 4 Opcodes
	for _, op := range []opcode{3, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF} {
		add(protocolCase{name: "4 reserved opcode " + itoa(int(op)), rfc: "§5.2",
			send: []rawFrame{fr(opText, true, text("ok")), fr(op, true, text("x"))},
			want: []peerFrame{echoed(opText, text("ok"))}, wantClose: StatusProtocolError})
	}
	// 5 Fragmentation
	add(
		protocolCase{name: "5.3 text in two fragments", rfc: "§5.4", send: []rawFrame{fr(opText, false, text("frag")), fr(opContinuation, true, text("ment"))}, want: []peerFrame{echoed(opText, text("fragment"))}},
		protocolCase{name: "5.6 ping between fragments", rfc: "§5.4", send: []rawFrame{fr(opText, false, text("a")), fr(opPing, true, text("p")), fr(opContinuation, true, text("b"))}, want: []peerFrame{echoed(opPong, text("p")), echoed(opText, text("ab"))}},
		protocolCase{name: "5.9 continuation without a message", rfc: "§5.4", send: []rawFrame{fr(opContinuation, true, text("x"))}, wantClose: StatusProtocolError},
		protocolCase{name: "5.10 continuation without a message, not fin", rfc: "§5.4", send: []rawFrame{fr(opContinuation, false, text("x"))}, wantClose: StatusProtocolError},
		protocolCase{name: "5.18 new data frame inside a message", rfc: "§5.4", send: []rawFrame{fr(opText, false, text("a")), fr(opText, true, text("b"))}, wantClose: StatusProtocolError},
		protocolCase{name: "5.19 empty fragments", rfc: "§5.4", send: []rawFrame{fr(opBinary, false, nil), fr(opContinuation, false, nil), fr(opContinuation, false, text("x")), fr(opContinuation, true, nil)}, want: []peerFrame{echoed(opBinary, text("x"))}},
		protocolCase{name: "5.20 many fragments with pings", rfc: "§5.4", send: []rawFrame{fr(opBinary, false, text("1")), fr(opPing, true, nil), fr(opContinuation, false, text("2")), fr(opPong, true, nil), fr(opContinuation, true, text("3"))}, want: []peerFrame{echoed(opPong, []byte{}), echoed(opBinary, text("123"))}},
	)
	// 6 UTF-8
	add(
		protocolCase{name: "6.2 valid UTF-8 split inside a code point", rfc: "§8.1", send: []rawFrame{fr(opText, false, []byte("κό\xcf")), fr(opContinuation, true, []byte("\x83με"))}, want: []peerFrame{echoed(opText, []byte("κόσμε"))}},
		protocolCase{name: "6.3 invalid UTF-8 in one frame", rfc: "§8.1", send: []rawFrame{fr(opText, true, []byte("\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80edited"))}, wantClose: StatusInvalidFramePayloadData},
		protocolCase{name: "6.4 fail fast: invalid first fragment, no FIN sent", rfc: "§8.1", send: []rawFrame{fr(opText, false, []byte("ok\xc0\xafmore"))}, wantClose: StatusInvalidFramePayloadData},
		protocolCase{name: "6.5 message ends inside a code point", rfc: "§8.1", send: []rawFrame{fr(opText, false, []byte("a\xe2\x82")), fr(opContinuation, true, nil)}, wantClose: StatusInvalidFramePayloadData},
		protocolCase{name: "6.6 surrogate", rfc: "§8.1", send: []rawFrame{fr(opText, true, []byte("\xed\xa0\x80"))}, wantClose: StatusInvalidFramePayloadData},
		protocolCase{name: "6.7 binary is not checked", rfc: "§5.6", send: []rawFrame{fr(opBinary, true, []byte("\xff\xfe"))}, want: []peerFrame{echoed(opBinary, []byte("\xff\xfe"))}},
	)
	// 7 Closing
	add(
		protocolCase{name: "7.1 close without payload", rfc: "§5.5.1", send: []rawFrame{fr(opClose, true, nil)}, wantClose: StatusNoStatusRcvd},
		protocolCase{name: "7.1 data after close ignored", rfc: "§5.5.1", send: []rawFrame{fr(opClose, true, closePayload(StatusNormalClosure, "")), fr(opText, true, text("late"))}, wantClose: StatusNormalClosure},
		protocolCase{name: "7.3 close with a 1-byte payload", rfc: "§5.5.1", send: []rawFrame{fr(opClose, true, []byte{3})}, wantClose: StatusProtocolError},
		protocolCase{name: "7.3 close reason of 123 bytes", rfc: "§5.5", send: []rawFrame{fr(opClose, true, closePayload(StatusNormalClosure, strings.Repeat("r", 123)))}, wantClose: StatusNormalClosure},
		protocolCase{name: "7.5 close reason not UTF-8", rfc: "§7.4", send: []rawFrame{fr(opClose, true, append(closePayload(StatusNormalClosure, ""), 0xff, 0xfe))}, wantClose: StatusInvalidFramePayloadData},
	)
	for _, code := range []StatusCode{1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 3000, 3999, 4000, 4999} {
		add(protocolCase{name: "7.7 valid close code " + itoa(int(code)), rfc: "§7.4.1", send: []rawFrame{fr(opClose, true, closePayload(code, "r"))}, wantClose: code})
	}
	for _, code := range []StatusCode{0, 999, 1004, 1005, 1006, 1012, 1013, 1014, 1015, 1016, 1100, 2000, 2999, 5000, 65535} {
		var p [2]byte
		binary.BigEndian.PutUint16(p[:], uint16(code))
		add(protocolCase{name: "7.9 invalid close code " + itoa(int(code)), rfc: "§7.4.1", send: []rawFrame{fr(opClose, true, p[:])}, wantClose: StatusProtocolError})
	}
	// 9 Limits (the test's read limit is 100,000 bytes)
	add(
		protocolCase{name: "9.1 frame over the read limit, header only", rfc: "§10.4", send: []rawFrame{{op: opBinary, fin: true, lengthOver: 1 << 40}}, wantClose: StatusMessageTooBig},
		protocolCase{name: "9.2 message over the read limit across fragments", rfc: "§10.4", send: []rawFrame{fr(opBinary, false, make([]byte, 60000)), fr(opContinuation, true, make([]byte, 60000))}, wantClose: StatusMessageTooBig},
		protocolCase{name: "9.3 message at the read limit", rfc: "§10.4", send: []rawFrame{fr(opBinary, false, make([]byte, 50000)), fr(opContinuation, true, make([]byte, 50000))}, want: []peerFrame{echoed(opBinary, make([]byte, 100000))}},
	)
	return cases
}

// TestProtocol runs every protocol case against a server Conn in both
// modes over both transports, and checks what the raw client sees: the
// echoed frames, the close code, and that the server closed TCP.
func TestProtocol(t *testing.T) {
	for _, tr := range transports {
		for _, mode := range modes {
			for _, pc := range protocolCases() {
				t.Run(tr.name+"/"+mode.name+"/"+pc.name, func(t *testing.T) {
					runProtocolCase(t, tr.pair, mode.event, pc, pairOpts{readLimit: 100_000})
				})
			}
		}
	}
}

func runProtocolCase(t *testing.T, pair func(testing.TB) (net.Conn, net.Conn), event bool, pc protocolCase, o pairOpts) {
	sc, cc := pair(t)
	if o.opts.CloseTimeout == 0 {
		o.opts.CloseTimeout = 2e9
	}
	srv := newConn(connConfig{netConn: sc, isServer: true, deflate: o.serverDeflate, readLimit: o.readLimit, opts: o.opts})
	t.Cleanup(func() { srv.CloseNow() })
	wait := startEcho(t, srv, event)
	peer := &rawPeer{t: t, conn: cc}
	var out []byte
	for _, f := range pc.send {
		out = append(out, f.bytes(true)...)
	}
	wantClose := pc.wantClose
	if wantClose == 0 {
		out = append(out, fr(opClose, true, closePayload(StatusNormalClosure, "done")).bytes(true)...)
		wantClose = StatusNormalClosure
	}
	wg := peer.writeAsync(out)
	code, frames := peer.expectClose(true)
	if code != wantClose {
		t.Errorf("%s: close code %v, want %v", pc.rfc, code, wantClose)
	}
	if len(frames) != len(pc.want) {
		t.Fatalf("%s: got %d frames before close, want %d: %+v", pc.rfc, len(frames), len(pc.want), frames)
	}
	for i, f := range frames {
		w := pc.want[i]
		if f.op != w.op || !f.fin || f.rsv1 != w.rsv1 || !bytes.Equal(f.data, w.data) {
			t.Fatalf("%s: frame %d = op %v fin %v rsv1 %v %d bytes, want op %v %d bytes", pc.rfc, i, f.op, f.fin, f.rsv1, len(f.data), w.op, len(w.data))
		}
	}
	peer.expectEOF()
	wg.Wait()
	err := wait()
	switch {
	case pc.wantClose == 0 || pc.wantClose == code && CloseStatus(err) >= 0:
		if CloseStatus(err) < 0 {
			t.Fatalf("server ended with %v, want a close from the peer", err)
		}
	default:
		var perr *ProtocolError
		if !errors.As(err, &perr) || perr.Code != wantClose {
			t.Fatalf("server ended with %v, want a protocol error %v", err, wantClose)
		}
	}
}

// TestClientSide checks the client's half of RFC 6455 §5.1 in both modes:
// its frames are masked, and a masked frame from the server fails the
// connection with 1002.
func TestClientSide(t *testing.T) {
	for _, mode := range modes {
		t.Run(mode.name, func(t *testing.T) {
			sc, cc := tcpPair(t)
			cli := newConn(connConfig{netConn: cc, opts: ConnOptions{CloseTimeout: time.Second}})
			defer cli.CloseNow()
			peer := &rawPeer{t: t, conn: sc}
			var done func() error
			if mode.event {
				useTestPoller(t)
				h := newEchoHandler()
				if err := cli.Serve(h); err != nil {
					t.Fatal(err)
				}
				done = func() error { return <-h.closed }
			} else {
				done = readUntilError(cli)
			}
			// The echo handler of event mode echoes; in blocking mode
			// write directly.
			if !mode.event {
				if err := cli.Write(context.Background(), MessageText, text("masked")); err != nil {
					t.Fatal(err)
				}
			} else {
				peer.write(fr(opText, true, text("masked")).bytes(false))
			}
			f, err := peer.readFrame(false) // fails unless masked
			if err != nil || string(f.data) != "masked" {
				t.Fatalf("client frame: %q %v", f.data, err)
			}
			peer.write(fr(opText, true, text("bad")).bytes(true)) // masked by a server
			code, _ := peer.expectClose(false)
			if code != StatusProtocolError {
				t.Fatalf("client sent close %v, want 1002", code)
			}
			var perr *ProtocolError
			if err := done(); !errors.As(err, &perr) || perr.Code != StatusProtocolError {
				t.Fatalf("client ended with %v", err)
			}
			peer.expectEOF()
		})
	}
}

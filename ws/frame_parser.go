package ws

import (
	"encoding/binary"
	"sync"
)

// eventKind says what frameParser.parse produced.
type eventKind uint8

const (
	evNone    eventKind = iota // all input consumed, nothing to report yet
	evData                     // a piece of a data message
	evControl                  // a complete control frame
)

// frameEvent is one output of the parser. data aliases the parser's input
// (unmasked in place) or, for a control frame split across inputs, a buffer
// owned by the parser; either way it is valid until the next parse call.
type frameEvent struct {
	kind eventKind
	// op is the message opcode (opText, opBinary) for evData and the frame
	// opcode for evControl.
	op         opcode
	data       []byte
	first      bool // first piece of a data message
	fin        bool // last piece of a data message
	compressed bool // the message has RSV1 set (permessage-deflate)
}

type parseStage uint8

const (
	stageHeader parseStage = iota
	stagePayload
	stageFailed
)

// ctrlBufPool holds payload buffers for control frames that arrive split
// across reads; the common case (a whole control frame in one read) needs
// none.
var ctrlBufPool = sync.Pool{New: func() any { return new([maxControlPayload]byte) }}

// frameParser is an incremental RFC 6455 frame parser: a pure state
// machine, fed bytes in arbitrary pieces, that emits data pieces and
// control frames and enforces every framing rule and limit. It does no
// I/O and keeps only what a partial frame needs: up to 13 header bytes and,
// for a split control frame, a pooled 125-byte buffer.
//
// Non-minimal length encodings (for example a 5-byte payload announced
// with the 16-bit form) are accepted: RFC 6455 §5.2 asks senders for the
// minimal form, but the length is unambiguous and every limit applies to
// its value, so rejecting them would only hurt interoperability.
type frameParser struct {
	// Fields are ordered so that the struct packs without padding: every
	// connection carries one.
	readLimit int64 // largest frame / message payload on the wire
	remaining int64 // payload bytes of the current frame still to come
	msgSize   int64 // payload bytes of the current data message so far, on the wire

	// ctrl is a pooled buffer, held only while something is split across
	// inputs: a frame header (its first hdrLen bytes, in stageHeader) or
	// a control frame's payload (ctrlLen bytes, in stagePayload); and
	// while a control payload gathered in it is handed out (ctrlOut).
	ctrl *[maxControlPayload]byte
	err  *ProtocolError

	key  [4]byte       // masking key of the current frame
	utf8 utf8Validator // current text message

	expectMasked bool // frames must be masked (we are the server)
	allowRSV1    bool // permessage-deflate was negotiated
	stage        parseStage
	hdrLen       uint8

	// current frame
	fin, rsv1 bool
	masked    bool
	op        opcode
	maskPos   uint8

	ctrlLen uint8
	ctrlOut bool // ctrl was handed out by the last parse call

	// current data message
	msgOp      opcode // 0 when no data message is open
	msgFirst   bool   // the first piece of the message was not emitted yet
	compressed bool
	checkUTF8  bool
}

func newFrameParser(isServer, deflate bool, readLimit int64) frameParser {
	return frameParser{expectMasked: isServer, allowRSV1: deflate, readLimit: readLimit}
}

// frameRemaining is the payload still expected for the current frame;
// used as a size hint when a message starts.
func (p *frameParser) frameRemaining() int64 {
	if p.stage == stagePayload {
		return p.remaining
	}
	return 0
}

// inFinalFrame reports whether the payload being read belongs to a frame
// with FIN set: with frameRemaining, it tells that a message's size is
// known.
func (p *frameParser) inFinalFrame() bool {
	return p.stage == stagePayload && p.fin
}

// release returns pooled memory; the parser stays usable.
func (p *frameParser) release() {
	if p.ctrl != nil && (p.ctrlOut || p.ctrlLen == 0) && p.hdrLen == 0 {
		ctrlBufPool.Put(p.ctrl)
		p.ctrl = nil
		p.ctrlOut = false
		p.ctrlLen = 0
	}
}

func (p *frameParser) fail(e *ProtocolError) (int, frameEvent, error) {
	p.stage = stageFailed
	p.err = e
	if p.ctrl != nil {
		ctrlBufPool.Put(p.ctrl)
		p.ctrl = nil
	}
	return 0, frameEvent{}, e
}

// parse consumes bytes from in until it has an event to report or in is
// exhausted. It returns how many bytes it consumed; the caller passes the
// rest again. Data pieces are unmasked in place in in. After an error the
// parser stays failed.
func (p *frameParser) parse(in []byte) (int, frameEvent, error) {
	if p.ctrlOut {
		p.ctrlOut = false
		p.ctrlLen = 0
		ctrlBufPool.Put(p.ctrl)
		p.ctrl = nil
	}
	n := 0
	for {
		switch p.stage {
		case stageFailed:
			return n, frameEvent{}, p.err
		case stageHeader:
			c, ok := p.readHeader(in[n:])
			n += c
			if !ok {
				return n, frameEvent{}, nil
			}
			if err := p.checkHeader(); err != nil {
				_, ev, e := p.fail(err)
				return n, ev, e
			}
			p.stage = stagePayload
			if p.remaining == 0 {
				if ev, err := p.finishFrame(nil); err != nil || ev.kind != evNone {
					if err != nil {
						_, ev, e := p.fail(err)
						return n, ev, e
					}
					return n, ev, nil
				}
			}
		case stagePayload:
			avail := in[n:]
			if len(avail) == 0 {
				return n, frameEvent{}, nil
			}
			if int64(len(avail)) > p.remaining {
				avail = avail[:p.remaining]
			}
			if p.masked {
				p.maskPos = uint8(maskBytes(p.key, int(p.maskPos), avail))
			}
			n += len(avail)
			p.remaining -= int64(len(avail))
			if p.op.isControl() {
				if p.remaining == 0 && p.ctrlLen == 0 {
					ev, err := p.finishFrame(avail)
					if err != nil {
						_, ev, e := p.fail(err)
						return n, ev, e
					}
					return n, ev, nil
				}
				if p.ctrl == nil {
					p.ctrl = ctrlBufPool.Get().(*[maxControlPayload]byte)
				}
				p.ctrlLen += uint8(copy(p.ctrl[p.ctrlLen:], avail))
				if p.remaining > 0 {
					return n, frameEvent{}, nil
				}
				p.ctrlOut = true
				ev, err := p.finishFrame(p.ctrl[:p.ctrlLen])
				if err != nil {
					_, ev, e := p.fail(err)
					return n, ev, e
				}
				return n, ev, nil
			}
			if p.checkUTF8 && !p.utf8.write(avail) {
				_, ev, e := p.fail(failf(StatusInvalidFramePayloadData, "text message is not valid UTF-8"))
				return n, ev, e
			}
			ev := frameEvent{kind: evData, op: p.msgOp, data: avail, first: p.msgFirst, compressed: p.compressed}
			p.msgFirst = false
			if p.remaining == 0 {
				p.stage = stageHeader
				if p.fin {
					if p.checkUTF8 && !p.utf8.complete() {
						_, ev, e := p.fail(failf(StatusInvalidFramePayloadData, "text message ends inside a UTF-8 sequence"))
						return n, ev, e
					}
					ev.fin = true
					p.msgOp = 0
				}
			}
			return n, ev, nil
		}
	}
}

// readHeader gathers header bytes; ok is true once the whole header,
// including the extended length and masking key, is known and decoded.
func (p *frameParser) readHeader(in []byte) (consumed int, ok bool) {
	var h []byte
	if p.hdrLen == 0 && len(in) >= 2 && len(in) >= headerSize(in[1]) {
		// Fast path: the whole header is in the input.
		h = in[:headerSize(in[1])]
		consumed = len(h)
	} else {
		// The header is split across inputs: gather it in the pooled
		// buffer, given back once the header is decoded.
		if p.ctrl == nil {
			p.ctrl = ctrlBufPool.Get().(*[maxControlPayload]byte)
		}
		for {
			need := 2
			if p.hdrLen >= 2 {
				need = headerSize(p.ctrl[1])
			}
			if int(p.hdrLen) == need {
				break
			}
			if consumed == len(in) {
				return consumed, false
			}
			c := copy(p.ctrl[p.hdrLen:need], in[consumed:])
			p.hdrLen += uint8(c)
			consumed += c
		}
		var whole [maxFrameHeader]byte
		h = whole[:copy(whole[:], p.ctrl[:p.hdrLen])]
		p.hdrLen = 0
		p.releaseHeaderBuf()
	}
	p.fin = h[0]&finBit != 0
	p.rsv1 = h[0]&rsv1Bit != 0
	p.op = opcode(h[0] & 0x0F)
	p.masked = h[1]&maskBit != 0
	var length uint64
	rest := h[2:]
	switch l := h[1] & 0x7F; l {
	case 126:
		length = uint64(binary.BigEndian.Uint16(rest))
		rest = rest[2:]
	case 127:
		length = binary.BigEndian.Uint64(rest)
		rest = rest[8:]
	default:
		length = uint64(l)
	}
	if p.masked {
		copy(p.key[:], rest)
	}
	p.maskPos = 0
	if h[0]&(rsv2Bit|rsv3Bit) != 0 {
		// Reported by checkHeader; mark with an impossible opcode bit.
		p.rsv1 = true
		p.op |= 0x80
	}
	if length>>63 != 0 {
		p.remaining = -1
	} else {
		p.remaining = int64(length)
	}
	return consumed, true
}

// releaseHeaderBuf gives back the buffer a split header was gathered in.
func (p *frameParser) releaseHeaderBuf() {
	ctrlBufPool.Put(p.ctrl)
	p.ctrl = nil
}

// headerSize is the header size announced by the second header byte.
func headerSize(b1 byte) int {
	n := 2
	switch b1 & 0x7F {
	case 126:
		n += 2
	case 127:
		n += 8
	}
	if b1&maskBit != 0 {
		n += 4
	}
	return n
}

// checkHeader applies RFC 6455 §5.2-5.5 and RFC 7692 §6 to a decoded
// header, before any payload is read.
func (p *frameParser) checkHeader() *ProtocolError {
	op := p.op
	if op&0x80 != 0 {
		return failf(StatusProtocolError, "reserved bits RSV2/RSV3 set")
	}
	if p.remaining < 0 {
		return failf(StatusProtocolError, "64-bit payload length with the most significant bit set")
	}
	if p.masked != p.expectMasked {
		if p.expectMasked {
			return failf(StatusProtocolError, "unmasked client frame")
		}
		return failf(StatusProtocolError, "masked server frame")
	}
	switch op {
	case opClose, opPing, opPong:
		if !p.fin {
			return failf(StatusProtocolError, "fragmented control frame")
		}
		if p.remaining > maxControlPayload {
			return failf(StatusProtocolError, "control frame payload of %d bytes", p.remaining)
		}
		if p.rsv1 {
			return failf(StatusProtocolError, "RSV1 set on a control frame")
		}
		if op == opClose && p.remaining == 1 {
			return failf(StatusProtocolError, "close frame with a 1-byte payload")
		}
		return nil
	case opText, opBinary:
		if p.msgOp != 0 {
			return failf(StatusProtocolError, "new data frame inside a fragmented message")
		}
		if p.rsv1 && !p.allowRSV1 {
			return failf(StatusProtocolError, "RSV1 set without a negotiated extension")
		}
		p.msgOp = op
		p.msgFirst = true
		p.compressed = p.rsv1
		p.checkUTF8 = op == opText && !p.rsv1
		p.msgSize = 0
		p.utf8.reset()
	case opContinuation:
		if p.msgOp == 0 {
			return failf(StatusProtocolError, "continuation frame with no message open")
		}
		if p.rsv1 {
			return failf(StatusProtocolError, "RSV1 set on a continuation frame")
		}
	default:
		return failf(StatusProtocolError, "reserved opcode %#x", byte(op))
	}
	// Checked before a single payload byte is buffered.
	if p.remaining > p.readLimit-p.msgSize {
		return failf(StatusMessageTooBig, "message exceeds the read limit of %d bytes", p.readLimit)
	}
	p.msgSize += p.remaining
	return nil
}

// finishFrame completes a frame whose whole payload is known: a control
// frame (payload given) or an empty data frame.
func (p *frameParser) finishFrame(payload []byte) (frameEvent, *ProtocolError) {
	p.stage = stageHeader
	if p.op.isControl() {
		if p.op == opClose {
			if _, perr := parseClosePayload(payload); perr != nil {
				return frameEvent{}, perr
			}
		}
		return frameEvent{kind: evControl, op: p.op, data: payload}, nil
	}
	ev := frameEvent{kind: evData, op: p.msgOp, data: payload, first: p.msgFirst, compressed: p.compressed}
	p.msgFirst = false
	if p.fin {
		if p.checkUTF8 && !p.utf8.complete() {
			return frameEvent{}, failf(StatusInvalidFramePayloadData, "text message ends inside a UTF-8 sequence")
		}
		ev.fin = true
		p.msgOp = 0
	} else if !ev.first {
		// An empty middle fragment carries nothing to report.
		return frameEvent{}, nil
	}
	return ev, nil
}

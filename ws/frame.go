package ws

import (
	"encoding/binary"
	"math/bits"
)

// opcode is a frame opcode (RFC 6455 §5.2).
type opcode byte

const (
	opContinuation opcode = 0x0
	opText         opcode = 0x1
	opBinary       opcode = 0x2
	opClose        opcode = 0x8
	opPing         opcode = 0x9
	opPong         opcode = 0xA
)

func (op opcode) isControl() bool { return op&0x8 != 0 }

const (
	finBit  = 0x80
	rsv1Bit = 0x40
	rsv2Bit = 0x20
	rsv3Bit = 0x10
	maskBit = 0x80

	// maxControlPayload is the largest control frame payload (RFC 6455 §5.5).
	maxControlPayload = 125
	// maxFrameHeader is the largest frame header: 2 + 8 (length) + 4 (mask).
	maxFrameHeader = 14
)

// appendFrameHeader appends the header of one frame to dst. The length is
// always encoded in its minimal form. When masked is true, key is written
// as the masking key; the payload must be masked by the caller.
func appendFrameHeader(dst []byte, fin, rsv1 bool, op opcode, length int, masked bool, key [4]byte) []byte {
	b0 := byte(op)
	if fin {
		b0 |= finBit
	}
	if rsv1 {
		b0 |= rsv1Bit
	}
	var b1 byte
	if masked {
		b1 = maskBit
	}
	switch {
	case length <= 125:
		dst = append(dst, b0, b1|byte(length))
	case length <= 0xFFFF:
		dst = append(dst, b0, b1|126, byte(length>>8), byte(length))
	default:
		dst = append(dst, b0, b1|127)
		dst = binary.BigEndian.AppendUint64(dst, uint64(length))
	}
	if masked {
		dst = append(dst, key[0], key[1], key[2], key[3])
	}
	return dst
}

// frameHeaderLen is the size of the header appendFrameHeader writes.
func frameHeaderLen(length int, masked bool) int {
	n := 2
	switch {
	case length <= 125:
	case length <= 0xFFFF:
		n += 2
	default:
		n += 8
	}
	if masked {
		n += 4
	}
	return n
}

// maskBytes XORs b with the masking key, starting at key offset pos
// (RFC 6455 §5.3), and returns the key offset after b. Masking and
// unmasking are the same operation.
func maskBytes(key [4]byte, pos int, b []byte) int {
	pos &= 3
	// Bring the key into phase for b[0], then work 8 bytes at a time.
	k32 := binary.LittleEndian.Uint32(key[:])
	k32 = bits.RotateLeft32(k32, -8*pos)
	if len(b) >= 16 {
		k64 := uint64(k32) | uint64(k32)<<32
		for len(b) >= 32 {
			v := binary.LittleEndian.Uint64(b) ^ k64
			binary.LittleEndian.PutUint64(b, v)
			v = binary.LittleEndian.Uint64(b[8:]) ^ k64
			binary.LittleEndian.PutUint64(b[8:], v)
			v = binary.LittleEndian.Uint64(b[16:]) ^ k64
			binary.LittleEndian.PutUint64(b[16:], v)
			v = binary.LittleEndian.Uint64(b[24:]) ^ k64
			binary.LittleEndian.PutUint64(b[24:], v)
			b = b[32:]
		}
		for len(b) >= 8 {
			v := binary.LittleEndian.Uint64(b) ^ k64
			binary.LittleEndian.PutUint64(b, v)
			b = b[8:]
		}
	}
	for i := range b {
		b[i] ^= byte(k32)
		k32 = bits.RotateLeft32(k32, -8)
		pos++
	}
	return pos & 3
}

package ws

import "encoding/binary"

// utf8Validator checks UTF-8 incrementally: a message may be fed in pieces
// split anywhere, even inside a code point, and the validator reports an
// error at the first byte that can no longer start or continue a valid
// sequence (RFC 3629 §4: no overlongs, no surrogates, nothing above
// U+10FFFF). The zero value is ready for a new message.
type utf8Validator struct {
	need uint8 // continuation bytes still expected for the current code point
	lo   uint8 // lowest allowed value of the next continuation byte
	hi   uint8 // highest allowed value of the next continuation byte
}

// write validates the next piece of the text and reports whether it is
// still a valid prefix of some UTF-8 text.
func (v *utf8Validator) write(p []byte) bool {
	need, lo, hi := v.need, v.lo, v.hi
	i := 0
	for i < len(p) {
		if need == 0 {
			// Fast path: skip ASCII eight bytes at a time.
			for i+8 <= len(p) && binary.LittleEndian.Uint64(p[i:])&0x8080808080808080 == 0 {
				i += 8
			}
			if i == len(p) {
				break
			}
			b := p[i]
			i++
			switch {
			case b < 0x80:
				continue
			case b < 0xC2: // continuation byte or overlong 2-byte lead
				return false
			case b < 0xE0:
				need, lo, hi = 1, 0x80, 0xBF
			case b == 0xE0: // exclude overlong 3-byte forms
				need, lo, hi = 2, 0xA0, 0xBF
			case b == 0xED: // exclude UTF-16 surrogates
				need, lo, hi = 2, 0x80, 0x9F
			case b < 0xF0:
				need, lo, hi = 2, 0x80, 0xBF
			case b == 0xF0: // exclude overlong 4-byte forms
				need, lo, hi = 3, 0x90, 0xBF
			case b < 0xF4:
				need, lo, hi = 3, 0x80, 0xBF
			case b == 0xF4: // nothing above U+10FFFF
				need, lo, hi = 3, 0x80, 0x8F
			default:
				return false
			}
			if i+int(need) <= len(p) {
				// The whole sequence is here: check it in one go.
				if c := p[i]; c < lo || c > hi {
					v.need = need
					return false
				}
				for _, c := range p[i+1 : i+int(need)] {
					if c&0xC0 != 0x80 {
						return false
					}
				}
				i += int(need)
				need, lo, hi = 0, 0, 0
			}
			continue
		}
		b := p[i]
		i++
		if b < lo || b > hi {
			v.need = need
			return false
		}
		need--
		lo, hi = 0x80, 0xBF
	}
	v.need, v.lo, v.hi = need, lo, hi
	return true
}

// complete reports whether the text fed so far ends on a code point
// boundary.
func (v *utf8Validator) complete() bool { return v.need == 0 }

// reset prepares the validator for a new message.
func (v *utf8Validator) reset() { *v = utf8Validator{} }

// validUTF8 reports whether p is valid UTF-8 as a whole.
func validUTF8(p []byte) bool {
	var v utf8Validator
	return v.write(p) && v.complete()
}

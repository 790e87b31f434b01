package ws

import (
	"testing"
	"unicode/utf8"
)

var utf8Samples = []string{
	"",
	"hello",
	"κόσμε",
	"\xf0\x9f\x98\x80 emoji",
	"\xef\xbf\xbd",
	"\xf4\x8f\xbf\xbf",     // U+10FFFF
	"\xf4\x90\x80\x80",     // above U+10FFFF
	"\xed\x9f\xbf",         // U+D7FF
	"\xed\xa0\x80",         // surrogate
	"\xed\xbf\xbf",         // surrogate
	"\xee\x80\x80",         // U+E000
	"\xc0\xaf",             // overlong
	"\xe0\x80\xaf",         // overlong
	"\xf0\x80\x80\xaf",     // overlong
	"\xe0\xa0\x80",         // U+0800
	"\xf0\x90\x80\x80",     // U+10000
	"\x80",                 // lone continuation
	"\xc2",                 // truncated
	"\xe2\x82",             // truncated
	"\xf0\x9f\x98",         // truncated
	"\xf8\x88\x80\x80\x80", // 5-byte form
	"\xfe\xff",
	"abcdefgh\xffabcdefgh",
	"abcdefghijklmnopqrstuvwxyz0123456789\xce\xba",
	"ab\xce\xbacdefghijklmnop\xe2\x82\xac",
}

// TestUTF8Validator checks the incremental validator against
// unicode/utf8 (RFC 3629) for every sample, fed whole and split at every
// point, and checks that an invalid prefix is reported at the first piece
// that makes it invalid (RFC 6455 §8.1 fail-fast).
func TestUTF8Validator(t *testing.T) {
	for _, s := range utf8Samples {
		b := []byte(s)
		want := utf8.Valid(b)
		if got := validUTF8(b); got != want {
			t.Errorf("validUTF8(%q) = %v, want %v", s, got, want)
		}
		for i := 0; i <= len(b); i++ {
			var v utf8Validator
			ok := v.write(b[:i]) && v.write(b[i:]) && v.complete()
			if ok != want {
				t.Errorf("split %q at %d: %v, want %v", s, i, ok, want)
			}
			// The first piece alone fails only if no continuation
			// could make it valid.
			var w utf8Validator
			prefixOK := w.write(b[:i])
			if prefixOK != validPrefix(b[:i]) {
				t.Errorf("prefix %q: %v, want %v", b[:i], prefixOK, !prefixOK)
			}
		}
		// Byte by byte.
		var v utf8Validator
		ok := true
		for i := range b {
			if !v.write(b[i : i+1]) {
				ok = false
				break
			}
		}
		if (ok && v.complete()) != want {
			t.Errorf("byte-wise %q: %v, want %v", s, ok && v.complete(), want)
		}
	}
}

// validPrefix reports whether p can be extended into valid UTF-8: it is
// valid once its trailing incomplete sequence is completed with the
// smallest allowed continuation bytes.
func validPrefix(p []byte) bool {
	for k := 0; k <= 3 && k <= len(p); k++ {
		// Try completing with k bytes of each candidate continuation.
		for _, c := range []byte{0x80, 0x90, 0xA0, 0xBF} {
			q := append([]byte(nil), p...)
			for range 3 - k + 1 {
				if utf8.Valid(q) {
					return true
				}
				q = append(q, c)
			}
			if utf8.Valid(q) {
				return true
			}
		}
	}
	return utf8.Valid(p)
}

func FuzzUTF8(f *testing.F) {
	for _, s := range utf8Samples {
		f.Add([]byte(s), uint8(0))
	}
	f.Fuzz(func(t *testing.T, b []byte, split uint8) {
		want := utf8.Valid(b)
		if got := validUTF8(b); got != want {
			t.Fatalf("validUTF8(%q) = %v, want %v", b, got, want)
		}
		i := int(split)
		if i > len(b) {
			i = len(b)
		}
		var v utf8Validator
		if got := v.write(b[:i]) && v.write(b[i:]) && v.complete(); got != want {
			t.Fatalf("split %q at %d: %v, want %v", b, i, got, want)
		}
	})
}

func BenchmarkUTF8(b *testing.B) {
	ascii := make([]byte, 4096)
	for i := range ascii {
		ascii[i] = 'a' + byte(i%26)
	}
	mixed := []byte{}
	for len(mixed) < 4096 {
		mixed = append(mixed, "héllo wörld κόσμε 😀 "...)
	}
	for _, c := range []struct {
		name string
		p    []byte
	}{{"ascii", ascii}, {"mixed", mixed}} {
		b.Run(c.name, func(b *testing.B) {
			b.SetBytes(int64(len(c.p)))
			b.ReportAllocs()
			for b.Loop() {
				var v utf8Validator
				if !v.write(c.p) {
					b.Fatal("invalid")
				}
			}
		})
	}
}

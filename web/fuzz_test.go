package web

import (
	"strings"
	"testing"
)

// FuzzHeaderLists feeds arbitrary Accept-Encoding and If-None-Match values
// to the header parsers: they must not panic, must only pick encodings that
// exist, and must agree with simple cases.
func FuzzHeaderLists(f *testing.F) {
	for _, s := range []string{
		"", "gzip", "br;q=0.5, gzip", "*;q=0", `"abc", W/"def"`, "*", "x-gzip;q=1.0;foo=bar",
		"br;q=1e400", ",,,", "gzip;q=", `W/"`, strings.Repeat("br,", 100),
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, h string) {
		for _, have := range [][2]bool{{false, false}, {true, false}, {false, true}, {true, true}} {
			got := negotiate([]string{h}, have[0], have[1])
			switch got {
			case "":
			case "br":
				if !have[0] {
					t.Fatalf("negotiate(%q) chose br without a br representation", h)
				}
			case "gzip":
				if !have[1] {
					t.Fatalf("negotiate(%q) chose gzip without a gzip representation", h)
				}
			default:
				t.Fatalf("negotiate(%q) = %q", h, got)
			}
		}
		tag := `"` + strings.TrimSpace(h) + `"`
		if !strings.ContainsAny(h, ",\"") && !etagMatches([]string{tag}, tag) {
			t.Fatalf("etagMatches(%q, itself) = false", tag)
		}
		_ = etagMatches([]string{h}, `"x"`)
	})
}

func TestHeaderParsersDoNotAllocate(t *testing.T) {
	headers := []string{"gzip, deflate, br;q=0.9, zstd", `W/"x", "y"`}
	allocs := testing.AllocsPerRun(100, func() {
		_ = negotiate(headers[:1], true, true)
		_ = etagMatches(headers[1:], `"y"`)
	})
	if allocs != 0 {
		t.Errorf("%v allocations per call, want 0", allocs)
	}
}

//go:build !race

package wire

import "testing"

// TestAppendPushDoesNotAllocate pins the property the per-publication hot
// path relies on: encoding a push into a buffer with room allocates
// nothing. (The race detector instruments allocations, hence the build
// tag.)
func TestAppendPushDoesNotAllocate(t *testing.T) {
	for _, c := range codecs {
		for _, s := range samplePushes() {
			buf := make([]byte, 0, 1024)
			if n := testing.AllocsPerRun(100, func() { buf = c.AppendPush(buf[:0], s.push) }); n != 0 {
				t.Errorf("%s %s: %v allocations", c.Name(), s.name, n)
			}
		}
	}
	var d FrameDecoder
	frame := AppendFrame(nil, []byte("payload"))
	if n := testing.AllocsPerRun(100, func() {
		d.Next(frame[:3])
		d.Next(frame[3:])
		d.Release()
	}); n != 0 {
		t.Errorf("FrameDecoder split frame: %v allocations", n)
	}
}

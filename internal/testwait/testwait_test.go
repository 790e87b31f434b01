package testwait

import (
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"
)

func TestUntilReturnsOnceTrue(t *testing.T) {
	var n atomic.Int32
	timer := time.AfterFunc(20*time.Millisecond, func() { n.Store(1) })
	defer timer.Stop()
	calls := 0
	Until(t, "flag", func() bool { calls++; return n.Load() == 1 })
	if calls < 2 {
		t.Fatalf("cond evaluated %d times; it was false at first", calls)
	}
}

// failRecorder captures a Fatalf instead of ending the test.
type failRecorder struct {
	testing.TB
	msg string
}

func (f *failRecorder) Helper() {}
func (f *failRecorder) Fatalf(format string, args ...any) {
	f.msg = fmt.Sprintf(format, args...)
	panic(f)
}

// The timeout tests run in a synctest bubble: its fake clock lets the full
// Timeout pass without the test waiting for it.

func TestUntilFailsAfterTimeout(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := &failRecorder{TB: t}
		start := time.Now()
		func() {
			defer func() {
				if r := recover(); r != f {
					t.Fatalf("recovered %v, want the recorded failure", r)
				}
			}()
			Until(f, "never", func() bool { return false })
		}()
		if f.msg != "timed out waiting for never" || time.Since(start) < Timeout {
			t.Fatalf("failure %q after %v", f.msg, time.Since(start))
		}
	})
}

func TestUntilNilReturnsOnceNil(t *testing.T) {
	var n atomic.Int32
	timer := time.AfterFunc(20*time.Millisecond, func() { n.Store(1) })
	defer timer.Stop()
	calls := 0
	UntilNil(t, "flag", func() error {
		calls++
		if n.Load() != 1 {
			return errors.New("flag unset")
		}
		return nil
	})
	if calls < 2 {
		t.Fatalf("check evaluated %d times; it failed at first", calls)
	}
}

func TestUntilNilReportsLastError(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := &failRecorder{TB: t}
		calls := 0
		func() {
			defer func() {
				if r := recover(); r != f {
					t.Fatalf("recovered %v, want the recorded failure", r)
				}
			}()
			UntilNil(f, "never", func() error { calls++; return fmt.Errorf("attempt %d", calls) })
		}()
		if want := fmt.Sprintf("timed out waiting for never: attempt %d", calls); f.msg != want {
			t.Fatalf("failure %q, want %q", f.msg, want)
		}
	})
}

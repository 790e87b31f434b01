// Package testwait waits in tests for a condition that becomes true
// asynchronously, by polling it with a deadline instead of sleeping for a
// guessed time.
//
// Prefer a channel or a notification when the code under test offers one;
// Until is for state only observable by asking (counters, registries,
// socket states).
package testwait

import (
	"testing"
	"time"
)

// Timeout bounds every wait: generous, because tests run with the race
// detector on loaded two-core machines, and a passing test never waits
// for it.
const Timeout = 10 * time.Second

// interval is the pause between two evaluations of a condition.
const interval = 2 * time.Millisecond

// Until evaluates cond until it returns true and fails the test with
// "timed out waiting for <what>" when Timeout passes first. cond runs on
// the caller's goroutine.
func Until(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(Timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(interval) // polling interval, not a wait for an event
	}
}

// Package testwait waits in tests for a condition that becomes true
// asynchronously, by polling it with a deadline instead of sleeping for a
// guessed time.
//
// Prefer a channel or a notification when the code under test offers one;
// Until is for state only observable by asking (counters, registries,
// socket states).
package testwait

import (
	"errors"
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
	if err := poll(func() error {
		if cond() {
			return nil
		}
		return errNotYet
	}); err != nil {
		t.Fatalf("timed out waiting for %s", what)
	}
}

// UntilNil evaluates check until it returns nil and fails the test with
// "timed out waiting for <what>: <last error>" when Timeout passes first,
// so that the failure says what was still missing. check runs on the
// caller's goroutine; it may itself fail the test for errors that waiting
// cannot cure.
func UntilNil(t testing.TB, what string, check func() error) {
	t.Helper()
	if err := poll(check); err != nil {
		t.Fatalf("timed out waiting for %s: %v", what, err)
	}
}

var errNotYet = errors.New("condition not met")

// poll evaluates check until it returns nil, or returns its last error
// once Timeout has passed.
func poll(check func() error) error {
	deadline := time.Now().Add(Timeout)
	for {
		err := check()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return err
		}
		time.Sleep(interval) // polling interval, not a wait for an event
	}
}

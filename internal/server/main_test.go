package server

import (
	"fmt"
	"net/http"
	"os"
	"testing"

	"go.uber.org/goleak"
)

// TestMain checks for leaked goroutines after the tests. The process-wide
// netpoll poller (netpoll.Default) lives as long as the process by design;
// idle keep-alive connections of the default HTTP client are closed first.
func TestMain(m *testing.M) {
	code := m.Run()
	http.DefaultClient.CloseIdleConnections()
	if code == 0 {
		if err := goleak.Find(
			goleak.IgnoreAnyFunction("github.com/heraldhq/herald/internal/netpoll.(*epollPoller).loop"),
			goleak.IgnoreAnyFunction("github.com/heraldhq/herald/internal/netpoll.(*epollPoller).worker"),
			goleak.IgnoreAnyFunction("github.com/heraldhq/herald/internal/netpoll.(*worker).run"),
			goleak.IgnoreAnyFunction("github.com/heraldhq/herald/internal/netpoll.(*loop).run"),
		); err != nil {
			fmt.Fprintf(os.Stderr, "goleak: %v\n", err)
			code = 1
		}
	}
	os.Exit(code)
}

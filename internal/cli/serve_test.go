package cli

import (
	"context"
	"fmt"
	"os"
	"strings"
	"syscall"
	"testing"

	"github.com/heraldhq/herald/internal/server"
	"github.com/heraldhq/herald/internal/testcert"
	"github.com/heraldhq/herald/internal/testwait"
)

// TestServeSIGHUPReloadsTLS: herald serve with tls.cert_file and
// tls.key_file serves HTTPS, prints https/wss URLs, and on SIGHUP loads
// the rewritten files: new handshakes get the new certificate.
func TestServeSIGHUPReloadsTLS(t *testing.T) {
	first := testcert.New(t, "127.0.0.1")
	certFile, keyFile := first.Files(t)
	environ := []string{
		"HERALD_TLS_CERT_FILE=" + certFile,
		"HERALD_TLS_KEY_FILE=" + keyFile,
		"HERALD_DRAIN_TIMEOUT=10ms",
		"HERALD_DEMO_ENABLED=false",
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out, errb lockedBuffer
	started := make(chan *server.Server, 1)
	done := make(chan error, 1)
	go func() {
		done <- serve(ctx, nil, Env{Environ: environ, Stdout: &out, Stderr: &errb},
			[]string{"--listen", "127.0.0.1:0"}, func(s *server.Server) { started <- s })
	}()
	var s *server.Server
	select {
	case s = <-started:
	case err := <-done:
		t.Fatalf("serve: %v\n%s", err, errb.String())
	}
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	}()
	if !strings.Contains(out.String(), "https://"+s.Addr()) || !strings.Contains(out.String(), "wss://"+s.Addr()+"/ws") {
		t.Errorf("start-up output lacks the https and wss URLs:\n%s", out.String())
	}
	if got := testcert.Presented(t, s.Addr()); !got.Equal(first.TLS.Leaf) {
		t.Fatalf("serves serial %v, want %v", got.SerialNumber, first.TLS.Leaf.SerialNumber)
	}

	second := testcert.New(t, "127.0.0.1")
	second.WriteFiles(t, certFile, keyFile)
	if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	testwait.UntilNil(t, "the reload log line", func() error {
		if !strings.Contains(errb.String(), "SIGHUP: TLS certificate reloaded") {
			return fmt.Errorf("not logged after SIGHUP:\n%s", errb.String())
		}
		return nil
	})
	if got := testcert.Presented(t, s.Addr()); !got.Equal(second.TLS.Leaf) {
		t.Fatalf("serves serial %v after SIGHUP, want %v", got.SerialNumber, second.TLS.Leaf.SerialNumber)
	}
}

package tcptransport

import (
	"bufio"
	"bytes"
	"context"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/heraldhq/herald/internal/wire"
)

// TestPythonClient runs testdata/pyclient.py, a client written from
// docs/protocol.md alone with Python's standard library, against the
// server: hello, connect, subscribe, a publication from the hub, and a
// publish that a Go client receives.
func TestPythonClient(t *testing.T) {
	py, err := exec.LookPath("python3")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("python3 is required in CI")
		}
		t.Skip("python3 not installed")
	}
	s := newServer(t, nil, nil)
	watcher := s.connect(wire.EncodingJSON)
	watcher.subscribe("chat:py")

	host, port, _ := net.SplitHostPort(s.addr)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, py, "testdata/pyclient.py", host, port, "chat:py")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := bufio.NewScanner(out)
	next := func(prefix string) string {
		t.Helper()
		if !lines.Scan() {
			_ = cmd.Wait()
			t.Fatalf("python client ended before %q: %s", prefix, stderr.String())
		}
		l := lines.Text()
		if !strings.HasPrefix(l, prefix) {
			t.Fatalf("python client said %q, want %q...", l, prefix)
		}
		return l
	}
	next("connected ")
	next("subscribed")
	if _, err := s.hub.Publish(context.Background(), "chat:py", []byte(`{"to":"python"}`), nil); err != nil {
		t.Fatal(err)
	}
	if l := next("publication "); l != `publication 1 {"to":"python"}` {
		t.Fatalf("python client got %q", l)
	}
	if l := next("published "); l != "published 2" {
		t.Fatalf("python client: %q", l)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("python client: %v: %s", err, stderr.String())
	}
	if p := watcher.nextPush(); dataOf(p) != `{"to":"python"}` {
		t.Fatalf("watcher got %+v", p)
	}
	if p := watcher.nextPush(); dataOf(p) != `{"from":"python"}` || p.Publication.Offset != 2 {
		t.Fatalf("watcher got %+v", p)
	}
}

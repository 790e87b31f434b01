package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/heraldhq/herald/internal/auth"
	"github.com/heraldhq/herald/internal/config"
	"github.com/heraldhq/herald/internal/server"
	"github.com/heraldhq/herald/internal/testwait"
)

const testAPIKey = "cli-test-api-key-0123456789"

// lockedBuffer is a bytes.Buffer safe for a writer and a polling reader.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func runIn(t *testing.T, environ []string, stdin string, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := Run(context.Background(), nil, Env{Args: args, Environ: environ, Stdout: &out, Stderr: &errb, Stdin: strings.NewReader(stdin)})
	return code, out.String(), errb.String()
}

// subscribers returns the number of clients in channel's presence.
func subscribers(t *testing.T, s *server.Server, channel string) int {
	req, _ := http.NewRequest(http.MethodPost, "http://"+s.Addr()+"/api/presence_stats", strings.NewReader(`{"channel":"`+channel+`"}`))
	req.Header.Set("X-API-Key", testAPIKey)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var st struct {
		NumClients int `json:"num_clients"`
	}
	_ = json.NewDecoder(resp.Body).Decode(&st)
	return st.NumClients
}

func TestSubReceivesPub(t *testing.T) {
	s := startNode(t)
	base := "http://" + s.Addr()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out, errb lockedBuffer
	done := make(chan int, 1)
	go func() {
		done <- Run(ctx, nil, Env{Args: []string{"sub", "--url", "ws://" + s.Addr() + "/ws", "chat:cli", "chat:other"},
			Stdout: &out, Stderr: &errb})
	}()
	testwait.Until(t, "the subscriber", func() bool { return subscribers(t, s, "chat:cli") == 1 })

	code, stdout, stderr := runIn(t, nil, "", "pub", "--url", base, "--api-key", testAPIKey, "chat:cli", `{"n":1}`)
	if code != 0 || stdout != "1\n" {
		t.Fatalf("pub: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
	// From stdin, one message per line; the environment supplies URL and key.
	env := []string{"HERALD_URL=" + base, "HERALD_API_KEY=" + testAPIKey}
	code, stdout, stderr = runIn(t, env, "2\n\n  \"three\"  \n{\"n\":4}\n", "pub", "chat:cli", "-")
	if code != 0 || stdout != "2\n3\n4\n" {
		t.Fatalf("pub -: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
	if code, stdout, _ = runIn(t, env, "", "pub", "--quiet", "chat:cli", "5"); code != 0 || stdout != "" {
		t.Fatalf("pub --quiet: exit %d, stdout %q", code, stdout)
	}

	testwait.Until(t, "5 lines from sub", func() bool { return strings.Count(out.String(), "\n") == 5 })
	want := []string{`{"n":1}`, `2`, `"three"`, `{"n":4}`, `5`}
	for i, line := range strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n") {
		var got struct {
			Channel string          `json:"channel"`
			Offset  uint64          `json:"offset"`
			Data    json.RawMessage `json:"data"`
		}
		if err := json.Unmarshal([]byte(line), &got); err != nil {
			t.Fatalf("line %q: %v", line, err)
		}
		if got.Channel != "chat:cli" || got.Offset != uint64(i+1) || string(got.Data) != want[i] {
			t.Errorf("line %d: %s", i, line)
		}
	}
	cancel()
	if code := <-done; code != 0 {
		t.Errorf("sub exit %d after the signal, stderr %q", code, errb.String())
	}
}

func TestSubFailures(t *testing.T) {
	s := startNode(t)
	wsURL := "ws://" + s.Addr() + "/ws"
	cases := []struct {
		name string
		args []string
		code int
		msg  string
	}{
		{"no channel", []string{"sub", "--url", wsURL}, 2, "CHANNEL is required"},
		{"bad url", []string{"sub", "--url", "http//x", "chat:x"}, 2, "scheme"},
		{"unreachable", []string{"sub", "--url", "ws://127.0.0.1:1/ws", "chat:x"}, 1, "cannot connect to ws://127.0.0.1:1/ws"},
		{"unknown namespace", []string{"sub", "--url", wsURL, "chat:x", "nope:x"}, 1, "nope:x: refused"},
		{"bad token", []string{"sub", "--url", wsURL, "--token", "junk", "chat:x"}, 1, "cannot connect"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			code, _, stderr := runIn(t, nil, "", tc.args...)
			if code != tc.code || !strings.Contains(stderr, tc.msg) {
				t.Errorf("exit %d, stderr %q; want %d and %q", code, stderr, tc.code, tc.msg)
			}
		})
	}
}

func TestPubFailures(t *testing.T) {
	s := startNode(t)
	base := "http://" + s.Addr()
	cases := []struct {
		name  string
		stdin string
		args  []string
		code  int
		msg   string
	}{
		{"missing data", "", []string{"pub", "chat:x"}, 2, "want CHANNEL and DATA"},
		{"bad url", "", []string{"pub", "--url", "ftp://x", "chat:x", "1"}, 2, "want http://"},
		{"not json", "", []string{"pub", "--url", base, "--api-key", testAPIKey, "chat:x", "{nope"}, 1, "not valid JSON"},
		{"bad stdin line", "1\n{nope\n", []string{"pub", "--url", base, "--api-key", testAPIKey, "chat:x", "-"}, 1, "stdin line 2"},
		{"wrong key", "", []string{"pub", "--url", base, "--api-key", "wrong-key-0123456789", "chat:x", "1"}, 1, "401"},
		{"no key", "", []string{"pub", "--url", base, "chat:x", "1"}, 1, "--api-key"},
		{"unknown namespace", "", []string{"pub", "--url", base, "--api-key", testAPIKey, "nope:x", "1"}, 1, "400 Bad Request"},
		{"unreachable", "", []string{"pub", "--url", "http://127.0.0.1:1", "chat:x", "1"}, 1, "cannot reach"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			code, _, stderr := runIn(t, nil, tc.stdin, tc.args...)
			if code != tc.code || !strings.Contains(stderr, tc.msg) {
				t.Errorf("exit %d, stderr %q; want %d and %q", code, stderr, tc.code, tc.msg)
			}
		})
	}
}

// TestSubReconnects: sub over TCP, disconnected by the server API, comes
// back, recovers what was published meanwhile and prints every
// publication once, in order.
func TestSubReconnects(t *testing.T) {
	s := startNode(t)
	tok, err := auth.Sign(auth.Claims{Subject: "cli-user"}, auth.HS256, []byte(secret))
	if err != nil {
		t.Fatal(err)
	}
	env := []string{"HERALD_URL=http://" + s.Addr(), "HERALD_API_KEY=" + testAPIKey, "HERALD_CLIENT_TOKEN=" + tok}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out, errb lockedBuffer
	done := make(chan int, 1)
	go func() {
		done <- Run(ctx, nil, Env{Args: []string{"sub", "--url", "tcp://" + s.TCPAddr(), "chat:again"}, Environ: env,
			Stdout: &out, Stderr: &errb})
	}()
	testwait.Until(t, "the subscriber", func() bool { return subscribers(t, s, "chat:again") == 1 })
	if code, _, stderr := runIn(t, env, "", "pub", "chat:again", "1"); code != 0 {
		t.Fatalf("pub: %d %s", code, stderr)
	}
	testwait.Until(t, "the first line", func() bool { return strings.Count(out.String(), "\n") == 1 })
	req, _ := http.NewRequest(http.MethodPost, "http://"+s.Addr()+"/api/disconnect", strings.NewReader(`{"user":"cli-user"}`))
	req.Header.Set("X-API-Key", testAPIKey)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if code, _, stderr := runIn(t, env, "2\n3\n", "pub", "chat:again", "-"); code != 0 {
		t.Fatalf("pub: %d %s", code, stderr)
	}
	testwait.Until(t, "three lines", func() bool { return strings.Count(out.String(), "\n") == 3 })
	for i, line := range strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n") {
		if want := `"offset":` + string(rune('1'+i)) + `,"data":` + string(rune('1'+i)); !strings.Contains(line, want) {
			t.Errorf("line %d %s, want %s", i, line, want)
		}
	}
	testwait.Until(t, "the reconnect notice", func() bool { return strings.Contains(errb.String(), "connection lost (3003") })
	cancel()
	if code := <-done; code != 0 {
		t.Errorf("sub exit %d, stderr %q", code, errb.String())
	}
}

// startNode runs an in-process node with HTTP and TCP listeners on free
// loopback ports.
func startNode(t *testing.T) *server.Server {
	t.Helper()
	c := config.Default()
	c.Listen = "127.0.0.1:0"
	c.TCPListen = "127.0.0.1:0"
	c.Demo.Enabled = false
	c.DrainTimeout = 10 * time.Millisecond
	c.APIKey = testAPIKey
	c.Token.Secret = secret
	s, err := server.New(server.Options{Config: c, Version: "test", Logger: slog.New(slog.DiscardHandler), Out: io.Discard})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := s.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
	})
	return s
}

package cli

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/heraldhq/herald/internal/auth"
	"github.com/heraldhq/herald/internal/server"
	"github.com/heraldhq/herald/internal/testnode"
	"github.com/heraldhq/herald/ws"
)

// TestMain checks for leaked goroutines other than those of the
// process-wide netpoll poller, which lives as long as the process.
func TestMain(m *testing.M) { testnode.VerifyTestMain(m) }

const secret = "0123456789abcdef0123456789abcdef-secret"

func run(t *testing.T, environ []string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = Run(context.Background(), nil, Env{Args: args, Environ: environ, Stdout: &out, Stderr: &errb})
	return code, out.String(), errb.String()
}

func TestUsageAndVersion(t *testing.T) {
	if code, _, errOut := run(t, nil); code != 2 || !strings.Contains(errOut, "Usage") {
		t.Errorf("no args: %d %q", code, errOut)
	}
	if code, _, errOut := run(t, nil, "frobnicate"); code != 2 || !strings.Contains(errOut, "unknown command") {
		t.Errorf("unknown command: %d %q", code, errOut)
	}
	if code, out, _ := run(t, nil, "version"); code != 0 || !strings.HasPrefix(out, "herald ") {
		t.Errorf("version: %d %q", code, out)
	}
	if code, _, _ := run(t, nil, "serve", "--no-such-flag"); code != 2 {
		t.Errorf("bad serve flag: %d", code)
	}
	if code, _, _ := run(t, nil, "serve", "-h"); code != 0 {
		t.Errorf("serve -h: %d", code)
	}
}

func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestConfigCheck(t *testing.T) {
	good := writeFile(t, "good.yaml", "listen: 127.0.0.1:9999\napi_key: abcdefghijklmnopqrstuvwxyz\ntoken:\n  secret: "+secret+"\n")
	code, out, errOut := run(t, []string{"HERALD_LOG_LEVEL=debug"}, "config", "check", good)
	if code != 0 {
		t.Fatalf("valid config: %d %s", code, errOut)
	}
	for _, want := range []string{"listen: 127.0.0.1:9999", "level: debug", "<redacted>"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, secret) || strings.Contains(out, "abcdefghijklmnopqrstuvwxyz") {
		t.Errorf("secrets printed:\n%s", out)
	}
	bad := writeFile(t, "bad.yaml", "listen: 127.0.0.1:9999\nnamespaces:\n  - name: x\n    presense: true\n")
	code, _, errOut = run(t, nil, "config", "check", bad)
	if code != 1 || !strings.Contains(errOut, "line 4") || !strings.Contains(errOut, "presense") {
		t.Errorf("unknown key: %d %q", code, errOut)
	}
	invalid := writeFile(t, "invalid.yaml", "log:\n  level: loud\n")
	if code, _, errOut := run(t, nil, "config", "check", invalid); code != 1 || !strings.Contains(errOut, "log.level") {
		t.Errorf("invalid value: %d %q", code, errOut)
	}
	exposed := writeFile(t, "exposed.yaml", "listen: 0.0.0.0:8080\n")
	if code, _, errOut := run(t, nil, "config", "check", exposed); code != 1 || !strings.Contains(errOut, "api_key") {
		t.Errorf("exposed without keys: %d %q", code, errOut)
	}
	if code, _, errOut := run(t, []string{"HERALD_INSECURE=true"}, "config", "check", exposed); code != 0 {
		t.Errorf("exposed with insecure: %d %q", code, errOut)
	}
	if code, _, _ := run(t, nil, "config", "check"); code != 2 {
		t.Errorf("missing file argument: %d", code)
	}
	if code, _, _ := run(t, nil, "config", "check", filepath.Join(t.TempDir(), "missing.yaml")); code != 1 {
		t.Errorf("missing file: %d", code)
	}
}

func TestToken(t *testing.T) {
	v, err := auth.NewVerifier(auth.Config{HMACSecret: []byte(secret)})
	if err != nil {
		t.Fatal(err)
	}
	code, out, errOut := run(t, nil, "token", "--user", "42", "--ttl", "2h", "--channels", "a:1, b:2", "--info", `{"name":"ann"}`, "--token-secret", secret)
	if code != 0 {
		t.Fatalf("token: %d %s", code, errOut)
	}
	claims, err := v.Verify(strings.TrimSpace(out))
	if err != nil {
		t.Fatal(err)
	}
	if claims.Subject != "42" || len(claims.Channels) != 2 || claims.Channels[1] != "b:2" || string(claims.Info) != `{"name":"ann"}` {
		t.Errorf("claims %+v", claims)
	}
	if d := time.Until(claims.ExpiresAt); d < time.Hour || d > 2*time.Hour {
		t.Errorf("expiry in %v, want about 2h", d)
	}

	// The secret from the environment and from a config file.
	code, out, _ = run(t, []string{"HERALD_TOKEN_SECRET=" + secret}, "token", "--user", "7", "--ttl", "0")
	if code != 0 {
		t.Fatalf("env secret: %d", code)
	}
	if c, err := v.Verify(strings.TrimSpace(out)); err != nil || !c.ExpiresAt.IsZero() {
		t.Errorf("env secret token: %+v %v", c, err)
	}
	file := writeFile(t, "h.yaml", "token:\n  secret: "+secret+"\n")
	if code, out, _ := run(t, nil, "token", "--user", "8", "--config", file); code != 0 {
		t.Errorf("config secret: %d", code)
	} else if _, err := v.Verify(strings.TrimSpace(out)); err != nil {
		t.Error(err)
	}

	// ES256 with a private key file.
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, _ := x509.MarshalECPrivateKey(k)
	keyFile := writeFile(t, "k.pem", string(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der})))
	pub, _ := x509.MarshalPKIXPublicKey(&k.PublicKey)
	ev, err := auth.NewVerifier(auth.Config{ECDSAPublicKeyPEM: pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pub})})
	if err != nil {
		t.Fatal(err)
	}
	code, out, errOut = run(t, nil, "token", "--user", "9", "--key", keyFile)
	if code != 0 {
		t.Fatalf("--key: %d %s", code, errOut)
	}
	if _, err := ev.Verify(strings.TrimSpace(out)); err != nil {
		t.Errorf("ES256 token: %v", err)
	}

	for _, args := range [][]string{
		{"token", "--token-secret", secret},                                   // no user
		{"token", "--user", "1", "--info", "{nope", "--token-secret", secret}, // bad info
		{"token", "--user", "1", "--ttl", "-1h", "--token-secret", secret},    // negative ttl
	} {
		if code, _, _ := run(t, nil, args...); code != 2 {
			t.Errorf("%v: exit %d, want 2", args, code)
		}
	}
	if code, _, errOut := run(t, nil, "token", "--user", "1"); code != 1 || !strings.Contains(errOut, "no token secret") {
		t.Errorf("no secret: %d %q", code, errOut)
	}
}

// TestServe runs `herald serve` in-process: flags override the
// environment, which overrides the file; the node answers on the flag's
// address and stops when the context ends.
func TestServe(t *testing.T) {
	file := writeFile(t, "h.yaml", "node: from-file\ndemo:\n  enabled: false\nlisten: 127.0.0.1:1\n")
	environ := []string{
		"HERALD_CONFIG=" + file,
		"HERALD_NODE=from-env",
		"HERALD_LISTEN=127.0.0.1:2",
		"HERALD_API_KEY=env-api-key-0123456789",
		"HERALD_DRAIN_TIMEOUT=10ms",
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out, errb bytes.Buffer
	started := make(chan *server.Server, 1)
	done := make(chan error, 1)
	go func() {
		done <- serve(ctx, nil, Env{Environ: environ, Stdout: &out, Stderr: &errb},
			[]string{"--listen", "127.0.0.1:0", "--log-level", "warn"}, func(s *server.Server) { started <- s })
	}()
	var s *server.Server
	select {
	case s = <-started:
	case err := <-done:
		t.Fatalf("serve: %v\n%s", err, errb.String())
	}
	if s.APIKey() != "env-api-key-0123456789" {
		t.Errorf("api key %q: env not applied", s.APIKey())
	}
	req, _ := http.NewRequest(http.MethodPost, "http://"+s.Addr()+"/api/info", strings.NewReader(`{}`))
	req.Header.Set("X-API-Key", s.APIKey())
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	var info struct{ Nodes []struct{ Name string } }
	if err := json.Unmarshal(body, &info); err != nil || len(info.Nodes) != 1 || info.Nodes[0].Name != "from-env" {
		t.Errorf("info %s: %v (env must override the file's node)", body, err)
	}
	// A WebSocket client subscribed to a channel receives what a backend
	// publishes over HTTP.
	wctx, wcancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer wcancel()
	conn, _, err := ws.Dial(wctx, "ws://"+s.Addr()+"/ws", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.CloseNow()
	for _, cmd := range []string{
		`{"id":1,"method":"connect","params":{}}`,
		`{"id":2,"method":"subscribe","params":{"channel":"chat:cli"}}`,
	} {
		if err := conn.Write(wctx, ws.MessageText, []byte(cmd)); err != nil {
			t.Fatal(err)
		}
		if _, reply, err := conn.Read(wctx); err != nil || !strings.Contains(string(reply), `"result"`) {
			t.Fatalf("%s: %s %v", cmd, reply, err)
		}
	}
	req, _ = http.NewRequest(http.MethodPost, "http://"+s.Addr()+"/api/publish", strings.NewReader(`{"channel":"chat:cli","data":{"n":1}}`))
	req.Header.Set("X-API-Key", s.APIKey())
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	for {
		_, msg, err := conn.Read(wctx)
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(string(msg), `"publication"`) {
			if !strings.Contains(string(msg), `"data":{"n":1}`) {
				t.Fatalf("publication %s", msg)
			}
			break
		}
	}
	if !strings.Contains(out.String(), "token.secret") || strings.Contains(out.String(), "api_key:") {
		t.Errorf("stdout must print only the generated token secret: %q", out.String())
	}
	closed := make(chan error, 1)
	go func() {
		for {
			if _, _, err := conn.Read(wctx); err != nil {
				closed <- err
				return
			}
		}
	}()
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("serve after cancel: %v", err)
	}
	if err := <-closed; ws.CloseStatus(err) != 1001 {
		t.Fatalf("client after shutdown: %v, want close 1001", err)
	}
}

func TestServeRefusesExposedWithoutKeys(t *testing.T) {
	code, _, errOut := run(t, nil, "serve", "--listen", "0.0.0.0:0")
	if code != 1 || !strings.Contains(errOut, "refusing") {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	code, _, errOut = run(t, []string{"HERALD_LISTEN=0.0.0.0:0"}, "serve")
	if code != 1 || !strings.Contains(errOut, "refusing") {
		t.Fatalf("env listen: exit %d: %s", code, errOut)
	}
}

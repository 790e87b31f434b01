package clustertest

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// buildDir holds the herald binary, built once for the whole run.
var (
	buildDir  string
	buildOnce sync.Once
	buildErr  error
	heraldBin string
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, goleak.Cleanup(func(code int) {
		if buildDir != "" {
			_ = os.RemoveAll(buildDir)
		}
		os.Exit(code)
	}))
}

// binary builds cmd/herald (without -race: the nodes are the system under
// test, not this process) once per run and returns its path.
func binary(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		goTool, err := exec.LookPath("go")
		if err != nil {
			buildErr = fmt.Errorf("go tool not found: %w", err)
			return
		}
		buildDir, err = os.MkdirTemp("", "herald-clustertest-")
		if err != nil {
			buildErr = err
			return
		}
		heraldBin = filepath.Join(buildDir, "herald")
		cmd := exec.Command(goTool, "build", "-o", heraldBin, "github.com/heraldhq/herald/cmd/herald")
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Run(); err != nil {
			buildErr = fmt.Errorf("go build: %w\n%s", err, out.String())
		}
	})
	if buildErr != nil {
		t.Fatalf("building herald: %v", buildErr)
	}
	return heraldBin
}

// randomID returns n random bytes in hex, for unique names per test.
func randomID(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// clusterSpec is what every node of a test cluster shares.
type clusterSpec struct {
	APIKey      string
	TokenSecret string
	// Broker is the YAML body of the broker section, indented by two
	// spaces (type and its options).
	Broker string
	// BrokerVariants, when set, replaces Broker for the nodes of a
	// cluster in turn (node i uses BrokerVariants[i%len]).
	BrokerVariants []string
}

func newSpec(broker string) clusterSpec {
	return clusterSpec{APIKey: "key-" + randomID(8), TokenSecret: "secret-" + randomID(16), Broker: broker}
}

// redisBroker and natsBroker render the broker section.
func redisBroker(prefix string, addrs ...string) string {
	return fmt.Sprintf("  type: redis\n  redis:\n    addrs: [%s]\n    prefix: %s\n", strings.Join(addrs, ", "), prefix)
}

func natsBroker(url string) string {
	return fmt.Sprintf("  type: nats\n  nats:\n    url: %s\n", url)
}

func (s clusterSpec) yaml(name string) string {
	return fmt.Sprintf(`listen: 127.0.0.1:0
node: %s
api_key: %s
token:
  secret: %s
allow_anonymous: false
log:
  level: info
  format: json
drain_timeout: 50ms
shutdown_timeout: 5s
demo:
  enabled: false
namespaces:
  - name: chat
    history_size: 1000
    history_ttl: 10m
    presence: true
    allow_publish: true
broker:
%s`, name, s.APIKey, s.TokenSecret, s.Broker)
}

// node is one herald process.
type node struct {
	name string
	spec clusterSpec
	addr string // host:port of the HTTP listener

	cmd    *exec.Cmd
	exited chan struct{} // closed when the process has exited and its log is drained

	mu   sync.Mutex
	tail []string // last log lines, for failure messages
}

const logTailLines = 40

// startNode starts a herald process with spec's configuration and waits
// until it reports its address. ready says whether to wait for /readyz.
func startNode(t testing.TB, spec clusterSpec, name string, ready bool) *node {
	t.Helper()
	bin := binary(t)
	cfgPath := filepath.Join(t.TempDir(), name+".yaml")
	if err := os.WriteFile(cfgPath, []byte(spec.yaml(name)), 0o600); err != nil {
		t.Fatal(err)
	}
	n := &node{name: name, spec: spec, exited: make(chan struct{})}
	n.cmd = exec.Command(bin, "serve", "--config", cfgPath)
	n.cmd.Env = cleanEnv()
	stderr, err := n.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := n.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	addrCh := make(chan string, 1)
	go n.readLog(stderr, addrCh)
	t.Cleanup(func() { n.stop(t) })

	select {
	case n.addr = <-addrCh:
	case <-n.exited:
		t.Fatalf("node %s exited during start:\n%s", name, n.logTail())
	case <-time.After(20 * time.Second):
		t.Fatalf("node %s did not report its address within 20s:\n%s", name, n.logTail())
	}
	if ready {
		n.waitReady(t, 20*time.Second)
	}
	return n
}

// cleanEnv is this process's environment without HERALD_* variables, so
// a developer's settings do not leak into the nodes.
func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "HERALD_") {
			env = append(env, kv)
		}
	}
	return env
}

// readLog keeps the last lines of the node's JSON log and reports the
// listener address from the "herald listening" line. It returns when the
// process closes stderr (it exits).
func (n *node) readLog(r io.Reader, addrCh chan<- string) {
	defer func() {
		_ = n.cmd.Wait()
		close(n.exited)
	}()
	br := bufio.NewReader(r)
	for {
		line, err := br.ReadString('\n')
		if line != "" {
			n.mu.Lock()
			n.tail = append(n.tail, strings.TrimRight(line, "\n"))
			if len(n.tail) > logTailLines {
				n.tail = n.tail[len(n.tail)-logTailLines:]
			}
			n.mu.Unlock()
			var rec struct {
				Msg  string `json:"msg"`
				HTTP string `json:"http"`
			}
			if json.Unmarshal([]byte(line), &rec) == nil && rec.Msg == "herald listening" {
				select {
				case addrCh <- strings.TrimPrefix(rec.HTTP, "http://"):
				default:
				}
			}
		}
		if err != nil {
			return
		}
	}
}

func (n *node) logTail() string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return strings.Join(n.tail, "\n")
}

// stop ends the process with SIGTERM (a graceful drain), or kills it when
// it does not exit in time. Safe to call more than once.
func (n *node) stop(t testing.TB) {
	select {
	case <-n.exited:
		return
	default:
	}
	_ = n.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-n.exited:
	case <-time.After(10 * time.Second):
		t.Errorf("node %s did not stop within 10s after SIGTERM; killing it:\n%s", n.name, n.logTail())
		_ = n.cmd.Process.Kill()
		<-n.exited
	}
}

// httpClient is shared by every API call; its idle connections are closed
// when each test ends (goleak would see their goroutines).
var httpClient = &http.Client{Timeout: 15 * time.Second}

func closeIdle(t testing.TB) { t.Cleanup(httpClient.CloseIdleConnections) }

// waitReady polls /readyz until it answers 200.
func (n *node) waitReady(t testing.TB, within time.Duration) {
	t.Helper()
	poll(t, within, fmt.Sprintf("node %s ready", n.name), func() (bool, string) {
		resp, err := httpClient.Get("http://" + n.addr + "/readyz")
		if err != nil {
			return false, err.Error()
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK, fmt.Sprintf("%d %s", resp.StatusCode, body)
	})
}

// readyStatus returns /readyz's HTTP status.
func (n *node) readyStatus(t testing.TB) int {
	t.Helper()
	resp, err := httpClient.Get("http://" + n.addr + "/readyz")
	if err != nil {
		t.Fatalf("readyz of %s: %v", n.name, err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

// apiError is the JSON error body of the server API.
type apiError struct {
	Error *struct {
		Code    uint32 `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

// api calls a server API method and returns the status and body.
func (n *node) api(t testing.TB, method string, body any) (int, []byte) {
	t.Helper()
	b, err := json.Marshal(body)
	if err != nil {
		t.Fatal(err)
	}
	req, err := http.NewRequest(http.MethodPost, "http://"+n.addr+"/api/"+method, bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("X-API-Key", n.spec.APIKey)
	req.Header.Set("Content-Type", "application/json")
	resp, err := httpClient.Do(req)
	if err != nil {
		t.Fatalf("API %s on %s: %v", method, n.name, err)
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("API %s on %s: reading body: %v", method, n.name, err)
	}
	return resp.StatusCode, out
}

// apiOK calls method, requires 200 and decodes the result into out (nil
// to ignore it).
func (n *node) apiOK(t testing.TB, method string, body, out any) {
	t.Helper()
	status, b := n.api(t, method, body)
	if status != http.StatusOK {
		t.Fatalf("API %s on %s: status %d: %s", method, n.name, status, b)
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			t.Fatalf("API %s on %s: decoding %s: %v", method, n.name, b, err)
		}
	}
}

type position struct {
	Offset uint64 `json:"offset"`
	Epoch  string `json:"epoch"`
}

// publishN publishes {"n":k} to channel through n's API and returns the
// position.
func (n *node) publishN(t testing.TB, channel string, k int) position {
	t.Helper()
	var pos position
	n.apiOK(t, "publish", map[string]any{"channel": channel, "data": map[string]int{"n": k}}, &pos)
	return pos
}

func (n *node) infoNames(t testing.TB) []string {
	t.Helper()
	var res struct {
		Nodes []struct {
			Name string `json:"name"`
		} `json:"nodes"`
	}
	n.apiOK(t, "info", struct{}{}, &res)
	var names []string
	for _, x := range res.Nodes {
		names = append(names, x.Name)
	}
	return names
}

// poll calls cond until it reports true or within runs out; cond's
// second result describes the last state for the failure message.
func poll(t testing.TB, within time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(within)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		ok, state := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s; last state: %s", within, what, state)
		}
		<-tick.C
	}
}

// errClientClosed is returned by calls on a closed test client.
var errClientClosed = errors.New("client closed")

// ctxFor returns a context bounded by d and canceled when the test ends.
func ctxFor(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

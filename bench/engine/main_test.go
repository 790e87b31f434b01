package engine

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// roleEnv makes the re-executed test binary play a role instead of
// running tests: "client" (RunClient) or "idle-server:<engine>"
// (RunIdleServer).
const roleEnv = "HERALD_BENCH_ENGINE_ROLE"

func TestMain(m *testing.M) {
	if role := os.Getenv(roleEnv); role != "" {
		os.Exit(runRole(role))
	}
	code := m.Run()
	stopSharedClient()
	if code == 0 {
		// herald's process-wide poller (ws event mode) lives as long as
		// the process by design.
		err := goleak.Find(
			goleak.IgnoreAnyFunction("github.com/heraldhq/herald/internal/netpoll.(*epollPoller).worker"),
			goleak.IgnoreAnyFunction("github.com/heraldhq/herald/internal/netpoll.(*loop).run"),
		)
		if err != nil {
			fmt.Fprintf(os.Stderr, "goleak: %v\n", err)
			code = 1
		}
	}
	os.Exit(code)
}

func runRole(role string) int {
	var err error
	switch {
	case role == "client":
		err = RunClient(os.Stdin, os.Stdout)
	case strings.HasPrefix(role, "idle-server:"):
		var e Engine
		if e, err = ParseEngine(strings.TrimPrefix(role, "idle-server:")); err == nil {
			err = runIdleServer(e)
		}
	default:
		err = fmt.Errorf("unknown role %q", role)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

// idleProfileEnv names a directory where each idle-memory server process
// writes a heap profile, idle-<engine>.heap, of its loaded state.
const idleProfileEnv = "HERALD_BENCH_IDLE_HEAPPROFILE"

func runIdleServer(e Engine) error {
	dir := os.Getenv(idleProfileEnv)
	if dir == "" {
		return RunIdleServer(e, os.Stdin, os.Stdout, nil)
	}
	runtime.MemProfileRate = 1
	f, err := os.Create(filepath.Join(dir, "idle-"+string(e)+".heap"))
	if err != nil {
		return err
	}
	err = RunIdleServer(e, os.Stdin, os.Stdout, f)
	return errors.Join(err, f.Close())
}

// child is the test binary re-executed in a role, driven over its
// standard input and output, one line per command and per answer.
type child struct {
	cmd *exec.Cmd
	in  io.WriteCloser
	out *bufio.Scanner
}

func startChild(role string) (*child, error) {
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), roleEnv+"="+role)
	cmd.Stderr = os.Stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s process: %w", role, err)
	}
	sc := bufio.NewScanner(out)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	return &child{cmd: cmd, in: in, out: sc}, nil
}

// send writes one command line.
func (c *child) send(line string) error {
	if _, err := io.WriteString(c.in, line+"\n"); err != nil {
		return fmt.Errorf("sending %q: %w", line, err)
	}
	return nil
}

// readLine returns the next line from the child.
func (c *child) readLine() (string, error) {
	if !c.out.Scan() {
		if err := c.out.Err(); err != nil {
			return "", err
		}
		return "", io.ErrUnexpectedEOF
	}
	return c.out.Text(), nil
}

// do sends a command and waits for its answer, skipping "got" lines.
func (c *child) do(line string) error {
	if err := c.send(line); err != nil {
		return err
	}
	for {
		ans, err := c.readLine()
		if err != nil {
			return fmt.Errorf("%q: %w", line, err)
		}
		switch {
		case ans == "got":
		case ans == "ok":
			return nil
		default:
			return fmt.Errorf("%q: %s", line, ans)
		}
	}
}

// waitGot waits for the next "got" line.
func (c *child) waitGot() error {
	ans, err := c.readLine()
	if err != nil {
		return err
	}
	if ans != "got" {
		return fmt.Errorf("expected got, read %q", ans)
	}
	return nil
}

// stop closes the child's input and waits for it to exit.
func (c *child) stop() error {
	_ = c.in.Close()
	done := make(chan error, 1)
	go func() { done <- c.cmd.Wait() }()
	select {
	case err := <-done:
		return err
	case <-time.After(30 * time.Second):
		_ = c.cmd.Process.Kill()
		return errors.Join(errors.New("child did not exit within 30 s; killed"), <-done)
	}
}

// The client process is shared by every benchmark and test of the run.
var (
	sharedMu     sync.Mutex
	sharedClient *child
)

func getSharedClient(tb testing.TB) *child {
	sharedMu.Lock()
	defer sharedMu.Unlock()
	if sharedClient == nil {
		c, err := startChild("client")
		if err != nil {
			tb.Fatal(err)
		}
		sharedClient = c
	}
	return sharedClient
}

func stopSharedClient() {
	sharedMu.Lock()
	defer sharedMu.Unlock()
	if sharedClient != nil {
		if err := sharedClient.stop(); err != nil {
			fmt.Fprintf(os.Stderr, "client process: %v\n", err)
		}
		sharedClient = nil
	}
}

package loadgen

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"sync"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// A run over several processes (Config.Procs > 1): the first process,
// which calls Run, starts the others with Config.ChildCommand and talks to
// each over its standard input and output, one JSON object per line.
//
// The parent sends the configuration and which share of the connections
// the child holds (process k of n holds connections [k*Conns/n,
// (k+1)*Conns/n) and dials from its own slice of the loopback source
// addresses). The child connects and subscribes them, answers "ready",
// then answers each request:
//
//	{"op":"counts"}  -> {"delivered":D,"dups":U,"disconnects":X,"connected":C}
//	{"op":"second"}  -> the counts and "hist": the latencies recorded since the last "second"
//	{"op":"step"}    -> the counts and "hist": the latencies recorded since the last "step"
//
// where "hist" is an HDR histogram in its compressed binary encoding
// (base64 in JSON). Only the parent publishes; it merges the children's
// counts and histograms with its own into one result, and reads their CPU
// time from /proc for the client CPU figures.
//
// A child ends when its standard input closes (the parent ended, however
// it ended) and, on Linux, also gets SIGKILL if the parent dies first.

// childSetup is the first line the parent sends.
type childSetup struct {
	Config Config `json:"config"`
	Proc   int    `json:"proc"`
	Procs  int    `json:"procs"`
}

type childRequest struct {
	Op string `json:"op"`
}

// childReply is a child's answer: "ready" once connected, then one per
// request.
type childReply struct {
	Ready          bool    `json:"ready,omitempty"`
	Connected      int64   `json:"connected"`
	ConnectErr     int     `json:"connect_errors,omitempty"`
	FirstError     string  `json:"first_connect_error,omitempty"`
	ConnectSeconds float64 `json:"connect_seconds,omitempty"`
	Delivered      int64   `json:"delivered"`
	Dups           int64   `json:"dups"`
	Disconnects    int64   `json:"disconnects"`
	Hist           []byte  `json:"hist,omitempty"`
	Error          string  `json:"error,omitempty"`
}

// maxChildLine bounds one line a child sends (a histogram is a few KiB).
const maxChildLine = 1 << 20

// childProc is the parent's handle on one child. Requests are serialized
// by mu: one request, one reply.
type childProc struct {
	idx  int
	cmd  *exec.Cmd
	in   io.WriteCloser
	out  *bufio.Reader
	mu   sync.Mutex
	last childReply // the latest counts, kept after a failure
	err  error      // the first failure; no request is sent after it
}

// startChildren starts processes 1..n-1 and waits until each has
// connected its share. On error every child started is stopped.
func (r *run) startChildren(ctx context.Context, n int) error {
	if r.cfg.ChildCommand == nil {
		return errors.New("loadgen: several processes need Config.ChildCommand")
	}
	for k := 1; k < n; k++ {
		c, err := r.startChild(k, n)
		if err != nil {
			r.stopChildren()
			return err
		}
		r.children = append(r.children, c)
	}
	return nil
}

// kids returns the children that are ready for requests: none until
// waitReady has read every "ready" line.
func (r *run) kids() []*childProc {
	if p := r.readyKids.Load(); p != nil {
		return *p
	}
	return nil
}

func (r *run) startChild(k, n int) (*childProc, error) {
	cmd, err := r.cfg.ChildCommand()
	if err != nil {
		return nil, fmt.Errorf("loadgen: bench process %d: %w", k, err)
	}
	in, err := cmd.StdinPipe()
	if err != nil {
		return nil, fmt.Errorf("loadgen: bench process %d: %w", k, err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, fmt.Errorf("loadgen: bench process %d: %w", k, err)
	}
	if cmd.Stderr == nil {
		cmd.Stderr = os.Stderr
	}
	setParentDeathSignal(cmd)
	// The parent-death signal follows the thread that forked: keep this
	// goroutine on one thread for the fork, which then lives on in the
	// runtime's pool.
	runtime.LockOSThread()
	err = cmd.Start()
	runtime.UnlockOSThread()
	if err != nil {
		return nil, fmt.Errorf("loadgen: start bench process %d: %w", k, err)
	}
	c := &childProc{idx: k, cmd: cmd, in: in, out: bufio.NewReaderSize(out, maxChildLine)}
	cfg := r.cfg
	cfg.Procs = n
	setup, err := json.Marshal(childSetup{Config: cfg, Proc: k, Procs: n})
	if err == nil {
		_, err = c.in.Write(append(setup, '\n'))
	}
	if err != nil {
		c.stop()
		return nil, fmt.Errorf("loadgen: bench process %d: setup: %w", k, err)
	}
	return c, nil
}

// waitReady waits for every child's "ready" and adds its connections to
// res.
func (r *run) waitReady(res *Result) error {
	if len(r.children) == 0 {
		return nil
	}
	for _, c := range r.children {
		rep, err := c.readReply()
		if err != nil {
			return fmt.Errorf("loadgen: bench process %d: %w", c.idx, err)
		}
		if !rep.Ready {
			return fmt.Errorf("loadgen: bench process %d: no ready line", c.idx)
		}
		res.Connected += int(rep.Connected)
		res.ConnectErr += rep.ConnectErr
		if res.FirstConnectError == "" {
			res.FirstConnectError = rep.FirstError
		}
		c.last = rep
	}
	r.readyKids.Store(&r.children)
	return nil
}

func (c *childProc) readReply() (childReply, error) {
	var rep childReply
	line, err := c.out.ReadSlice('\n')
	if err != nil {
		if errors.Is(err, bufio.ErrBufferFull) {
			return rep, errors.New("reply line too long")
		}
		if errors.Is(err, io.EOF) {
			return rep, errors.New("exited")
		}
		return rep, err
	}
	if err := json.Unmarshal(line, &rep); err != nil {
		return rep, fmt.Errorf("bad reply: %w", err)
	}
	if rep.Error != "" {
		return rep, errors.New(rep.Error)
	}
	return rep, nil
}

// request sends op and returns the reply, with its histogram decoded. A
// child that failed keeps answering with its last counts and the error.
func (c *childProc) request(op string) (childReply, *hdrhistogram.Histogram, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err != nil {
		return c.last, nil, c.err
	}
	b, _ := json.Marshal(childRequest{Op: op})
	if _, err := c.in.Write(append(b, '\n')); err != nil {
		c.err = fmt.Errorf("bench process %d: %w", c.idx, err)
		return c.last, nil, c.err
	}
	rep, err := c.readReply()
	if err != nil {
		c.err = fmt.Errorf("bench process %d: %w", c.idx, err)
		return c.last, nil, c.err
	}
	c.last = rep
	if len(rep.Hist) == 0 {
		return rep, nil, nil
	}
	h, err := hdrhistogram.Decode(rep.Hist)
	if err != nil {
		c.err = fmt.Errorf("bench process %d: histogram: %w", c.idx, err)
		return rep, nil, c.err
	}
	return rep, h, nil
}

// stop closes the child's input, which ends it, and waits; a child that
// does not end within 5 s is killed.
func (c *childProc) stop() {
	_ = c.in.Close()
	done := make(chan struct{})
	go func() {
		// Drain what it still writes so it never blocks on a full pipe.
		_, _ = io.Copy(io.Discard, c.out)
		close(done)
	}()
	t := time.NewTimer(5 * time.Second)
	defer t.Stop()
	select {
	case <-done:
	case <-t.C:
		_ = c.cmd.Process.Kill()
		<-done
	}
	_ = c.cmd.Wait()
}

func (r *run) stopChildren() {
	r.readyKids.Store(nil)
	var wg sync.WaitGroup
	for _, c := range r.children {
		wg.Add(1)
		go func() { defer wg.Done(); c.stop() }()
	}
	wg.Wait()
}

// childErr returns the first failure of a child, if any.
func (r *run) childErr() error {
	for _, c := range r.kids() {
		c.mu.Lock()
		err := c.err
		c.mu.Unlock()
		if err != nil {
			return fmt.Errorf("loadgen: %w", err)
		}
	}
	return nil
}

// childTotals sums the children's counts.
func (r *run) childTotals() (delivered, dups, discon, connected int64) {
	for _, c := range r.kids() {
		rep, _, _ := c.request("counts")
		delivered += rep.Delivered
		dups += rep.Dups
		discon += rep.Disconnects
		connected += rep.Connected
	}
	return
}

// childHists merges the children's histograms of op ("second" or "step")
// into h.
func (r *run) childHists(op string, h *hdrhistogram.Histogram) {
	for _, c := range r.kids() {
		if _, ch, err := c.request(op); err == nil && ch != nil {
			h.Merge(ch)
		}
	}
}

// childCPUTicks is the CPU time the children used so far.
func (r *run) childCPUTicks() uint64 {
	var t uint64
	for _, c := range r.kids() {
		if ps, err := readProc(c.cmd.Process.Pid); err == nil {
			t += ps.CPUTicks
		}
	}
	return t
}

// RunChild is the body of a child process of a run over several processes
// (see Config.Procs): it reads its setup from in, holds its share of the
// connections and answers the parent's requests on out until in closes or
// ctx ends.
func RunChild(ctx context.Context, in io.Reader, out io.Writer) error {
	br := bufio.NewReaderSize(in, 64<<10)
	line, err := br.ReadSlice('\n')
	if err != nil {
		return fmt.Errorf("loadgen: child setup: %w", err)
	}
	var setup childSetup
	if err := json.Unmarshal(line, &setup); err != nil {
		return fmt.Errorf("loadgen: child setup: %w", err)
	}
	if setup.Procs < 2 || setup.Proc < 1 || setup.Proc >= setup.Procs {
		return fmt.Errorf("loadgen: child setup: process %d of %d", setup.Proc, setup.Procs)
	}
	cfg := setup.Config
	cfg.Progress = nil
	cfg.ChildCommand = nil
	enc := json.NewEncoder(out)
	if _, err := raiseFDLimit(); err != nil {
		_ = enc.Encode(childReply{Error: err.Error()})
		return fmt.Errorf("loadgen: %w", err)
	}
	r, err := newRun(cfg, setup.Proc, setup.Procs)
	if err != nil {
		_ = enc.Encode(childReply{Error: err.Error()})
		return err
	}
	if r.cfg.Mode == ModeEcho {
		err := errors.New("loadgen: echo runs in one process")
		_ = enc.Encode(childReply{Error: err.Error()})
		return err
	}
	// The parent ends this child by closing in (or by dying, which closes
	// it too): the reading goroutine then cancels ctx and ends.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	reqs := make(chan string)
	go func() {
		defer close(reqs)
		for {
			line, err := br.ReadSlice('\n')
			if err != nil {
				cancel()
				return
			}
			var req childRequest
			if json.Unmarshal(line, &req) != nil {
				cancel()
				return
			}
			select {
			case reqs <- req.Op:
			case <-ctx.Done():
				return
			}
		}
	}()
	res := &Result{}
	t0 := time.Now()
	r.connect(ctx, res)
	defer r.closeAll()
	if err := enc.Encode(childReply{Ready: true, Connected: int64(res.Connected), ConnectErr: res.ConnectErr,
		FirstError: res.FirstConnectError, ConnectSeconds: time.Since(t0).Seconds()}); err != nil {
		return fmt.Errorf("loadgen: child: %w", err)
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case op, ok := <-reqs:
			if !ok {
				return nil
			}
			d, u := r.ownTotals()
			rep := childReply{Delivered: d, Dups: u, Disconnects: r.discon.Load(), Connected: r.connected.Load()}
			var h *hdrhistogram.Histogram
			switch op {
			case "counts":
			case "second":
				h = r.lat.takeSecond()
			case "step":
				h = r.lat.takeStep()
			default:
				rep.Error = fmt.Sprintf("unknown request %q", op)
			}
			if h != nil {
				if rep.Hist, err = h.Encode(hdrhistogram.V2CompressedEncodingCookieBase); err != nil {
					rep.Error = fmt.Sprintf("histogram: %v", err)
				}
			}
			if err := enc.Encode(rep); err != nil {
				return fmt.Errorf("loadgen: child: %w", err)
			}
		}
	}
}

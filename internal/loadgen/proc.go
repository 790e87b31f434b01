package loadgen

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// fdOverhead is what the process needs besides its client connections:
// standard streams, the HTTP publishers, the poller, /proc reads.
const fdOverhead = 64

// raiseFDLimit raises the soft RLIMIT_NOFILE to the hard limit and returns
// the resulting soft limit.
func raiseFDLimit() (uint64, error) {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return 0, fmt.Errorf("getrlimit: %w", err)
	}
	if lim.Cur < lim.Max {
		lim.Cur = lim.Max
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
			return 0, fmt.Errorf("setrlimit: %w", err)
		}
	}
	return lim.Cur, nil
}

// checkFDs reports, in words an operator can act on, when conns
// connections do not fit in limit file descriptors.
func checkFDs(conns int, limit uint64) error {
	need := uint64(conns) + fdOverhead
	if need <= limit {
		return nil
	}
	perProc := int(limit) - fdOverhead
	procs := 2
	if perProc > 0 {
		procs = (conns + perProc - 1) / perProc
	}
	return fmt.Errorf("%d connections need about %d file descriptors but this process may open at most %d "+
		"(hard RLIMIT_NOFILE); run %d bench processes of --conns %d each side by side, "+
		"or raise the hard limit (ulimit -Hn, systemd LimitNOFILE)", conns, need, limit, procs, max(perProc, 1))
}

// sourceAddrs returns the local addresses to spread connections over when
// host is a loopback address: 127.0.0.2 to 127.0.0.254 for IPv4 (each
// gives its own range of ephemeral ports towards the same server address),
// nil otherwise or for IPv6.
func sourceAddrs(host string) []net.IP {
	ip := net.ParseIP(host)
	if host == "localhost" {
		ip = net.IPv4(127, 0, 0, 1)
	}
	if ip == nil || !ip.IsLoopback() || ip.To4() == nil {
		return nil
	}
	out := make([]net.IP, 0, 253)
	for i := 2; i <= 254; i++ {
		out = append(out, net.IPv4(127, 0, 0, byte(i)))
	}
	return out
}

// ProcSample is the resource use of a process at one moment, read from
// /proc/PID/stat and /proc/PID/status.
type ProcSample struct {
	At       time.Time
	CPUTicks uint64 // utime + stime, in clock ticks
	RSS      int64  // bytes
}

// clockTicks is USER_HZ, which Linux fixes at 100 for /proc on every
// architecture Go supports.
const clockTicks = 100

func readProc(pid int) (ProcSample, error) {
	s := ProcSample{At: time.Now()}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return s, err
	}
	// The command name (field 2) may contain spaces; fields after it are
	// counted from its closing parenthesis.
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return s, fmt.Errorf("/proc/%d/stat: malformed", pid)
	}
	f := strings.Fields(string(stat[i+1:]))
	// After ")" field 3 (state) is f[0]; utime is field 14, stime 15.
	if len(f) < 13 {
		return s, fmt.Errorf("/proc/%d/stat: malformed", pid)
	}
	ut, err1 := strconv.ParseUint(f[11], 10, 64)
	st, err2 := strconv.ParseUint(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return s, fmt.Errorf("/proc/%d/stat: malformed times", pid)
	}
	s.CPUTicks = ut + st
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return s, err
	}
	sc := bufio.NewScanner(bytes.NewReader(status))
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			if err != nil {
				return s, fmt.Errorf("/proc/%d/status: VmRSS: %w", pid, err)
			}
			s.RSS = kb << 10
		}
	}
	return s, nil
}

// cpuPercent is the CPU use between two samples, 100 per busy core.
func cpuPercent(a, b ProcSample) float64 {
	d := b.At.Sub(a.At).Seconds()
	if d <= 0 {
		return 0
	}
	return float64(b.CPUTicks-a.CPUTicks) / clockTicks / d * 100
}

// RuntimeStats are Go runtime figures a server exposes in the Prometheus
// text format (the standard Go collector's names).
type RuntimeStats struct {
	HeapInuse  float64 `json:"heap_inuse_bytes"`
	StackInuse float64 `json:"stack_inuse_bytes"`
	Goroutines float64 `json:"goroutines"`
}

// maxMetricsBody bounds how much of a metrics response is read.
const maxMetricsBody = 8 << 20

func scrapeRuntime(ctx context.Context, url string) (RuntimeStats, error) {
	var rs RuntimeStats
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return rs, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return rs, fmt.Errorf("scrape %s: %w", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return rs, fmt.Errorf("scrape %s: status %s", url, resp.Status)
	}
	sc := bufio.NewScanner(io.LimitReader(resp.Body, maxMetricsBody))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		name, val, ok := strings.Cut(sc.Text(), " ")
		if !ok {
			continue
		}
		var dst *float64
		switch name {
		case "go_memstats_heap_inuse_bytes":
			dst = &rs.HeapInuse
		case "go_memstats_stack_inuse_bytes":
			dst = &rs.StackInuse
		case "go_goroutines":
			dst = &rs.Goroutines
		default:
			continue
		}
		if v, err := strconv.ParseFloat(strings.TrimSpace(val), 64); err == nil {
			*dst = v
		}
	}
	return rs, sc.Err()
}

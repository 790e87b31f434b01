// Package testservers gives tests access to real Redis and NATS servers.
//
// Three kinds of server are offered:
//
//   - Shared servers, started once for the whole test run by `.ci/services
//     start` and named by the HERALD_TEST_REDIS (comma-separated host:port
//     list) and HERALD_TEST_NATS (nats:// URL) environment variables.
//     RedisAddrs and NATSURL return them; tests sharing them must use unique
//     key and channel names.
//   - Private servers, started by StartRedis and StartNATS for one test on
//     a free port with a temporary directory. The test may Stop and Start
//     them to simulate an outage without disturbing other tests.
//   - Private deployments built from private servers: a Redis Cluster
//     (StartRedisCluster), a master with a Sentinel (StartRedisSentinel),
//     a replica (StartRedisReplica), and a master, replica and Sentinel
//     (StartSentinelGroup) on which a test can force a failover.
//
// When a variable or a binary is missing the test is skipped with a message
// saying what to install or run, except under CI=true, where a missing or
// unreachable server fails the test: CI must not silently skip broker tests.
//
// Every function here is for tests only and must be called from the test's
// goroutine (it calls t.Fatal and t.Skip).
package testservers

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// Environment variables naming the shared servers.
const (
	EnvRedis = "HERALD_TEST_REDIS"
	EnvNATS  = "HERALD_TEST_NATS"
)

// startTimeout bounds how long a server may take to accept connections.
const startTimeout = 10 * time.Second

// inCI reports whether missing servers must fail rather than skip.
func inCI() bool { return os.Getenv("CI") == "true" }

// unavailable skips the test, or fails it under CI=true.
func unavailable(t testing.TB, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	if inCI() {
		t.Fatalf("%s (CI=true: broker tests must not be skipped)", msg)
	}
	t.Skip(msg)
}

// RedisAddrs returns the shared Redis servers from HERALD_TEST_REDIS after
// checking that each accepts TCP connections. It returns at least min
// addresses or skips (fails under CI=true).
func RedisAddrs(t testing.TB, min int) []string {
	t.Helper()
	v := strings.TrimSpace(os.Getenv(EnvRedis))
	if v == "" {
		unavailable(t, "%s is not set; run `eval \"$(.ci/services start)\"` to start test servers", EnvRedis)
	}
	var addrs []string
	for _, a := range strings.Split(v, ",") {
		if a = strings.TrimSpace(a); a != "" {
			addrs = append(addrs, a)
		}
	}
	if len(addrs) < min {
		unavailable(t, "%s lists %d Redis servers, this test needs %d", EnvRedis, len(addrs), min)
	}
	for _, a := range addrs {
		if err := dialCheck(a); err != nil {
			unavailable(t, "Redis server %s from %s is unreachable: %v", a, EnvRedis, err)
		}
	}
	return addrs
}

// NATSURL returns the shared NATS server URL from HERALD_TEST_NATS after
// checking that it accepts TCP connections.
func NATSURL(t testing.TB) string {
	t.Helper()
	v := strings.TrimSpace(os.Getenv(EnvNATS))
	if v == "" {
		unavailable(t, "%s is not set; run `eval \"$(.ci/services start)\"` to start test servers", EnvNATS)
	}
	hostPort := strings.TrimPrefix(v, "nats://")
	if i := strings.IndexByte(hostPort, ','); i >= 0 {
		hostPort = hostPort[:i]
	}
	if err := dialCheck(hostPort); err != nil {
		unavailable(t, "NATS server %s from %s is unreachable: %v", v, EnvNATS, err)
	}
	return v
}

func dialCheck(addr string) error {
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		return err
	}
	return c.Close()
}

// Server is a private server process owned by one test. Stop and Start may
// be called any number of times; the port stays the same so clients can
// reconnect. The process is killed when the test ends.
type Server struct {
	t    testing.TB
	name string
	addr string
	args []string
	dir  string

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
}

// Addr is the server's host:port.
func (s *Server) Addr() string { return s.addr }

// Port is the server's TCP port.
func (s *Server) Port() int {
	_, p, _ := net.SplitHostPort(s.addr)
	n, _ := strconv.Atoi(p)
	return n
}

// Dir is the server's private data directory; it survives Stop and Start.
func (s *Server) Dir() string { return s.dir }

// StartRedis starts a private redis-server without persistence on a free
// port: a restart loses every key, as a real outage without persistence
// would.
func StartRedis(t testing.TB) *Server {
	t.Helper()
	return startRedis(t)
}

// startRedis starts a private redis-server with extra arguments.
func startRedis(t testing.TB, extra ...string) *Server {
	t.Helper()
	bin := lookBinary(t, "redis-server")
	dir := t.TempDir()
	port := freePort(t)
	s := &Server{t: t, name: "redis-server", addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), dir: dir}
	s.args = []string{bin,
		"--port", strconv.Itoa(port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--dir", dir,
		"--daemonize", "no", "--loglevel", "warning",
	}
	s.args = append(s.args, extra...)
	t.Cleanup(s.Stop)
	s.Start()
	return s
}

// StartNATS starts a private nats-server with JetStream on a free port.
// Its JetStream store lives in Dir, so streams survive Stop and Start.
func StartNATS(t testing.TB) *Server {
	t.Helper()
	bin := lookBinary(t, "nats-server")
	dir := t.TempDir()
	port := freePort(t)
	s := &Server{t: t, name: "nats-server", addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), dir: dir}
	s.args = []string{bin, "-a", "127.0.0.1", "-p", strconv.Itoa(port), "-js", "-sd", dir}
	t.Cleanup(s.Stop)
	s.Start()
	return s
}

// URL is the nats:// URL of a NATS server.
func (s *Server) URL() string { return "nats://" + s.addr }

func lookBinary(t testing.TB, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		unavailable(t, "%s not found on PATH: %v", name, err)
	}
	return p
}

// freePort asks the kernel for a free TCP port on 127.0.0.1. Another
// process could take it before the server binds; Start then fails loudly.
func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("testservers: free port: %v", err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	if err := l.Close(); err != nil {
		t.Fatalf("testservers: free port: %v", err)
	}
	return port
}

// Start runs the server process (if it is not running) and waits until it
// accepts connections.
func (s *Server) Start() {
	s.t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd != nil {
		return
	}
	cmd := exec.Command(s.args[0], s.args[1:]...)
	logFile, err := os.OpenFile(s.dir+"/"+s.name+".log", os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		s.t.Fatalf("testservers: %s log: %v", s.name, err)
	}
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		_ = logFile.Close()
		s.t.Fatalf("testservers: start %s: %v", s.name, err)
	}
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		_ = logFile.Close()
		close(done)
	}()
	s.cmd, s.done = cmd, done
	if err := s.waitReady(done); err != nil {
		_ = cmd.Process.Kill()
		<-done
		s.cmd, s.done = nil, nil
		s.t.Fatalf("testservers: %s on %s: %v\n%s", s.name, s.addr, err, s.logTail())
	}
}

// waitReady polls until the server answers its protocol's greeting.
func (s *Server) waitReady(exited <-chan struct{}) error {
	deadline := time.Now().Add(startTimeout)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	var last error
	for time.Now().Before(deadline) {
		select {
		case <-exited:
			return errors.New("process exited during start")
		default:
		}
		if last = s.probe(); last == nil {
			return nil
		}
		<-tick.C
	}
	return fmt.Errorf("not ready after %v: %w", startTimeout, last)
}

// probe sends PING to Redis or reads the INFO greeting of NATS.
func (s *Server) probe() error {
	c, err := net.DialTimeout("tcp", s.addr, time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(time.Second))
	r := bufio.NewReader(c)
	if s.name == "redis-server" {
		if _, err := c.Write([]byte("PING\r\n")); err != nil {
			return err
		}
		line, err := r.ReadString('\n')
		if err != nil {
			return err
		}
		if !strings.HasPrefix(line, "+PONG") {
			return fmt.Errorf("unexpected reply %q", line)
		}
		return nil
	}
	line, err := r.ReadString('\n')
	if err != nil {
		return err
	}
	if !strings.HasPrefix(line, "INFO ") {
		return fmt.Errorf("unexpected greeting %q", line)
	}
	// JetStream is ready once the server answers a PING after startup.
	if _, err := c.Write([]byte("CONNECT {\"verbose\":false}\r\nPING\r\n")); err != nil {
		return err
	}
	line, err = r.ReadString('\n')
	if err != nil {
		return err
	}
	if !strings.HasPrefix(line, "PONG") {
		return fmt.Errorf("unexpected reply %q", line)
	}
	return nil
}

// Stop kills the server process and waits for it to exit. Clients see
// their connections reset, as in a crash.
func (s *Server) Stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return
	}
	_ = s.cmd.Process.Kill()
	<-s.done
	s.cmd, s.done = nil, nil
}

func (s *Server) logTail() string {
	b, err := os.ReadFile(s.dir + "/" + s.name + ".log")
	if err != nil {
		return ""
	}
	if len(b) > 2000 {
		b = b[len(b)-2000:]
	}
	return string(b)
}

// StartRedisCluster starts masters private redis-server processes in
// cluster mode (no replicas, no persistence), joins them into one Redis
// Cluster covering every slot with redis-cli, and waits until every node
// reports cluster_state:ok. It returns the nodes' addresses.
func StartRedisCluster(t testing.TB, masters int) []string {
	t.Helper()
	bin := lookBinary(t, "redis-server")
	cli := lookBinary(t, "redis-cli")
	addrs := make([]string, masters)
	for i := range addrs {
		dir := t.TempDir()
		port := freeClusterPort(t)
		s := &Server{t: t, name: "redis-server", addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), dir: dir}
		s.args = []string{bin,
			"--port", strconv.Itoa(port), "--bind", "127.0.0.1",
			"--save", "", "--appendonly", "no", "--dir", dir,
			"--cluster-enabled", "yes", "--cluster-config-file", dir + "/nodes.conf",
			"--daemonize", "no", "--loglevel", "warning",
		}
		t.Cleanup(s.Stop)
		s.Start()
		addrs[i] = s.addr
	}
	args := append([]string{"--cluster", "create"}, addrs...)
	args = append(args, "--cluster-replicas", "0", "--cluster-yes")
	if out, err := exec.Command(cli, args...).CombinedOutput(); err != nil {
		t.Fatalf("testservers: redis-cli --cluster create: %v\n%s", err, out)
	}
	deadline := time.Now().Add(startTimeout)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for _, a := range addrs {
		host, port, _ := net.SplitHostPort(a)
		for {
			out, err := exec.Command(cli, "-h", host, "-p", port, "cluster", "info").Output()
			if err == nil && strings.Contains(string(out), "cluster_state:ok") {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("testservers: redis cluster node %s not ready: %v\n%s", a, err, out)
			}
			<-tick.C
		}
	}
	return addrs
}

// freeClusterPort returns a free port whose cluster bus port (port+10000)
// is free too.
func freeClusterPort(t testing.TB) int {
	t.Helper()
	for range 100 {
		p := freePort(t)
		if p+10000 > 65535 {
			continue
		}
		l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p+10000)))
		if err != nil {
			continue
		}
		_ = l.Close()
		return p
	}
	t.Fatalf("testservers: no free port pair for a cluster node")
	return 0
}

// StartRedisSentinel starts a private master redis-server and one
// redis-server in sentinel mode monitoring it under masterName. It returns
// the master and the sentinel.
func StartRedisSentinel(t testing.TB, masterName string) (master, sentinel *Server) {
	t.Helper()
	master = StartRedis(t)
	sentinel = startSentinel(t, fmt.Sprintf("sentinel monitor %s 127.0.0.1 %d 1\n", masterName, master.Port()))
	return master, sentinel
}

// StartRedisReplica starts a private redis-server without persistence
// replicating master, and waits until its replication link is up and the
// initial synchronisation is done.
func StartRedisReplica(t testing.TB, master *Server) *Server {
	t.Helper()
	r := startRedis(t, "--replicaof", "127.0.0.1", strconv.Itoa(master.Port()))
	waitFor(t, "replica "+r.addr+" in sync with "+master.addr, func() (bool, error) {
		info, err := redisInfo(r.addr, "replication")
		if err != nil {
			return false, err
		}
		return info["master_link_status"] == "up" && info["master_sync_in_progress"] == "0", nil
	})
	return r
}

// SentinelGroup is a private Sentinel-managed deployment: a master, one
// replica and one Sentinel monitoring the master with quorum 1 and short
// timeouts, so that a test can force a failover and watch the replica take
// over. Master and Replica keep the roles they started with; after Failover
// the Replica serves as master.
type SentinelGroup struct {
	Name                      string
	Master, Replica, Sentinel *Server
}

// StartSentinelGroup starts a master, a replica in sync with it and a
// Sentinel monitoring the master under name, and waits until the Sentinel
// knows the replica well enough to promote it.
func StartSentinelGroup(t testing.TB, name string) *SentinelGroup {
	t.Helper()
	g := &SentinelGroup{Name: name}
	// No delay before the initial synchronisation of the replica.
	g.Master = startRedis(t, "--repl-diskless-sync-delay", "0")
	g.Replica = StartRedisReplica(t, g.Master)
	// Started after the replica is in sync: the Sentinel's first INFO of
	// the master then lists the replica, without waiting for the next
	// periodic refresh.
	g.Sentinel = startSentinel(t, fmt.Sprintf(
		"sentinel monitor %[1]s 127.0.0.1 %[2]d 1\n"+
			"sentinel down-after-milliseconds %[1]s 1000\n"+
			"sentinel failover-timeout %[1]s 5000\n",
		name, g.Master.Port()))
	waitFor(t, "sentinel to know replica "+g.Replica.addr, func() (bool, error) {
		c := redis.NewSentinelClient(&redis.Options{Addr: g.Sentinel.addr, Protocol: 2})
		defer c.Close()
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		replicas, err := c.Replicas(ctx, name).Result()
		if err != nil {
			return false, err
		}
		for _, r := range replicas {
			if net.JoinHostPort(r["ip"], r["port"]) == g.Replica.addr &&
				r["flags"] == "slave" && r["master-link-status"] == "ok" {
				return true, nil
			}
		}
		return false, fmt.Errorf("replicas %v", replicas)
	})
	return g
}

// WaitReplicated waits until the replica has received everything the
// master had written when it was called, so that a failover loses nothing
// acknowledged before.
func (g *SentinelGroup) WaitReplicated(t testing.TB) {
	t.Helper()
	info, err := redisInfo(g.Master.addr, "replication")
	if err != nil {
		t.Fatalf("testservers: master INFO: %v", err)
	}
	want, err := strconv.ParseInt(info["master_repl_offset"], 10, 64)
	if err != nil {
		t.Fatalf("testservers: master_repl_offset %q: %v", info["master_repl_offset"], err)
	}
	waitFor(t, "replica to reach master offset "+strconv.FormatInt(want, 10), func() (bool, error) {
		info, err := redisInfo(g.Replica.addr, "replication")
		if err != nil {
			return false, err
		}
		got, err := strconv.ParseInt(info["slave_repl_offset"], 10, 64)
		if err != nil {
			return false, fmt.Errorf("slave_repl_offset %q: %w", info["slave_repl_offset"], err)
		}
		return got >= want, nil
	})
}

// Failover makes the Sentinel promote the replica (SENTINEL FAILOVER) and
// waits until the Sentinel names it as the master. The old master keeps
// running; the Sentinel demotes it to a replica of the new master later.
func (g *SentinelGroup) Failover(t testing.TB) {
	t.Helper()
	c := redis.NewSentinelClient(&redis.Options{Addr: g.Sentinel.addr, Protocol: 2})
	defer c.Close()
	requested := false
	waitFor(t, "sentinel to promote "+g.Replica.addr, func() (bool, error) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		if !requested {
			// NOGOODSLAVE and INPROG are transient: retry until the deadline.
			if err := c.Failover(ctx, g.Name).Err(); err != nil {
				return false, fmt.Errorf("SENTINEL FAILOVER: %w", err)
			}
			requested = true
		}
		addr, err := c.GetMasterAddrByName(ctx, g.Name).Result()
		if err != nil {
			return false, err
		}
		if len(addr) != 2 {
			return false, fmt.Errorf("master address %v", addr)
		}
		return net.JoinHostPort(addr[0], addr[1]) == g.Replica.addr, nil
	})
}

// startSentinel starts a redis-server in sentinel mode with the given
// monitoring configuration.
func startSentinel(t testing.TB, monitor string) *Server {
	t.Helper()
	bin := lookBinary(t, "redis-server")
	dir := t.TempDir()
	port := freePort(t)
	conf := dir + "/sentinel.conf"
	cfg := fmt.Sprintf("port %d\nbind 127.0.0.1\ndir %s\n%s", port, dir, monitor)
	if err := os.WriteFile(conf, []byte(cfg), 0o644); err != nil {
		t.Fatalf("testservers: sentinel config: %v", err)
	}
	s := &Server{t: t, name: "redis-server", addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), dir: dir}
	s.args = []string{bin, conf, "--sentinel"}
	t.Cleanup(s.Stop)
	s.Start()
	return s
}

// redisInfo returns the fields of one INFO section of the server at addr.
func redisInfo(addr, section string) (map[string]string, error) {
	c := redis.NewClient(&redis.Options{Addr: addr, Protocol: 2, MaxRetries: -1})
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	s, err := c.Info(ctx, section).Result()
	if err != nil {
		return nil, fmt.Errorf("INFO %s from %s: %w", section, addr, err)
	}
	out := make(map[string]string)
	for _, line := range strings.Split(s, "\n") {
		if k, v, ok := strings.Cut(strings.TrimSpace(line), ":"); ok {
			out[k] = v
		}
	}
	return out, nil
}

// waitFor polls cond until it holds, failing the test with cond's last
// error after startTimeout.
func waitFor(t testing.TB, what string, cond func() (bool, error)) {
	t.Helper()
	deadline := time.Now().Add(startTimeout)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		ok, err := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("testservers: waiting for %s: %v", what, err)
		}
		<-tick.C
	}
}

// Package config turns herald's three configuration sources into one
// validated Config.
//
// Sources, lowest precedence first:
//
//  1. built-in defaults (Default), chosen so that `herald serve` with no
//     configuration runs the demo on 127.0.0.1:8080;
//  2. a YAML file (Load with LoadOptions.File); unknown keys are an error
//     that names the line;
//  3. the environment: every scalar option has a HERALD_* variable named
//     after its key path, for example token.secret is HERALD_TOKEN_SECRET
//     and log.level is HERALD_LOG_LEVEL; lists are comma-separated;
//  4. command-line flags: every scalar option has a flag named after its
//     key path with dashes, for example --token-secret and --log-level.
//
// Namespaces are configured only in the file. Every option, with its
// default, is documented in docs/configuration.md.
//
// A Config is a plain value: it is not safe to modify while other
// goroutines read it. The server reads it once at start.
package config

import (
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"os"
	"strings"
	"time"
)

// Config is herald's whole configuration. The yaml tag of each field is its
// key in the file; nested keys are joined with '.' (token.secret).
type Config struct {
	// Listen is the HTTP address (WebSocket, server API, metrics, demo).
	Listen string `yaml:"listen"`
	// TCPListen is the address of the TCP client transport
	// (length-prefixed frames, JSON or binary); empty disables it.
	TCPListen string `yaml:"tcp_listen"`
	// UDPListen is the address of the UDP client transport (binary
	// datagrams); empty disables it.
	UDPListen string `yaml:"udp_listen"`
	// ListenBacklog is the accept queue length passed to listen(2) for
	// every listener. 0 keeps Go's default (net.core.somaxconn). The kernel
	// caps it at net.core.somaxconn either way.
	ListenBacklog int `yaml:"listen_backlog"`
	// TLS serves the HTTP listener (https, wss) and the TCP transport over
	// TLS with a certificate read from files and reloaded when they change.
	TLS TLS `yaml:"tls"`
	// Insecure allows a non-loopback listen address without an API key and
	// a token key. Never set it in production.
	Insecure bool `yaml:"insecure"`
	// Node names this node in connect replies and /api/info. Default: the
	// host name.
	Node string `yaml:"node"`

	// APIKey authenticates the server API (X-API-Key header). Empty on a
	// loopback address: a random key is generated and printed at start.
	APIKey string `yaml:"api_key"`
	// APIMaxBodySize bounds server API request bodies, in bytes.
	APIMaxBodySize int64 `yaml:"api_max_body_size"`
	// APIMaxBatchCommands bounds the commands of one POST /api/batch
	// request (1 to MaxAPIBatchCommands).
	APIMaxBatchCommands int `yaml:"api_max_batch_commands"`

	// Token configures how connection tokens (JWT) are verified.
	Token Token `yaml:"token"`
	// AllowAnonymous accepts connections without a token. Namespaces
	// decide separately whether anonymous clients may use their channels.
	AllowAnonymous bool `yaml:"allow_anonymous"`
	// AllowedOrigins lists the browser Origin hosts (path.Match patterns)
	// allowed to open WebSocket connections besides the server's own host.
	AllowedOrigins []string `yaml:"allowed_origins"`

	Log Log `yaml:"log"`

	// PingInterval is how often the server pings each client.
	PingInterval time.Duration `yaml:"ping_interval"`
	// PongTimeout is how long after a ping interval a silent client is
	// disconnected (3002).
	PongTimeout time.Duration `yaml:"pong_timeout"`
	// ConnectTimeout bounds the time between accepting a connection and
	// its connect command (3006).
	ConnectTimeout time.Duration `yaml:"connect_timeout"`
	// MaxMessageSize is the largest message a client may send, in bytes.
	MaxMessageSize int64 `yaml:"max_message_size"`
	// MaxSubscriptions bounds one connection's subscriptions.
	MaxSubscriptions int `yaml:"max_subscriptions"`
	// MaxConnectionsPerUser bounds one user's connections on a node
	// (3504 beyond it); 0: no limit. Anonymous connections are not counted.
	MaxConnectionsPerUser int `yaml:"max_connections_per_user"`
	// AllowClientSend lets authenticated clients send direct messages to
	// users (the send command); the server API always may.
	AllowClientSend bool `yaml:"allow_client_send"`

	ClientQueue Queue       `yaml:"client_queue"`
	Compression Compression `yaml:"compression"`
	History     History     `yaml:"history"`

	// Namespaces configures channel namespaces. The namespace named ""
	// holds channels without a ':' in their name. A channel whose
	// namespace is not listed is refused. When the file has no namespaces
	// key, DefaultNamespaces applies.
	Namespaces []Namespace `yaml:"namespaces"`

	// DrainTimeout is the window over which clients are disconnected with
	// 1001 at shutdown, spread so they do not all reconnect at once.
	DrainTimeout time.Duration `yaml:"drain_timeout"`
	// ShutdownTimeout bounds the whole shutdown; whatever is still open
	// when it runs out is closed abruptly.
	ShutdownTimeout time.Duration `yaml:"shutdown_timeout"`

	Broker Broker `yaml:"broker"`
	Demo   Demo   `yaml:"demo"`
	Debug  Debug  `yaml:"debug"`
	Memory Memory `yaml:"memory"`
}

// Memory configures how the process hands memory back to the operating
// system.
type Memory struct {
	// ReleaseAfterBurst: once the number of connections has changed by a
	// burst (at least 1,000 and a tenth of the count at the last release)
	// and has then been steady (moved by less than a tenth of that) for
	// this long, the server collects garbage (two cycles, so that pooled
	// buffers sized for the burst go too) and returns the free heap to
	// the OS (runtime/debug.FreeOSMemory). Without it the memory a
	// connection storm grew the heap to stays resident while the
	// connections sit idle. The collections run concurrently with the
	// rest of the process; they cost CPU in proportion to the live heap,
	// once per settled burst. 0 turns it off. Default 5s.
	ReleaseAfterBurst time.Duration `yaml:"release_after_burst"`
}

// Debug holds diagnostics for operators; everything is off by default.
type Debug struct {
	// PprofListen serves Go's runtime profiles (net/http/pprof, under
	// /debug/pprof/) on a listener of their own; "" (the default) turns
	// it off. It must be a loopback address unless Insecure is set.
	// Danger: profiles expose the process's internals (goroutine stacks,
	// command line) and a CPU or trace profile costs CPU while it runs;
	// there is no authentication, so never expose it to untrusted
	// networks.
	PprofListen string `yaml:"pprof_listen"`
}

// TLS names the certificate the listeners serve. With neither file set
// every listener speaks plain text (put a TLS-terminating proxy in front).
type TLS struct {
	// CertFile is a PEM file with the certificate followed by any
	// intermediates. Set together with KeyFile.
	CertFile string `yaml:"cert_file"`
	// KeyFile is the PEM file with the certificate's private key.
	KeyFile string `yaml:"key_file"`
	// PlainTCP keeps the TCP transport (tcp_listen) in plain text while
	// the HTTP listener uses TLS, for a TCP transport that a TLS-terminating
	// load balancer fronts or that only loopback clients use. Danger: on
	// any other network it exposes tokens and messages.
	PlainTCP bool `yaml:"plain_tcp"`
}

// Enabled reports whether TLS is configured.
func (t TLS) Enabled() bool { return t.CertFile != "" }

// Token configures connection token verification. Any combination of keys
// may be set; a token is accepted if it verifies with the key matching its
// algorithm.
type Token struct {
	// Secret is the HMAC key for HS256 tokens. Empty on a loopback
	// address: a random secret is generated and printed at start.
	Secret string `yaml:"secret"`
	// RSAPublicKeyFile is a PEM file with the RSA public key for RS256.
	RSAPublicKeyFile string `yaml:"rsa_public_key_file"`
	// ECDSAPublicKeyFile is a PEM file with the ECDSA public key for ES256.
	ECDSAPublicKeyFile string `yaml:"ecdsa_public_key_file"`
	// Issuer, when set, must equal each token's iss claim.
	Issuer string `yaml:"issuer"`
	// Audience, when set, must be one of each token's aud values.
	Audience string `yaml:"audience"`
}

// Log configures logging.
type Log struct {
	Level  string `yaml:"level"`  // debug, info, warn, error
	Format string `yaml:"format"` // text or json
}

// Queue bounds each client's outbound queue. A client whose queue
// overflows is disconnected with 3001 (slow consumer).
type Queue struct {
	Bytes    int `yaml:"bytes"`
	Messages int `yaml:"messages"`
	// WriteDelay paces writes to each client socket: a message queued
	// less than two thirds of WriteDelay after that client's previous
	// write was due waits until WriteDelay has passed since then, and what
	// was queued meanwhile leaves in one system call. Clients that receive
	// fewer than 1.5 messages per WriteDelay (20/s at the default 75ms)
	// are never delayed. 0 turns pacing off; at most MaxWriteDelay.
	WriteDelay time.Duration `yaml:"write_delay"`
}

// MaxWriteDelay bounds client_queue.write_delay (the socket engine's
// limit).
const MaxWriteDelay = 250 * time.Millisecond

// MaxAPIBatchCommands bounds api_max_batch_commands: a batch runs its
// commands one after the other inside one request's time limit, and the
// decoded commands are held until they have run.
const MaxAPIBatchCommands = 100000

// Compression configures WebSocket permessage-deflate.
type Compression struct {
	Enabled bool `yaml:"enabled"`
	// Threshold is the smallest message compressed, in bytes.
	Threshold int `yaml:"threshold"`
}

// History holds server-wide history settings.
type History struct {
	// MetaTTL is how long a channel's offset and epoch outlive its last
	// publication.
	MetaTTL time.Duration `yaml:"meta_ttl"`
	// MaxLimit caps how many publications one history call returns.
	MaxLimit int `yaml:"max_limit"`
}

// Namespace holds the options of every channel in one namespace.
type Namespace struct {
	// Name is the namespace: the part of a channel name before the first
	// ':'. "" is the default namespace.
	Name string `yaml:"name"`
	// HistorySize is how many publications each channel keeps for
	// history and recovery; 0 keeps none.
	HistorySize int `yaml:"history_size"`
	// HistoryTTL is how long publications stay in history; 0: no age limit.
	HistoryTTL time.Duration `yaml:"history_ttl"`
	// Presence lets clients ask who is subscribed.
	Presence bool `yaml:"presence"`
	// JoinLeave sends join and leave pushes to subscribers.
	JoinLeave bool `yaml:"join_leave"`
	// AllowPublish lets clients publish (the server API always may).
	AllowPublish bool `yaml:"allow_publish"`
	// AllowAnonymous lets clients without a user id subscribe.
	AllowAnonymous bool `yaml:"allow_anonymous"`
	// UserLimited makes channel NS:ID open to the connections of user ID
	// only ($user:42 is user 42's personal channel).
	UserLimited bool `yaml:"user_limited"`
	// RequireGrant makes subscribing require the channel to be listed in
	// the client's token.
	RequireGrant bool `yaml:"require_grant"`
}

// Broker selects how publications move between nodes.
type Broker struct {
	// Type is memory (one node), redis or nats.
	Type  string      `yaml:"type"`
	Redis RedisBroker `yaml:"redis"`
	NATS  NATSBroker  `yaml:"nats"`
}

// RedisBroker configures the Redis broker.
type RedisBroker struct {
	// Addrs lists host:port addresses: each one a shard (every node must
	// list the same ones), the seeds of a Redis Cluster (Cluster), or
	// Sentinels (SentinelMaster).
	Addrs []string `yaml:"addrs"`
	// Cluster selects Redis Cluster mode.
	Cluster bool `yaml:"cluster"`
	// SentinelMaster is the master name the Sentinels in Addrs monitor.
	SentinelMaster string `yaml:"sentinel_master"`
	Username       string `yaml:"username"`
	Password       string `yaml:"password"`
	DB             int    `yaml:"db"`
	// Prefix starts every key and pub/sub channel; herald clusters sharing
	// Redis servers need distinct prefixes.
	Prefix string `yaml:"prefix"`
}

// NATSBroker configures the NATS broker.
type NATSBroker struct {
	URL string `yaml:"url"`
	// Prefix starts every subject and the stream and bucket names; herald
	// clusters sharing a NATS deployment need distinct prefixes. Empty
	// means "herald". Letters, digits, '-' and '_' only.
	Prefix string `yaml:"prefix"`
}

// Demo configures the embedded demo app and its ticker.
type Demo struct {
	Enabled bool `yaml:"enabled"`
}

// Default returns the built-in configuration: a loopback listener, the
// memory broker, anonymous clients allowed, and DefaultNamespaces.
func Default() *Config {
	return &Config{
		Listen:              "127.0.0.1:8080",
		APIMaxBodySize:      1 << 20,
		APIMaxBatchCommands: 1000,
		AllowAnonymous:      true,
		Log:                 Log{Level: "info", Format: "text"},
		PingInterval:        25 * time.Second,
		PongTimeout:         10 * time.Second,
		ConnectTimeout:      10 * time.Second,
		MaxMessageSize:      64 << 10,
		MaxSubscriptions:    128,
		ClientQueue:         Queue{Bytes: 1 << 20, Messages: 1024, WriteDelay: 75 * time.Millisecond},
		Compression:         Compression{Enabled: false, Threshold: 256},
		History:             History{MetaTTL: 24 * time.Hour, MaxLimit: 1000},
		Namespaces:          DefaultNamespaces(),
		DrainTimeout:        5 * time.Second,
		ShutdownTimeout:     10 * time.Second,
		Broker:              Broker{Type: "memory", Redis: RedisBroker{Prefix: "herald"}},
		Demo:                Demo{Enabled: true},
		Memory:              Memory{ReleaseAfterBurst: 5 * time.Second},
	}
}

// DefaultNamespaces are the namespaces used when the file configures none:
// a permissive default namespace, chat (history, presence, join/leave),
// demo (read-only for clients; the demo ticker publishes there) and $user
// (personal channels: $user:42 is open to user 42 only).
func DefaultNamespaces() []Namespace {
	return []Namespace{
		{Name: "", AllowPublish: true, AllowAnonymous: true, Presence: true},
		{Name: "chat", HistorySize: 100, HistoryTTL: 10 * time.Minute, Presence: true, JoinLeave: true,
			AllowPublish: true, AllowAnonymous: true},
		{Name: "demo", HistorySize: 20, HistoryTTL: time.Minute, AllowAnonymous: true},
		{Name: "$user", HistorySize: 50, HistoryTTL: time.Hour, UserLimited: true},
	}
}

// Namespace returns the options of the namespace named name.
func (c *Config) Namespace(name string) (Namespace, bool) {
	for _, ns := range c.Namespaces {
		if ns.Name == name {
			return ns, true
		}
	}
	return Namespace{}, false
}

// Validate checks every option and returns the first problem found.
func (c *Config) Validate() error {
	if err := checkAddr("listen", c.Listen, false); err != nil {
		return err
	}
	if err := checkAddr("tcp_listen", c.TCPListen, true); err != nil {
		return err
	}
	if c.TCPListen != "" && c.TCPListen == c.Listen && !strings.HasSuffix(c.Listen, ":0") {
		// Port 0 picks a free port for each listener.
		return fmt.Errorf("tcp_listen: same address as listen (%s)", c.Listen)
	}
	if err := checkAddr("udp_listen", c.UDPListen, true); err != nil {
		return err
	}
	if err := checkAddr("debug.pprof_listen", c.Debug.PprofListen, true); err != nil {
		return err
	}
	if c.Debug.PprofListen != "" {
		if !IsLoopback(c.Debug.PprofListen) && !c.Insecure {
			return fmt.Errorf("debug.pprof_listen: %s is not a loopback address; profiles have no authentication "+
				"(use 127.0.0.1 and an SSH tunnel, or pass --insecure for a throwaway test setup)", c.Debug.PprofListen)
		}
		if !strings.HasSuffix(c.Debug.PprofListen, ":0") &&
			(c.Debug.PprofListen == c.Listen || c.Debug.PprofListen == c.TCPListen) {
			return fmt.Errorf("debug.pprof_listen: same address as another listener (%s)", c.Debug.PprofListen)
		}
	}
	if c.ListenBacklog < 0 || c.ListenBacklog > 1<<20 {
		return fmt.Errorf("listen_backlog: %d out of range 0..%d", c.ListenBacklog, 1<<20)
	}
	if c.APIKey != "" && len(c.APIKey) < 16 {
		return fmt.Errorf("api_key: too short (%d bytes, want at least 16)", len(c.APIKey))
	}
	if c.APIMaxBodySize < 1024 {
		return fmt.Errorf("api_max_body_size: %d below 1024", c.APIMaxBodySize)
	}
	if c.APIMaxBatchCommands < 1 || c.APIMaxBatchCommands > MaxAPIBatchCommands {
		return fmt.Errorf("api_max_batch_commands: %d out of range 1..%d", c.APIMaxBatchCommands, MaxAPIBatchCommands)
	}
	if c.Token.Secret != "" && len(c.Token.Secret) < 32 {
		return fmt.Errorf("token.secret: too short (%d bytes, want at least 32)", len(c.Token.Secret))
	}
	if (c.TLS.CertFile == "") != (c.TLS.KeyFile == "") {
		return fmt.Errorf("tls: cert_file and key_file must be set together")
	}
	for _, f := range []struct{ key, path string }{
		{"token.rsa_public_key_file", c.Token.RSAPublicKeyFile},
		{"token.ecdsa_public_key_file", c.Token.ECDSAPublicKeyFile},
		{"tls.cert_file", c.TLS.CertFile},
		{"tls.key_file", c.TLS.KeyFile},
	} {
		if f.path == "" {
			continue
		}
		if _, err := os.Stat(f.path); err != nil {
			return fmt.Errorf("%s: %w", f.key, err)
		}
	}
	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		return fmt.Errorf("log.level: %q is not one of debug, info, warn, error", c.Log.Level)
	}
	switch c.Log.Format {
	case "text", "json":
	default:
		return fmt.Errorf("log.format: %q is not one of text, json", c.Log.Format)
	}
	for _, d := range []struct {
		key string
		v   time.Duration
	}{
		{"ping_interval", c.PingInterval},
		{"pong_timeout", c.PongTimeout},
		{"connect_timeout", c.ConnectTimeout},
		{"history.meta_ttl", c.History.MetaTTL},
		{"shutdown_timeout", c.ShutdownTimeout},
	} {
		if d.v <= 0 {
			return fmt.Errorf("%s: must be positive, got %s", d.key, d.v)
		}
	}
	if c.PingInterval < time.Second {
		return fmt.Errorf("ping_interval: %s below 1s", c.PingInterval)
	}
	if c.DrainTimeout < 0 {
		return fmt.Errorf("drain_timeout: negative (%s)", c.DrainTimeout)
	}
	if c.DrainTimeout >= c.ShutdownTimeout {
		return fmt.Errorf("drain_timeout (%s) must be shorter than shutdown_timeout (%s)", c.DrainTimeout, c.ShutdownTimeout)
	}
	if c.MaxMessageSize < 128 || c.MaxMessageSize > 64<<20 {
		return fmt.Errorf("max_message_size: %d out of range 128..%d", c.MaxMessageSize, 64<<20)
	}
	if c.MaxSubscriptions < 1 {
		return fmt.Errorf("max_subscriptions: %d below 1", c.MaxSubscriptions)
	}
	if c.MaxConnectionsPerUser < 0 {
		return fmt.Errorf("max_connections_per_user: negative (%d)", c.MaxConnectionsPerUser)
	}
	if c.ClientQueue.Bytes < 1024 {
		return fmt.Errorf("client_queue.bytes: %d below 1024", c.ClientQueue.Bytes)
	}
	if c.ClientQueue.Messages < 1 {
		return fmt.Errorf("client_queue.messages: %d below 1", c.ClientQueue.Messages)
	}
	if d := c.ClientQueue.WriteDelay; d < 0 || d > MaxWriteDelay {
		return fmt.Errorf("client_queue.write_delay: %s out of range 0..%s", d, MaxWriteDelay)
	}
	if c.Memory.ReleaseAfterBurst < 0 {
		return fmt.Errorf("memory.release_after_burst: negative (%s)", c.Memory.ReleaseAfterBurst)
	}
	if c.Compression.Threshold < 1 {
		return fmt.Errorf("compression.threshold: %d below 1", c.Compression.Threshold)
	}
	if c.History.MaxLimit < 1 {
		return fmt.Errorf("history.max_limit: %d below 1", c.History.MaxLimit)
	}
	seen := make(map[string]bool, len(c.Namespaces))
	for i, ns := range c.Namespaces {
		if err := checkNamespaceName(ns.Name); err != nil {
			return fmt.Errorf("namespaces[%d]: %w", i, err)
		}
		if seen[ns.Name] {
			return fmt.Errorf("namespaces[%d]: duplicate namespace %q", i, ns.Name)
		}
		seen[ns.Name] = true
		if ns.HistorySize < 0 || ns.HistorySize > 1<<20 {
			return fmt.Errorf("namespaces[%d] (%q): history_size %d out of range 0..%d", i, ns.Name, ns.HistorySize, 1<<20)
		}
		if ns.HistoryTTL < 0 {
			return fmt.Errorf("namespaces[%d] (%q): history_ttl negative", i, ns.Name)
		}
		if ns.HistoryTTL > 0 && ns.HistorySize == 0 {
			return fmt.Errorf("namespaces[%d] (%q): history_ttl set but history_size is 0", i, ns.Name)
		}
		if ns.JoinLeave && !ns.Presence {
			return fmt.Errorf("namespaces[%d] (%q): join_leave needs presence", i, ns.Name)
		}
	}
	switch c.Broker.Type {
	case "memory":
	case "redis":
		if len(c.Broker.Redis.Addrs) == 0 {
			return fmt.Errorf("broker.redis.addrs: required with broker.type redis")
		}
		for _, a := range c.Broker.Redis.Addrs {
			if _, _, err := net.SplitHostPort(a); err != nil {
				return fmt.Errorf("broker.redis.addrs: %w", err)
			}
		}
		if c.Broker.Redis.Cluster && c.Broker.Redis.SentinelMaster != "" {
			return fmt.Errorf("broker.redis: cluster and sentinel_master are exclusive")
		}
		if strings.ContainsAny(c.Broker.Redis.Prefix, "{}") {
			return fmt.Errorf("broker.redis.prefix: %q must not contain braces", c.Broker.Redis.Prefix)
		}
	case "nats":
		if c.Broker.NATS.URL == "" {
			return fmt.Errorf("broker.nats.url: required with broker.type nats")
		}
		if p := c.Broker.NATS.Prefix; strings.TrimLeft(p, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_") != "" {
			return fmt.Errorf("broker.nats.prefix: %q: only letters, digits, '-' and '_' are allowed", p)
		}
	default:
		return fmt.Errorf("broker.type: %q is not one of memory, redis, nats", c.Broker.Type)
	}
	return nil
}

func checkAddr(key, addr string, optional bool) error {
	if addr == "" {
		if optional {
			return nil
		}
		return fmt.Errorf("%s: required", key)
	}
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("%s: %w", key, err)
	}
	if port == "" {
		return fmt.Errorf("%s: %q has no port", key, addr)
	}
	return nil
}

// checkNamespaceName accepts "" and printable ASCII names without ':',
// '#' or spaces (the characters that structure a channel name).
func checkNamespaceName(name string) error {
	if len(name) > 64 {
		return fmt.Errorf("namespace name longer than 64 bytes")
	}
	for i := 0; i < len(name); i++ {
		b := name[i]
		if b <= ' ' || b >= 0x7f || b == ':' || b == '#' {
			return fmt.Errorf("namespace name %q: byte %q not allowed", name, b)
		}
	}
	return nil
}

// IsLoopback reports whether addr (host:port) can only be reached from
// this machine. An empty host or an unspecified address (0.0.0.0, ::)
// listens on every interface and is not loopback; "localhost" is.
func IsLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil || host == "" {
		return false
	}
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return false
	}
	return ip.IsLoopback()
}

// Exposed reports whether any listener of c is reachable from other
// machines, which is when herald insists on an API key and a token key.
func (c *Config) Exposed() bool {
	if !IsLoopback(c.Listen) {
		return true
	}
	if c.TCPListen != "" && !IsLoopback(c.TCPListen) {
		return true
	}
	return c.UDPListen != "" && !IsLoopback(c.UDPListen)
}

// CheckExposure refuses a configuration that exposes a listener on a
// non-loopback address without an API key and a token key, unless
// Insecure is set: such a node would print freshly generated keys and let
// anyone who can reach it act as the backend.
func (c *Config) CheckExposure() error {
	if !c.Exposed() || c.Insecure {
		return nil
	}
	var missing []string
	if c.APIKey == "" {
		missing = append(missing, "api_key (HERALD_API_KEY)")
	}
	if !c.HasTokenKey() {
		missing = append(missing, "a token key (token.secret / HERALD_TOKEN_SECRET, or a public key file)")
	}
	if len(missing) == 0 {
		return nil
	}
	var addrs []string
	for _, l := range []struct{ key, addr string }{
		{"listen", c.Listen}, {"tcp_listen", c.TCPListen}, {"udp_listen", c.UDPListen},
	} {
		if l.addr != "" && !IsLoopback(l.addr) {
			addrs = append(addrs, l.key+" "+l.addr)
		}
	}
	return fmt.Errorf("refusing to listen on a non-loopback address (%s) without %s; "+
		"configure them, or pass --insecure for a throwaway test setup",
		strings.Join(addrs, ", "), strings.Join(missing, " and "))
}

// HasTokenKey reports whether any token verification key is configured.
func (c *Config) HasTokenKey() bool {
	return c.Token.Secret != "" || c.Token.RSAPublicKeyFile != "" || c.Token.ECDSAPublicKeyFile != ""
}

// Redacted returns a copy of c with secrets replaced by "<redacted>" (or
// left empty when unset) so it can be printed or logged.
func (c *Config) Redacted() *Config {
	r := *c
	r.AllowedOrigins = append([]string(nil), c.AllowedOrigins...)
	r.Namespaces = append([]Namespace(nil), c.Namespaces...)
	r.Broker.Redis.Addrs = append([]string(nil), c.Broker.Redis.Addrs...)
	redact := func(s *string) {
		if *s != "" {
			*s = "<redacted>"
		}
	}
	redact(&r.APIKey)
	redact(&r.Token.Secret)
	redact(&r.Broker.Redis.Password)
	if u, err := url.Parse(r.Broker.NATS.URL); err == nil && u.User != nil {
		if _, ok := u.User.Password(); ok {
			u.User = url.UserPassword(u.User.Username(), "redacted")
			r.Broker.NATS.URL = u.String()
		}
	}
	return &r
}

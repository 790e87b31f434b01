package config

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

func writeFile(t *testing.T, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "herald.yaml")
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestDefaultIsValid(t *testing.T) {
	c := Default()
	if err := c.Validate(); err != nil {
		t.Fatalf("default config invalid: %v", err)
	}
	if c.Listen != "127.0.0.1:8080" || !c.AllowAnonymous || !c.Demo.Enabled || c.Broker.Type != "memory" {
		t.Fatalf("unexpected defaults: %+v", c)
	}
	for _, name := range []string{"", "chat", "demo", "$user"} {
		if _, ok := c.Namespace(name); !ok {
			t.Errorf("default namespace %q missing", name)
		}
	}
	chat, _ := c.Namespace("chat")
	if chat.HistorySize == 0 || !chat.Presence || !chat.JoinLeave {
		t.Errorf("chat namespace lacks history/presence/join_leave: %+v", chat)
	}
	user, _ := c.Namespace("$user")
	if !user.UserLimited || user.AllowAnonymous {
		t.Errorf("$user namespace must be user-limited and not anonymous: %+v", user)
	}
}

func TestPrecedence(t *testing.T) {
	file := writeFile(t, `
listen: 127.0.0.1:9001
ping_interval: 30s
log:
  level: debug
tcp_listen: 127.0.0.1:7001
`)
	env := []string{
		"HERALD_LISTEN=127.0.0.1:9002",
		"HERALD_LOG_LEVEL=warn",
		"HERALD_ALLOWED_ORIGINS=a.example, b.example",
		"PATH=/bin",
	}
	flags := []Setting{{Key: "listen", Value: "127.0.0.1:9003"}}
	c, err := Load(LoadOptions{File: file, Environ: env, Flags: flags})
	if err != nil {
		t.Fatal(err)
	}
	checks := []struct {
		name      string
		got, want any
	}{
		{"listen: flag beats env and file", c.Listen, "127.0.0.1:9003"},
		{"log.level: env beats file", c.Log.Level, "warn"},
		{"ping_interval: file beats default", c.PingInterval, 30 * time.Second},
		{"tcp_listen: file", c.TCPListen, "127.0.0.1:7001"},
		{"pong_timeout: default", c.PongTimeout, 10 * time.Second},
		{"log.format: default kept next to file's log.level", c.Log.Format, "text"},
		{"allowed_origins: env list", c.AllowedOrigins, []string{"a.example", "b.example"}},
	}
	for _, ch := range checks {
		if !reflect.DeepEqual(ch.got, ch.want) {
			t.Errorf("%s: got %v, want %v", ch.name, ch.got, ch.want)
		}
	}

	// Without the flag, env wins over the file.
	c, err = Load(LoadOptions{File: file, Environ: env})
	if err != nil {
		t.Fatal(err)
	}
	if c.Listen != "127.0.0.1:9002" {
		t.Errorf("listen without flag: got %s, want env value", c.Listen)
	}
	// Without env, the file wins over the default.
	c, err = Load(LoadOptions{File: file})
	if err != nil {
		t.Fatal(err)
	}
	if c.Listen != "127.0.0.1:9001" {
		t.Errorf("listen from file: got %s", c.Listen)
	}
}

func TestUnknownKeyNamesLine(t *testing.T) {
	file := writeFile(t, "listen: 127.0.0.1:1\n\ntoken:\n  secrett: x\n")
	_, err := Load(LoadOptions{File: file})
	if err == nil {
		t.Fatal("unknown key accepted")
	}
	for _, want := range []string{file, "line 4", `unknown key "secrett"`} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
}

func TestParseErrors(t *testing.T) {
	cases := map[string]string{
		"bad duration":      "ping_interval: 25\n",
		"not a map":         "- a\n",
		"two documents":     "listen: 127.0.0.1:1\n---\nlisten: 127.0.0.1:2\n",
		"namespace typo":    "namespaces:\n  - name: x\n    histroy_size: 3\n",
		"wrong type":        "allow_anonymous: maybe\n",
		"unknown top-level": "lissen: 1\n",
	}
	for name, doc := range cases {
		if err := Parse([]byte(doc), Default()); err == nil {
			t.Errorf("%s: accepted %q", name, doc)
		}
	}
	if err := Parse(nil, Default()); err != nil {
		t.Errorf("empty document: %v", err)
	}
}

func TestFileNamespacesReplaceDefaults(t *testing.T) {
	file := writeFile(t, `
namespaces:
  - name: news
    history_size: 10
    history_ttl: 1h
`)
	c, err := Load(LoadOptions{File: file})
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Namespaces) != 1 || c.Namespaces[0].Name != "news" || c.Namespaces[0].HistoryTTL != time.Hour {
		t.Fatalf("namespaces = %+v", c.Namespaces)
	}
	if _, ok := c.Namespace(""); ok {
		t.Error("default namespace kept although the file lists namespaces")
	}
}

func TestValidate(t *testing.T) {
	cases := map[string]func(c *Config){
		"empty listen":          func(c *Config) { c.Listen = "" },
		"listen without port":   func(c *Config) { c.Listen = "127.0.0.1" },
		"bad tcp_listen":        func(c *Config) { c.TCPListen = "nope" },
		"same tcp and http":     func(c *Config) { c.TCPListen = c.Listen },
		"negative backlog":      func(c *Config) { c.ListenBacklog = -1 },
		"short api key":         func(c *Config) { c.APIKey = "short" },
		"zero batch commands":   func(c *Config) { c.APIMaxBatchCommands = 0 },
		"huge batch commands":   func(c *Config) { c.APIMaxBatchCommands = MaxAPIBatchCommands + 1 },
		"short secret":          func(c *Config) { c.Token.Secret = "short" },
		"missing key file":      func(c *Config) { c.Token.RSAPublicKeyFile = "/nonexistent/key.pem" },
		"log level":             func(c *Config) { c.Log.Level = "loud" },
		"log format":            func(c *Config) { c.Log.Format = "xml" },
		"zero ping":             func(c *Config) { c.PingInterval = 0 },
		"tiny ping":             func(c *Config) { c.PingInterval = time.Millisecond },
		"zero pong":             func(c *Config) { c.PongTimeout = 0 },
		"drain beyond shutdown": func(c *Config) { c.DrainTimeout = c.ShutdownTimeout },
		"tiny message size":     func(c *Config) { c.MaxMessageSize = 1 },
		"tiny queue":            func(c *Config) { c.ClientQueue.Bytes = 1 },
		"zero queue messages":   func(c *Config) { c.ClientQueue.Messages = 0 },
		"negative write delay":  func(c *Config) { c.ClientQueue.WriteDelay = -time.Millisecond },
		"huge write delay":      func(c *Config) { c.ClientQueue.WriteDelay = MaxWriteDelay + time.Millisecond },
		"negative threshold":    func(c *Config) { c.Compression.Threshold = -1 },
		"negative release":      func(c *Config) { c.Memory.ReleaseAfterBurst = -time.Second },
		"zero max limit":        func(c *Config) { c.History.MaxLimit = 0 },
		"duplicate namespace":   func(c *Config) { c.Namespaces = append(c.Namespaces, Namespace{Name: "chat"}) },
		"namespace with colon":  func(c *Config) { c.Namespaces = append(c.Namespaces, Namespace{Name: "a:b"}) },
		"ttl without size":      func(c *Config) { c.Namespaces = []Namespace{{Name: "x", HistoryTTL: time.Second}} },
		"join_leave without presence": func(c *Config) {
			c.Namespaces = []Namespace{{Name: "x", JoinLeave: true}}
		},
		"unknown broker": func(c *Config) { c.Broker.Type = "kafka" },
		"redis without addrs": func(c *Config) {
			c.Broker.Type = "redis"
		},
		"nats without url": func(c *Config) { c.Broker.Type = "nats" },
	}
	for name, mutate := range cases {
		c := Default()
		mutate(c)
		if err := c.Validate(); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestEnvErrors(t *testing.T) {
	for _, kv := range []string{
		"HERALD_PING_INTERVAL=soon",
		"HERALD_INSECURE=perhaps",
		"HERALD_LISTEN_BACKLOG=many",
	} {
		_, err := Load(LoadOptions{Environ: []string{kv}})
		name, _, _ := strings.Cut(kv, "=")
		if err == nil || !strings.Contains(err.Error(), name) {
			t.Errorf("%s: error %v does not name the variable", kv, err)
		}
	}
	if _, err := Load(LoadOptions{Flags: []Setting{{Key: "nope", Value: "1"}}}); err == nil {
		t.Error("unknown flag key accepted")
	}
}

func TestUnknownEnv(t *testing.T) {
	got := UnknownEnv([]string{"HERALD_LISTEN=x", "HERALD_LISTN=y", "HOME=/", "HERALD_URL=z"})
	want := []string{"HERALD_LISTN", "HERALD_URL"}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("UnknownEnv = %v, want %v", got, want)
	}
}

func TestKeysNames(t *testing.T) {
	want := map[string]Key{
		"token.secret":       {Env: "HERALD_TOKEN_SECRET", Flag: "token-secret", Kind: KindString},
		"tcp_listen":         {Env: "HERALD_TCP_LISTEN", Flag: "tcp-listen", Kind: KindString},
		"api_key":            {Env: "HERALD_API_KEY", Flag: "api-key", Kind: KindString},
		"ping_interval":      {Env: "HERALD_PING_INTERVAL", Flag: "ping-interval", Kind: KindDuration},
		"broker.redis.addrs": {Env: "HERALD_BROKER_REDIS_ADDRS", Flag: "broker-redis-addrs", Kind: KindList},
		"demo.enabled":       {Env: "HERALD_DEMO_ENABLED", Flag: "demo-enabled", Kind: KindBool},
		"tls.cert_file":      {Env: "HERALD_TLS_CERT_FILE", Flag: "tls-cert-file", Kind: KindString},
		"tls.key_file":       {Env: "HERALD_TLS_KEY_FILE", Flag: "tls-key-file", Kind: KindString},
		"tls.plain_tcp":      {Env: "HERALD_TLS_PLAIN_TCP", Flag: "tls-plain-tcp", Kind: KindBool},
	}
	found := 0
	for _, k := range Keys() {
		w, ok := want[k.Name]
		if !ok {
			continue
		}
		found++
		if k.Env != w.Env || k.Flag != w.Flag || k.Kind != w.Kind {
			t.Errorf("%s: got env %s flag %s kind %s", k.Name, k.Env, k.Flag, k.Kind)
		}
	}
	if found != len(want) {
		t.Errorf("found %d of %d expected keys", found, len(want))
	}
}

// TestTLSValidation: the certificate and key come as a pair of existing
// files, and the environment sets them like every other option.
func TestTLSValidation(t *testing.T) {
	dir := t.TempDir()
	cert, key := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	for _, f := range []string{cert, key} {
		if err := os.WriteFile(f, []byte("pem"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	c, err := Load(LoadOptions{Environ: []string{"HERALD_TLS_CERT_FILE=" + cert, "HERALD_TLS_KEY_FILE=" + key}})
	if err != nil {
		t.Fatal(err)
	}
	if !c.TLS.Enabled() || c.TLS.CertFile != cert || c.TLS.KeyFile != key || c.TLS.PlainTCP {
		t.Fatalf("tls from environment: %+v", c.TLS)
	}
	for _, tc := range []struct {
		name      string
		tls       TLS
		wantError string
	}{
		{"cert without key", TLS{CertFile: cert}, "must be set together"},
		{"key without cert", TLS{KeyFile: key}, "must be set together"},
		{"missing cert", TLS{CertFile: filepath.Join(dir, "nope.pem"), KeyFile: key}, "tls.cert_file"},
		{"missing key", TLS{CertFile: cert, KeyFile: filepath.Join(dir, "nope.pem")}, "tls.key_file"},
	} {
		c := Default()
		c.TLS = tc.tls
		if err := c.Validate(); err == nil || !strings.Contains(err.Error(), tc.wantError) {
			t.Errorf("%s: error %v, want one containing %q", tc.name, err, tc.wantError)
		}
	}
	if c := Default(); c.TLS.Enabled() {
		t.Error("TLS enabled by default")
	}
}

func TestIsLoopback(t *testing.T) {
	cases := map[string]bool{
		"127.0.0.1:8080": true,
		"[::1]:8080":     true,
		"localhost:80":   true,
		"127.1.2.3:1":    true,
		"0.0.0.0:8080":   false,
		":8080":          false,
		"[::]:8080":      false,
		"10.0.0.1:8080":  false,
		"example.com:80": false,
		"garbage":        false,
	}
	for addr, want := range cases {
		if got := IsLoopback(addr); got != want {
			t.Errorf("IsLoopback(%q) = %v, want %v", addr, got, want)
		}
	}
	c := Default()
	if c.Exposed() || c.CheckExposure() != nil {
		t.Error("default configuration reported as exposed")
	}
	c.TCPListen = "0.0.0.0:9000"
	if !c.Exposed() {
		t.Error("non-loopback tcp_listen not reported as exposed")
	}
	c = Default()
	c.UDPListen = "[::]:9001"
	err := c.CheckExposure()
	if err == nil || !strings.Contains(err.Error(), "udp_listen [::]:9001") {
		t.Errorf("non-loopback udp_listen without keys: %v", err)
	}
	c.APIKey = "0123456789abcdef0123"
	c.Token.RSAPublicKeyFile = "/some/key.pem"
	if err := c.CheckExposure(); err != nil {
		t.Errorf("with keys: %v", err)
	}
	c.APIKey = ""
	c.Insecure = true
	if err := c.CheckExposure(); err != nil {
		t.Errorf("insecure: %v", err)
	}
}

func TestRedactedAndYAMLRoundTrip(t *testing.T) {
	c := Default()
	c.APIKey = "0123456789abcdef0123"
	c.Token.Secret = strings.Repeat("s", 40)
	c.Broker.Redis.Password = "redispw"
	c.Broker.NATS.URL = "nats://u:natspw@127.0.0.1:4222"
	r := c.Redacted()
	out, err := r.YAML()
	if err != nil {
		t.Fatal(err)
	}
	for _, secret := range []string{c.APIKey, c.Token.Secret, "redispw", "natspw"} {
		if strings.Contains(string(out), secret) {
			t.Errorf("redacted YAML leaks %q:\n%s", secret, out)
		}
	}
	if c.APIKey == r.APIKey {
		t.Error("Redacted modified nothing")
	}
	if c.APIKey != "0123456789abcdef0123" {
		t.Error("Redacted modified the original")
	}
	// The rendered YAML of a valid config parses back to the same config.
	out, err = c.YAML()
	if err != nil {
		t.Fatal(err)
	}
	back := &Config{}
	if err := Parse(out, back); err != nil {
		t.Fatalf("re-parse: %v\n%s", err, out)
	}
	again, err := back.YAML()
	if err != nil {
		t.Fatal(err)
	}
	if string(again) != string(out) {
		t.Errorf("round trip differs:\n%s\n---\n%s", out, again)
	}
}

// TestEveryOptionDocumented keeps docs/configuration.md complete: every
// key path (and every namespace option) must appear there in backquotes.
func TestEveryOptionDocumented(t *testing.T) {
	doc, err := os.ReadFile(filepath.Join("..", "..", "docs", "configuration.md"))
	if err != nil {
		t.Fatal(err)
	}
	text := string(doc)
	var names []string
	for _, k := range Keys() {
		names = append(names, k.Name, k.Env)
	}
	nt := reflect.TypeFor[Namespace]()
	for i := 0; i < nt.NumField(); i++ {
		names = append(names, "namespaces[]."+nt.Field(i).Tag.Get("yaml"))
	}
	names = append(names, "namespaces")
	for _, n := range names {
		if !strings.Contains(text, "`"+n+"`") {
			t.Errorf("docs/configuration.md does not document `%s`", n)
		}
	}
}

func TestDebugPprofListen(t *testing.T) {
	for _, tc := range []struct {
		addr     string
		insecure bool
		ok       bool
	}{
		{"", false, true},
		{"127.0.0.1:6060", false, true},
		{"localhost:6060", false, true},
		{"[::1]:6060", false, true},
		{"0.0.0.0:6060", false, false},
		{":6060", false, false},
		{"10.0.0.5:6060", true, true},
		{"127.0.0.1", false, false},      // no port
		{"127.0.0.1:8080", false, false}, // the main listener's address
		{"127.0.0.1:0", false, true},     // port 0 never collides
	} {
		c := Default()
		c.Debug.PprofListen = tc.addr
		c.Insecure = tc.insecure
		err := c.Validate()
		if (err == nil) != tc.ok {
			t.Errorf("pprof_listen %q insecure %v: %v", tc.addr, tc.insecure, err)
		}
		if err != nil && !strings.Contains(err.Error(), "debug.pprof_listen") {
			t.Errorf("error does not name the option: %v", err)
		}
	}
}

func TestDevModeTCPListen(t *testing.T) {
	cases := []struct {
		name string
		opts LoadOptions
		want string
	}{
		{"embedded defaults", LoadOptions{}, DevTCPListen},
		{"listen moved", LoadOptions{Flags: []Setting{{Key: "listen", Value: "127.0.0.1:0"}}}, ""},
		{"flag turns it off", LoadOptions{Flags: []Setting{{Key: "tcp_listen", Value: ""}}}, ""},
		{"env turns it off", LoadOptions{Environ: []string{"HERALD_TCP_LISTEN="}}, ""},
		{"env moves it", LoadOptions{Environ: []string{"HERALD_TCP_LISTEN=127.0.0.1:9191"}}, "127.0.0.1:9191"},
		{"flag moves it", LoadOptions{Flags: []Setting{{Key: "tcp_listen", Value: "127.0.0.1:9192"}}}, "127.0.0.1:9192"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Load(tc.opts)
			if err != nil {
				t.Fatal(err)
			}
			if c.TCPListen != tc.want {
				t.Fatalf("tcp_listen = %q, want %q", c.TCPListen, tc.want)
			}
		})
	}
	c, err := Load(LoadOptions{File: writeFile(t, "listen: 127.0.0.1:8080\n")})
	if err != nil {
		t.Fatal(err)
	}
	if c.TCPListen != "" {
		t.Fatalf("with a configuration file tcp_listen = %q, want it off unless configured", c.TCPListen)
	}
}

func TestMemoryReleaseAfterBurst(t *testing.T) {
	if d := Default().Memory.ReleaseAfterBurst; d != 5*time.Second {
		t.Fatalf("default memory.release_after_burst %s, want 5s", d)
	}
	for _, tc := range []struct {
		opts LoadOptions
		want time.Duration
	}{
		{LoadOptions{Environ: []string{"HERALD_MEMORY_RELEASE_AFTER_BURST=0s"}}, 0},
		{LoadOptions{Flags: []Setting{{Key: "memory.release_after_burst", Value: "30s"}}}, 30 * time.Second},
	} {
		c, err := Load(tc.opts)
		if err != nil {
			t.Fatalf("%+v: %v", tc.opts, err)
		}
		if c.Memory.ReleaseAfterBurst != tc.want {
			t.Errorf("%+v: release_after_burst %s, want %s", tc.opts, c.Memory.ReleaseAfterBurst, tc.want)
		}
	}
	_, err := Load(LoadOptions{Environ: []string{"HERALD_MEMORY_RELEASE_AFTER_BURST=-1s"}})
	if err == nil || !strings.Contains(err.Error(), "memory.release_after_burst") {
		t.Fatalf("-1s accepted or badly reported: %v", err)
	}
}

func TestClientQueueWriteDelay(t *testing.T) {
	if d := Default().ClientQueue.WriteDelay; d <= 0 || d > MaxWriteDelay {
		t.Fatalf("default client_queue.write_delay %s", d)
	}
	for _, tc := range []struct {
		opts LoadOptions
		want time.Duration
	}{
		{LoadOptions{Environ: []string{"HERALD_CLIENT_QUEUE_WRITE_DELAY=0s"}}, 0},
		{LoadOptions{Environ: []string{"HERALD_CLIENT_QUEUE_WRITE_DELAY=25ms"}}, 25 * time.Millisecond},
		{LoadOptions{Flags: []Setting{{Key: "client_queue.write_delay", Value: "250ms"}}}, MaxWriteDelay},
	} {
		c, err := Load(tc.opts)
		if err != nil {
			t.Fatalf("%+v: %v", tc.opts, err)
		}
		if c.ClientQueue.WriteDelay != tc.want {
			t.Errorf("%+v: write_delay %s, want %s", tc.opts, c.ClientQueue.WriteDelay, tc.want)
		}
	}
	_, err := Load(LoadOptions{Environ: []string{"HERALD_CLIENT_QUEUE_WRITE_DELAY=1s"}})
	if err == nil || !strings.Contains(err.Error(), "client_queue.write_delay") {
		t.Fatalf("1s accepted or badly reported: %v", err)
	}
}

package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// MaxFileSize bounds a configuration file; larger files are refused before
// they are read into memory.
const MaxFileSize = 1 << 20

// EnvPrefix starts the name of every environment variable herald reads.
const EnvPrefix = "HERALD_"

// LoadOptions name the sources Load merges.
type LoadOptions struct {
	// File is the YAML file to read; "" reads none.
	File string
	// Environ is the environment as os.Environ returns it; nil reads none.
	Environ []string
	// Flags are settings from the command line, applied last in order.
	Flags []Setting
}

// Setting assigns Value to the option Key (a key path such as
// "token.secret").
type Setting struct {
	Key   string
	Value string
}

// DevTCPListen is where the TCP transport listens in development mode.
const DevTCPListen = "127.0.0.1:8081"

// devMode reports whether herald runs on its embedded defaults: no file,
// listen left at its default and tcp_listen given nowhere. Then the TCP
// transport listens on DevTCPListen next to the HTTP listener; any explicit
// tcp_listen (an empty one turns it off), or a moved listen address, leaves
// tcp_listen as configured, so several nodes or test servers on one machine
// never contend for the fixed port.
func devMode(c *Config, opts LoadOptions) bool {
	if opts.File != "" || c.Listen != Default().Listen {
		return false
	}
	for _, kv := range opts.Environ {
		if name, _, _ := strings.Cut(kv, "="); name == EnvPrefix+"TCP_LISTEN" {
			return false
		}
	}
	for _, s := range opts.Flags {
		if s.Key == "tcp_listen" {
			return false
		}
	}
	return true
}

// Load merges defaults, the file, the environment and the flags, in that
// order of increasing precedence, and validates the result.
func Load(opts LoadOptions) (*Config, error) {
	c := Default()
	if opts.File != "" {
		data, err := readFile(opts.File)
		if err != nil {
			return nil, err
		}
		if err := Parse(data, c); err != nil {
			return nil, fmt.Errorf("%s: %w", opts.File, err)
		}
	}
	if err := applyEnv(c, opts.Environ); err != nil {
		return nil, err
	}
	for _, s := range opts.Flags {
		if err := Set(c, s.Key, s.Value); err != nil {
			return nil, fmt.Errorf("flag --%s: %w", flagName(s.Key), err)
		}
	}
	if devMode(c, opts) {
		c.TCPListen = DevTCPListen
	}
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return c, nil
}

func readFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("config file: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("config file: %w", err)
	}
	if fi.Size() > MaxFileSize {
		return nil, fmt.Errorf("config file %s: %d bytes, larger than %d", path, fi.Size(), MaxFileSize)
	}
	data, err := io.ReadAll(io.LimitReader(f, MaxFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("config file %s: %w", path, err)
	}
	if len(data) > MaxFileSize {
		return nil, fmt.Errorf("config file %s: larger than %d bytes", path, MaxFileSize)
	}
	return data, nil
}

var unknownFieldRE = regexp.MustCompile(`^line (\d+): field (\S+) not found in type \S+$`)

// Parse decodes one YAML document from data over c: keys present in data
// replace c's values, others are kept. Unknown keys are an error naming
// their line. Parse does not validate.
func Parse(data []byte, c *Config) error {
	if len(data) > MaxFileSize {
		return fmt.Errorf("larger than %d bytes", MaxFileSize)
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	err := dec.Decode(c)
	if errors.Is(err, io.EOF) {
		return nil // empty document
	}
	if err != nil {
		var te *yaml.TypeError
		if errors.As(err, &te) {
			msgs := make([]string, len(te.Errors))
			for i, e := range te.Errors {
				if m := unknownFieldRE.FindStringSubmatch(e); m != nil {
					msgs[i] = fmt.Sprintf("line %s: unknown key %q", m[1], m[2])
				} else {
					msgs[i] = e
				}
			}
			return errors.New(strings.Join(msgs, "; "))
		}
		return err
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return fmt.Errorf("line %d: more than one YAML document", extra.Line)
	}
	return nil
}

// Kind is the type of a scalar option as the environment and flags spell
// it.
type Kind string

// Option kinds.
const (
	KindString   Kind = "string"
	KindBool     Kind = "bool"
	KindInt      Kind = "int"
	KindDuration Kind = "duration"
	KindList     Kind = "list" // comma-separated strings
)

// Key describes one scalar option.
type Key struct {
	Name string // key path in the file: "token.secret"
	Env  string // environment variable: "HERALD_TOKEN_SECRET"
	Flag string // flag name without dashes: "token-secret"
	Kind Kind

	index []int // reflect field path from Config
}

var (
	durationType = reflect.TypeFor[time.Duration]()
	keys         = collectKeys(reflect.TypeFor[Config](), "", nil)
)

func collectKeys(t reflect.Type, prefix string, index []int) []Key {
	var out []Key
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		tag := strings.Split(f.Tag.Get("yaml"), ",")[0]
		if tag == "" || tag == "-" {
			continue
		}
		name := prefix + tag
		idx := append(append([]int(nil), index...), i)
		var kind Kind
		switch {
		case f.Type == durationType:
			kind = KindDuration
		case f.Type.Kind() == reflect.String:
			kind = KindString
		case f.Type.Kind() == reflect.Bool:
			kind = KindBool
		case f.Type.Kind() == reflect.Int || f.Type.Kind() == reflect.Int64:
			kind = KindInt
		case f.Type.Kind() == reflect.Slice && f.Type.Elem().Kind() == reflect.String:
			kind = KindList
		case f.Type.Kind() == reflect.Struct:
			out = append(out, collectKeys(f.Type, name+".", idx)...)
			continue
		default:
			continue // namespaces: file only
		}
		out = append(out, Key{
			Name:  name,
			Env:   EnvPrefix + strings.ToUpper(strings.ReplaceAll(name, ".", "_")),
			Flag:  flagName(name),
			Kind:  kind,
			index: idx,
		})
	}
	return out
}

func flagName(key string) string {
	return strings.NewReplacer(".", "-", "_", "-").Replace(key)
}

// Keys lists every option that the environment and flags can set, in the
// order of the Config struct.
func Keys() []Key {
	return append([]Key(nil), keys...)
}

func lookupKey(name string) (Key, bool) {
	for _, k := range keys {
		if k.Name == name {
			return k, true
		}
	}
	return Key{}, false
}

// Set parses value for the option named key and stores it in c.
func Set(c *Config, key, value string) error {
	k, ok := lookupKey(key)
	if !ok {
		return fmt.Errorf("unknown option %q", key)
	}
	v := reflect.ValueOf(c).Elem().FieldByIndex(k.index)
	switch k.Kind {
	case KindString:
		v.SetString(value)
	case KindBool:
		b, err := strconv.ParseBool(value)
		if err != nil {
			return fmt.Errorf("%s: %q is not a boolean", key, value)
		}
		v.SetBool(b)
	case KindInt:
		n, err := strconv.ParseInt(strings.TrimSpace(value), 10, v.Type().Bits())
		if err != nil {
			return fmt.Errorf("%s: %q is not an integer", key, value)
		}
		v.SetInt(n)
	case KindDuration:
		d, err := time.ParseDuration(strings.TrimSpace(value))
		if err != nil {
			return fmt.Errorf("%s: %w", key, err)
		}
		v.SetInt(int64(d))
	case KindList:
		var list []string
		for _, s := range strings.Split(value, ",") {
			if s = strings.TrimSpace(s); s != "" {
				list = append(list, s)
			}
		}
		v.Set(reflect.ValueOf(list))
	}
	return nil
}

func applyEnv(c *Config, environ []string) error {
	env := make(map[string]string, len(environ))
	for _, kv := range environ {
		if name, value, ok := strings.Cut(kv, "="); ok && strings.HasPrefix(name, EnvPrefix) {
			env[name] = value
		}
	}
	for _, k := range keys {
		value, ok := env[k.Env]
		if !ok {
			continue
		}
		if err := Set(c, k.Name, value); err != nil {
			return fmt.Errorf("environment %s: %w", k.Env, err)
		}
	}
	return nil
}

// UnknownEnv returns the HERALD_* variables in environ that name no
// option, sorted, so a misspelt variable can be reported instead of being
// silently ignored. Variables read by other commands (HERALD_URL for
// example) show up here too, so callers warn rather than fail.
func UnknownEnv(environ []string) []string {
	known := make(map[string]bool, len(keys))
	for _, k := range keys {
		known[k.Env] = true
	}
	var out []string
	for _, kv := range environ {
		name, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(name, EnvPrefix) && !known[name] {
			out = append(out, name)
		}
	}
	sort.Strings(out)
	return out
}

// YAML returns c as a YAML document with every key, in the format Parse
// reads; `herald config check` prints it (after Redacted).
func (c *Config) YAML() ([]byte, error) {
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(c); err != nil {
		return nil, fmt.Errorf("encode config: %w", err)
	}
	if err := enc.Close(); err != nil {
		return nil, fmt.Errorf("encode config: %w", err)
	}
	return buf.Bytes(), nil
}

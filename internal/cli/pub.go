package cli

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"
)

// maxPubLine bounds one line read from stdin by `herald pub CHANNEL -`.
const maxPubLine = 16 << 20

// pub implements `herald pub`: it publishes through the server API, one
// message from the command line or one per line of stdin.
func pub(ctx context.Context, env Env, args []string) error {
	fs := newFlagSet("pub", env.Stderr)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), "Usage: herald pub [--url http://127.0.0.1:8080] [--api-key K] [--quiet] CHANNEL DATA\n\n"+
			"Publishes DATA (one JSON value) to CHANNEL through the server API and prints its offset.\n"+
			"With DATA \"-\", publishes each non-empty line of stdin as one message, in order.\n\nFlags:\n")
		fs.PrintDefaults()
	}
	base := fs.String("url", "", "server `URL`; default from "+envURL+" or http://127.0.0.1:8080")
	key := fs.String("api-key", "", "server API key (env "+envAPIKey+")")
	quiet := fs.Bool("quiet", false, "print nothing on success")
	timeout := fs.Duration("timeout", 10*time.Second, "limit for each request")
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 2 {
		return fmt.Errorf("%w: pub: want CHANNEL and DATA, got %d arguments", errUsage, len(pos))
	}
	channel, data := pos[0], pos[1]
	if *base == "" {
		*base = lookupEnv(env.Environ, envURL)
	}
	if *base == "" {
		*base = "http://127.0.0.1:8080"
	}
	endpoint, err := publishEndpoint(*base)
	if err != nil {
		return fmt.Errorf("%w: pub: %v", errUsage, err)
	}
	if *key == "" {
		*key = lookupEnv(env.Environ, envAPIKey)
	}
	p := &publisher{
		endpoint: endpoint,
		key:      *key,
		timeout:  *timeout,
		hc:       &http.Client{Transport: &http.Transport{Proxy: http.ProxyFromEnvironment, MaxIdleConnsPerHost: 1}},
	}
	defer p.hc.CloseIdleConnections()
	out := bufio.NewWriter(env.Stdout)
	defer out.Flush()

	publishOne := func(msg []byte, where string) error {
		if !json.Valid(msg) {
			return fmt.Errorf("pub: %sdata is not valid JSON: %s", where, abbreviate(msg))
		}
		offset, err := p.publish(ctx, channel, msg)
		if err != nil {
			return fmt.Errorf("pub: %s%w", where, err)
		}
		if !*quiet {
			fmt.Fprintln(out, offset)
			// Flush each line so that the next command of a pipeline
			// sees offsets as they are assigned.
			if err := out.Flush(); err != nil {
				return fmt.Errorf("pub: write: %w", err)
			}
		}
		return nil
	}
	if data != "-" {
		return publishOne([]byte(data), "")
	}
	stdin := env.Stdin
	if stdin == nil {
		stdin = os.Stdin
	}
	sc := bufio.NewScanner(stdin)
	sc.Buffer(make([]byte, 0, 64<<10), maxPubLine)
	for n := 1; sc.Scan(); n++ {
		line := bytes.TrimSpace(sc.Bytes())
		if len(line) == 0 {
			continue
		}
		if err := publishOne(line, fmt.Sprintf("stdin line %d: ", n)); err != nil {
			return err
		}
		if ctx.Err() != nil {
			return nil
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("pub: read stdin: %w", err)
	}
	return nil
}

// publishEndpoint returns the publish URL under base.
func publishEndpoint(base string) (string, error) {
	u, err := url.Parse(base)
	if err != nil {
		return "", fmt.Errorf("bad url %q: %w", base, err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return "", fmt.Errorf("url %q: want http://host:port or https://host:port", base)
	}
	u.Path = strings.TrimSuffix(u.Path, "/") + "/api/publish"
	return u.String(), nil
}

func abbreviate(b []byte) string {
	if len(b) > 60 {
		return fmt.Sprintf("%q...", b[:60])
	}
	return fmt.Sprintf("%q", b)
}

type publisher struct {
	endpoint string
	key      string
	timeout  time.Duration
	hc       *http.Client
}

// apiError is the server API's error body.
type apiError struct {
	Error *struct {
		Code    uint32 `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

// publish posts one message and returns its offset.
func (p *publisher) publish(ctx context.Context, channel string, data []byte) (uint64, error) {
	body, err := json.Marshal(struct {
		Channel string          `json:"channel"`
		Data    json.RawMessage `json:"data"`
	}{channel, data})
	if err != nil {
		return 0, err
	}
	ctx, cancel := context.WithTimeout(ctx, p.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, p.endpoint, bytes.NewReader(body))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	if p.key != "" {
		req.Header.Set("X-API-Key", p.key)
	}
	resp, err := p.hc.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return 0, fmt.Errorf("cannot reach %s: %w", p.endpoint, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return 0, fmt.Errorf("read response: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		var ae apiError
		if json.Unmarshal(b, &ae) == nil && ae.Error != nil {
			hint := ""
			if resp.StatusCode == http.StatusUnauthorized {
				hint = " (set --api-key or " + envAPIKey + ")"
			}
			return 0, fmt.Errorf("refused by the server: %s: %s (code %d)%s", resp.Status, ae.Error.Message, ae.Error.Code, hint)
		}
		return 0, fmt.Errorf("refused by the server: %s", resp.Status)
	}
	var res struct {
		Offset uint64 `json:"offset"`
	}
	if err := json.Unmarshal(b, &res); err != nil {
		return 0, fmt.Errorf("malformed response: %w", err)
	}
	return res.Offset, nil
}

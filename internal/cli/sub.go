package cli

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/heraldhq/herald/client"
)

// Environment fallbacks of sub and pub.
const (
	envURL    = "HERALD_URL"     // server base URL (http://host:port)
	envAPIKey = "HERALD_API_KEY" // server API key (pub)
	envToken  = "HERALD_CLIENT_TOKEN"
)

// parseInterspersed parses flags that may appear before, between or after
// positional arguments ("--" ends the flags) and returns the positional
// ones.
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, err
			}
			return nil, fmt.Errorf("%w: %s: %v", errUsage, fs.Name(), err)
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return pos, nil
		}
		// flag.Parse stops at the first positional argument, or after "--".
		consumed := len(args) - len(rest)
		if consumed > 0 && args[consumed-1] == "--" {
			return append(pos, rest...), nil
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}

// subLine is what `herald sub` prints for each publication.
type subLine struct {
	Channel string             `json:"channel"`
	Offset  uint64             `json:"offset,omitempty"`
	Data    json.RawMessage    `json:"data"`
	Info    *client.ClientInfo `json:"info,omitempty"`
	Time    int64              `json:"time,omitempty"`
}

// sub implements `herald sub`: it subscribes to channels and prints every
// publication as one JSON line until interrupted, reconnecting and
// recovering missed publications on the way.
func sub(ctx context.Context, env Env, args []string) error {
	fs := newFlagSet("sub", env.Stderr)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), "Usage: herald sub [--url ws://127.0.0.1:8080/ws] [--token T] CHANNEL...\n\n"+
			"Subscribes to each CHANNEL and prints every publication as one JSON line\n"+
			`({"channel":...,"offset":...,"data":...}) until interrupted. Reconnects by itself and`+"\n"+
			"recovers the publications missed meanwhile; a gap it cannot fill is reported on stderr.\n\nFlags:\n")
		fs.PrintDefaults()
	}
	rawURL := fs.String("url", "", "WebSocket (ws://, wss://) or TCP (tcp://, tls://) `URL`; default from "+envURL+" or ws://127.0.0.1:8080/ws")
	token := fs.String("token", "", "connection token (env "+envToken+"); anonymous without one")
	timeout := fs.Duration("timeout", 10*time.Second, "how long to wait for the first connection and the subscriptions")
	channels, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	if len(channels) == 0 {
		return fmt.Errorf("%w: sub: at least one CHANNEL is required", errUsage)
	}
	u, err := subURL(*rawURL, lookupEnv(env.Environ, envURL))
	if err != nil {
		return fmt.Errorf("%w: sub: %v", errUsage, err)
	}
	if *token == "" {
		*token = lookupEnv(env.Environ, envToken)
	}

	// Handlers run on one goroutine, so out needs no lock; the channel
	// below reports why the command must stop.
	out := bufio.NewWriter(env.Stdout)
	stop := make(chan error, 1)
	fail := func(err error) {
		select {
		case stop <- err:
		default:
		}
	}
	var (
		mu      sync.Mutex
		started bool // the first connection and subscriptions succeeded
	)
	opts := client.Options{
		Token:   *token,
		Name:    "herald-cli",
		Version: version(),
		OnDisconnected: func(e client.DisconnectedEvent) {
			if e.Code == client.DisconnectClosed {
				return
			}
			if !e.Reconnect {
				fail(fmt.Errorf("disconnected by the server: %s (%d)", e.Reason, e.Code))
				return
			}
			fmt.Fprintf(env.Stderr, "herald: connection lost (%d %s); reconnecting\n", e.Code, e.Reason)
		},
		OnError: func(err error) {
			mu.Lock()
			s := started
			mu.Unlock()
			if s {
				fmt.Fprintf(env.Stderr, "herald: %v\n", err)
			}
		},
	}
	c, err := client.New(u, opts)
	if err != nil {
		return fmt.Errorf("%w: sub: %s", errUsage, strings.TrimPrefix(err.Error(), "herald: "))
	}
	defer c.Close()

	cctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	if err := c.Connect(cctx); err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return fmt.Errorf("sub: cannot connect to %s: %s", u, strings.TrimPrefix(err.Error(), "herald: "))
	}
	subs := make([]*client.Subscription, 0, len(channels))
	for _, ch := range channels {
		handler := func(p client.Publication) {
			line := subLine{Channel: p.Channel, Offset: p.Offset, Data: p.Data, Info: p.Info}
			if !p.Time.IsZero() {
				line.Time = p.Time.UnixMilli()
			}
			if line.Data == nil {
				line.Data = json.RawMessage("null")
			}
			b, _ := json.Marshal(line)
			out.Write(b)
			out.WriteByte('\n')
			if err := out.Flush(); err != nil {
				fail(fmt.Errorf("write: %w", err))
			}
		}
		s, err := c.Subscribe(ch, handler,
			client.OnSubscribed(func(e client.SubscribedEvent) {
				if e.WasRecovering && !e.Recovered {
					fmt.Fprintf(env.Stderr, "herald: %s: publications were missed while disconnected and are no longer in history\n", e.Channel)
				}
			}),
			client.OnUnsubscribed(func(e client.UnsubscribedEvent) {
				if e.Code != client.CodeClosed {
					fail(fmt.Errorf("%s: unsubscribed by the server: %s (%d)", e.Channel, e.Reason, e.Code))
				}
			}))
		if err != nil {
			return fmt.Errorf("sub: %s: %w", ch, err)
		}
		subs = append(subs, s)
	}
	for _, s := range subs {
		if err := s.Ready(cctx); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			var ce *client.Error
			if errors.As(err, &ce) {
				return fmt.Errorf("sub: %s: refused: %s (code %d)", s.Channel(), strings.TrimPrefix(ce.Message, s.Channel()+": "), ce.Code)
			}
			return fmt.Errorf("sub: %s: %w", s.Channel(), err)
		}
	}
	mu.Lock()
	started = true
	mu.Unlock()
	select {
	case <-ctx.Done():
		return nil
	case err := <-stop:
		return fmt.Errorf("sub: %w", err)
	}
}

// subURL picks the URL of `herald sub`: the flag, else the base URL from
// the environment turned into its WebSocket endpoint, else the default.
func subURL(flagURL, envBase string) (string, error) {
	if flagURL != "" {
		return flagURL, nil
	}
	if envBase == "" {
		return "ws://127.0.0.1:8080/ws", nil
	}
	u, err := url.Parse(envBase)
	if err != nil {
		return "", fmt.Errorf("%s: %w", envURL, err)
	}
	switch u.Scheme {
	case "http":
		u.Scheme = "ws"
	case "https":
		u.Scheme = "wss"
	default:
		return envBase, nil
	}
	u.Path = strings.TrimSuffix(u.Path, "/") + "/ws"
	return u.String(), nil
}

package session

import (
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/heraldhq/herald/internal/auth"
)

// Defaults applied to zero Config fields.
const (
	DefaultPingInterval     = 25 * time.Second
	DefaultPongTimeout      = 10 * time.Second
	DefaultConnectTimeout   = 10 * time.Second
	DefaultMaxSubscriptions = 128
	DefaultMaxDataSize      = 64 << 10
	DefaultHistoryMaxLimit  = 1000
	DefaultHubTimeout       = 5 * time.Second
	DefaultMaxBadCommands   = 10
)

// maxBadCommandsLimit keeps the per-session counter in 16 bits.
const maxBadCommandsLimit = 1<<16 - 2

// Config configures a Manager and every session it creates. Hub is
// required; every other field's zero value is a sensible default.
type Config struct {
	// Hub registers clients and carries their subscriptions and
	// publications.
	Hub Hub
	// Verifier checks connection tokens. nil means no token is ever
	// accepted (then only anonymous connections are possible).
	Verifier *auth.Verifier
	// AllowAnonymous accepts connect without a token. Namespaces decide
	// separately (hub.ChannelOptions.AllowAnonymous) whether anonymous
	// clients may use their channels.
	AllowAnonymous bool
	// AllowSend lets authenticated clients send direct messages to users
	// (the send command). Default false: only the server API may.
	AllowSend bool

	// PingInterval is how often each client is pinged. Default 25 s.
	PingInterval time.Duration
	// PongTimeout: a client from which nothing arrived for PingInterval +
	// PongTimeout is closed with 3002. Default 10 s.
	PongTimeout time.Duration
	// ConnectTimeout bounds the time from accepting a connection to its
	// connect command; later ones are closed with 3006. Default 10 s.
	ConnectTimeout time.Duration

	// MaxSubscriptions bounds one connection's subscriptions (106 beyond
	// it). Default 128.
	MaxSubscriptions int
	// MaxDataSize bounds the data of publish and send, in bytes (106
	// beyond it). Default 64 KiB.
	MaxDataSize int
	// HistoryMaxLimit caps how many publications one history command
	// returns. Default 1000.
	HistoryMaxLimit int
	// MaxBadCommands is how many malformed commands (answered with 107)
	// a connection may send before it is closed with 3501. Default 10;
	// at most 65534.
	MaxBadCommands int
	// HubTimeout bounds each hub call a command makes (broker round
	// trips): a call is canceled between HubTimeout and 1.25 x HubTimeout
	// after its command started. Default 5 s.
	HubTimeout time.Duration

	// Node and Version are reported in connect replies.
	Node    string
	Version string

	// Metrics receives counters. Default NopMetrics.
	Metrics Metrics
	// Logger receives the few messages worth an operator's attention
	// (unexpected hub failures). Default: discard.
	Logger *slog.Logger
}

func (c *Config) withDefaults() error {
	if c.Hub == nil {
		return errors.New("session: Config.Hub is required")
	}
	if c.PingInterval <= 0 {
		c.PingInterval = DefaultPingInterval
	}
	if c.PongTimeout <= 0 {
		c.PongTimeout = DefaultPongTimeout
	}
	if c.ConnectTimeout <= 0 {
		c.ConnectTimeout = DefaultConnectTimeout
	}
	if c.MaxSubscriptions <= 0 {
		c.MaxSubscriptions = DefaultMaxSubscriptions
	}
	if c.MaxDataSize <= 0 {
		c.MaxDataSize = DefaultMaxDataSize
	}
	if c.HistoryMaxLimit <= 0 {
		c.HistoryMaxLimit = DefaultHistoryMaxLimit
	}
	if c.MaxBadCommands <= 0 {
		c.MaxBadCommands = DefaultMaxBadCommands
	}
	if c.MaxBadCommands > maxBadCommandsLimit {
		return fmt.Errorf("session: MaxBadCommands %d is over %d", c.MaxBadCommands, maxBadCommandsLimit)
	}
	if c.HubTimeout <= 0 {
		c.HubTimeout = DefaultHubTimeout
	}
	if c.Metrics == nil {
		c.Metrics = NopMetrics{}
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return nil
}

// tick is the heartbeat wheel's resolution: fine enough for the shortest
// timeout, never finer than 5 ms nor coarser than 1 s.
func (c *Config) tick() time.Duration {
	t := min(c.PingInterval, c.PongTimeout, c.ConnectTimeout) / 8
	return max(5*time.Millisecond, min(t, time.Second))
}

// horizon is the longest delay the wheel schedules directly.
func (c *Config) horizon() time.Duration {
	return max(c.PingInterval+c.PongTimeout, c.ConnectTimeout)
}

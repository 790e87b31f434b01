package redisbroker

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/redis/go-redis/v9"
)

// go-redis logs through one process-wide logger that writes to stderr. The
// broker reports connection loss and recovery itself, so the library's
// messages (dial failures, sentinel master changes) are routed to slog at
// debug level instead.
type libraryLogger struct{}

func (libraryLogger) Printf(ctx context.Context, format string, v ...any) {
	slog.Default().Log(ctx, slog.LevelDebug, "go-redis: "+fmt.Sprintf(format, v...))
}

func init() {
	// Installed at package initialization: it affects only the go-redis
	// clients of this process, which are the broker's.
	redis.SetLogger(libraryLogger{})
}

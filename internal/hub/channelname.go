package hub

import (
	"fmt"
	"strings"
)

// MaxChannelLength is the longest channel name in bytes.
const MaxChannelLength = 255

// ValidateChannel checks that name is 1-255 bytes of printable ASCII
// without spaces (docs/protocol.md).
func ValidateChannel(name string) error {
	if len(name) == 0 || len(name) > MaxChannelLength {
		return fmt.Errorf("%w: length %d not in 1..%d", ErrInvalidChannel, len(name), MaxChannelLength)
	}
	for i := 0; i < len(name); i++ {
		if c := name[i]; c <= ' ' || c > '~' {
			return fmt.Errorf("%w: byte %#x at %d", ErrInvalidChannel, c, i)
		}
	}
	return nil
}

// Namespace returns the namespace of a channel: the part before the first
// ':', or "" when the name has none.
func Namespace(channel string) string {
	if i := strings.IndexByte(channel, ':'); i >= 0 {
		return channel[:i]
	}
	return ""
}

//go:build !linux

package netpoll

// Without epoll every connection uses the portable fallback.

type epollState struct{}

func newSysPoller(*Poller) (poller, error) { return nil, nil }

func (c *Conn) sysAdd()              {}
func (c *Conn) sysWheel() *holdWheel { return nil }
func (c *Conn) notify(uint32)        {}

const (
	evRead  = 1
	evFlush = 2
	evClose = 4
	evDrain = 8
)

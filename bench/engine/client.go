package engine

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/gorilla/websocket"
)

// The client side of every benchmark is gorilla/websocket's client, for
// every server engine, so that differences come from the servers.

// Payload returns size bytes of JSON-like text, so that permessage-deflate
// has something realistic to compress; every engine gets the same bytes.
func Payload(size int) []byte {
	const unit = `{"channel":"news.sport","seq":1234567,"data":{"title":"Score update","home":2,"away":1}},`
	b := make([]byte, size)
	for i := range b {
		b[i] = unit[i%len(unit)]
	}
	return b
}

// newDialer returns the client dialer: gorilla's defaults (4 KiB buffers),
// with permessage-deflate offered (gorilla always offers no context
// takeover in both directions) when deflate is set.
func newDialer(deflate bool) *websocket.Dialer {
	return &websocket.Dialer{EnableCompression: deflate}
}

// RunClient runs the client side of the benchmarks: it reads one command
// per line from in and answers on out with "ok", "ok <detail>" or
// "err <message>". It returns at the end of in, after closing its
// connections. The commands:
//
//	dial <url> <conns> <deflate 0|1> <echo|sink>
//	    opens conns connections. In sink mode every connection reads
//	    (and discards) messages on a goroutine of its own, and the client
//	    prints "got" each time every connection has received one more
//	    message.
//	echo <size> <messages> <window>
//	    (echo mode) sends messages messages of size bytes, spread over the
//	    connections, each connection keeping up to window messages in
//	    flight, and checks every echo.
//	close
//	    closes the connections.
//
// RunClient is meant to run alone in its process (the test binary
// re-executed): its allocations and CPU then stay out of the server's
// measurements.
func RunClient(in io.Reader, out io.Writer) error {
	cl := &client{out: bufio.NewWriter(out)}
	defer cl.closeAll()
	sc := bufio.NewScanner(in)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 0 {
			continue
		}
		var err error
		switch {
		case f[0] == "dial" && len(f) == 5:
			err = cl.dial(f[1], f[2], f[3], f[4])
		case f[0] == "echo" && len(f) == 4:
			err = cl.echo(f[1], f[2], f[3])
		case f[0] == "close" && len(f) == 1:
			cl.closeAll()
		default:
			err = fmt.Errorf("unknown command %q", sc.Text())
		}
		if err != nil {
			cl.println("err " + strings.ReplaceAll(err.Error(), "\n", " "))
		} else {
			cl.println("ok")
		}
	}
	return sc.Err()
}

type client struct {
	outMu sync.Mutex
	out   *bufio.Writer

	conns    []*websocket.Conn
	readers  sync.WaitGroup // sink readers
	received atomic.Int64
}

func (cl *client) println(line string) {
	cl.outMu.Lock()
	defer cl.outMu.Unlock()
	_, _ = cl.out.WriteString(line + "\n")
	_ = cl.out.Flush()
}

func (cl *client) dial(url, nStr, deflateStr, mode string) error {
	if len(cl.conns) > 0 {
		return errors.New("already dialed; close first")
	}
	n, err := strconv.Atoi(nStr)
	if err != nil || n <= 0 {
		return fmt.Errorf("bad connection count %q", nStr)
	}
	if mode != "echo" && mode != "sink" {
		return fmt.Errorf("bad mode %q", mode)
	}
	conns, err := DialMany(context.Background(), newDialer(deflateStr == "1"), url, n, nil)
	if err != nil {
		return err
	}
	cl.conns = conns
	cl.received.Store(0)
	if mode == "sink" {
		for _, c := range conns {
			cl.readers.Add(1)
			go cl.sink(c, int64(n))
		}
	}
	return nil
}

// sink discards c's messages and reports each complete round.
func (cl *client) sink(c *websocket.Conn, n int64) {
	defer cl.readers.Done()
	for {
		_, r, err := c.NextReader()
		if err != nil {
			return
		}
		if _, err := io.Copy(io.Discard, r); err != nil {
			return
		}
		if cl.received.Add(1)%n == 0 {
			cl.println("got")
		}
	}
}

func (cl *client) closeAll() {
	for _, c := range cl.conns {
		_ = c.Close()
	}
	cl.readers.Wait()
	cl.conns = nil
}

func (cl *client) echo(sizeStr, totalStr, windowStr string) error {
	size, err1 := strconv.Atoi(sizeStr)
	total, err2 := strconv.Atoi(totalStr)
	window, err3 := strconv.Atoi(windowStr)
	if err := errors.Join(err1, err2, err3); err != nil || size <= 0 || total < 0 || window <= 0 {
		return fmt.Errorf("bad echo arguments %s %s %s", sizeStr, totalStr, windowStr)
	}
	if len(cl.conns) == 0 {
		return errors.New("no connections")
	}
	msg := Payload(size)
	errs := make([]error, len(cl.conns))
	var wg sync.WaitGroup
	for i, c := range cl.conns {
		count := total / len(cl.conns)
		if i < total%len(cl.conns) {
			count++
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = echoConn(c, msg, count, window)
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// echoConn sends count copies of msg on c, at most window unanswered,
// and checks that each comes back whole.
func echoConn(c *websocket.Conn, msg []byte, count, window int) error {
	buf := make([]byte, len(msg))
	if window == 1 {
		for range count {
			if err := c.WriteMessage(websocket.BinaryMessage, msg); err != nil {
				return fmt.Errorf("write: %w", err)
			}
			if err := readEcho(c, msg, buf); err != nil {
				return err
			}
		}
		return nil
	}
	credits := make(chan struct{}, window)
	failed := make(chan struct{})
	werr := make(chan error, 1)
	go func() {
		for range count {
			select {
			case credits <- struct{}{}:
			case <-failed:
				werr <- nil
				return
			}
			if err := c.WriteMessage(websocket.BinaryMessage, msg); err != nil {
				_ = c.Close() // unblocks the reader
				werr <- fmt.Errorf("write: %w", err)
				return
			}
		}
		werr <- nil
	}()
	var rerr error
	for range count {
		if rerr = readEcho(c, msg, buf); rerr != nil {
			close(failed)
			_ = c.Close() // unblocks a write in progress
			break
		}
		<-credits
	}
	return errors.Join(rerr, <-werr)
}

func readEcho(c *websocket.Conn, want, buf []byte) error {
	_, r, err := c.NextReader()
	if err != nil {
		return fmt.Errorf("read: %w", err)
	}
	if _, err := io.ReadFull(r, buf); err != nil {
		return fmt.Errorf("read echo: %w", err)
	}
	if extra, err := io.Copy(io.Discard, r); err != nil || extra != 0 {
		return fmt.Errorf("echo longer than sent by %d bytes (%v)", extra, err)
	}
	if !bytes.Equal(buf, want) {
		return errors.New("echo differs from the message sent")
	}
	return nil
}

// DialMany opens n connections to url, 32 handshakes at a time. When
// localIPs is not empty the connections' source addresses cycle through
// it, so that many connections to one server do not exhaust the ephemeral
// ports of one address pair. On error it closes what it opened.
func DialMany(ctx context.Context, d *websocket.Dialer, url string, n int, localIPs []net.IP) ([]*websocket.Conn, error) {
	conns := make([]*websocket.Conn, n)
	errs := make([]error, n)
	next := atomic.Int64{}
	var wg sync.WaitGroup
	for range min(32, n) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				dd := *d
				if len(localIPs) > 0 {
					nd := net.Dialer{LocalAddr: &net.TCPAddr{IP: localIPs[i%len(localIPs)]}}
					dd.NetDialContext = nd.DialContext
				}
				c, resp, err := dd.DialContext(ctx, url, nil)
				if resp != nil && resp.Body != nil {
					_ = resp.Body.Close()
				}
				if err != nil {
					errs[i] = fmt.Errorf("dial %d: %w", i, err)
					next.Store(int64(n)) // stop the others
					return
				}
				conns[i] = c
			}
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		for _, c := range conns {
			if c != nil {
				_ = c.Close()
			}
		}
		return nil, err
	}
	return conns, nil
}

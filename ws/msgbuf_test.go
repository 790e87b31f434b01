package ws

import (
	"bytes"
	"errors"
	"io"
	"net"
	"strconv"
	"testing"
	"unsafe"
)

// endlessReader yields zeros forever, a few bytes per Read at most, and
// counts what it handed out.
type endlessReader struct {
	per  int
	gave int64
}

func (r *endlessReader) Read(p []byte) (int, error) {
	n := min(len(p), r.per)
	clear(p[:n])
	r.gave += int64(n)
	return n, nil
}

// TestReadMsgBufLimit: a source that never ends is read for at most
// limit+1 bytes, and reported too big.
func TestReadMsgBufLimit(t *testing.T) {
	for _, limit := range []int64{0, 1, 511, 512, 4096, 100_000} {
		for _, per := range []int{1, 700, 1 << 20} {
			r := &endlessReader{per: per}
			bp, err := readMsgBuf(getMsgBuf(512), r, limit)
			if !errors.Is(err, errMessageTooBig) {
				t.Fatalf("limit %d: err = %v, want errMessageTooBig", limit, err)
			}
			if r.gave > limit+1 || int64(len(*bp)) != r.gave {
				t.Fatalf("limit %d, %d per read: read %d bytes, kept %d", limit, per, r.gave, len(*bp))
			}
			putMsgBuf(bp)
		}
	}
}

// eofAfterReader returns its data, then (0, io.EOF) on a later call, as a
// decompressor does.
type eofAfterReader struct{ data []byte }

func (r *eofAfterReader) Read(p []byte) (int, error) {
	if len(r.data) == 0 {
		return 0, io.EOF
	}
	n := copy(p, r.data)
	r.data = r.data[n:]
	return n, nil
}

// TestReadMsgBufExactFill: a message that exactly fills a size class
// stays in that class (its end is found without moving it), and longer
// ones grow through the classes intact.
func TestReadMsgBufExactFill(t *testing.T) {
	for _, size := range []int{0, 1, 512, 4 << 10, 4<<10 + 1, 64 << 10, 300 << 10, 1 << 20, 1<<20 + 5} {
		data := jsonish(size)
		bp, err := readMsgBuf(getMsgBuf(512), &eofAfterReader{data: data}, 2<<20)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(*bp, data) {
			t.Fatalf("%d bytes: got %d different bytes", size, len(*bp))
		}
		want := 512
		for _, c := range msgBufClasses {
			if size <= c {
				want = max(c, 512)
				break
			}
		}
		if size <= 1<<20 && cap(*bp) != want {
			t.Fatalf("%d bytes kept in a buffer of %d, want the %d class", size, cap(*bp), want)
		}
		putMsgBuf(bp)
	}
}

// TestInflateLimitBoundary: in event mode a compressed message of
// exactly the read limit is delivered and one byte more fails with 1009.
func TestInflateLimitBoundary(t *testing.T) {
	for _, limit := range []int64{512, 4 << 10, 64 << 10, 200_000} {
		for _, size := range []int64{limit - 1, limit, limit + 1} {
			t.Run(strconv.FormatInt(limit, 10)+"/"+strconv.FormatInt(size, 10), func(t *testing.T) {
				sc, _ := net.Pipe()
				c := newConn(connConfig{netConn: sc, isServer: true, readLimit: limit,
					deflate: &deflateParams{writeNoContextTakeover: true, readNoContextTakeover: true}})
				defer c.CloseNow()
				payload := jsonish(int(size))
				out, perr := c.inflateMessage(deflateMsg(t, nil, payload), true)
				if size > limit {
					if perr == nil || perr.Code != StatusMessageTooBig {
						t.Fatalf("got %v, want a 1009 failure", perr)
					}
					return
				}
				if perr != nil {
					t.Fatal(perr)
				}
				if !bytes.Equal(*out, payload) {
					t.Fatal("inflated message differs")
				}
				putMsgBuf(out)
			})
		}
	}
}

// TestConnSize keeps an idle event-mode connection within the 176-byte
// size class: a server holds one Conn per idle connection, and the state
// of the blocking API, of messages in progress and of closing lives
// elsewhere.
func TestConnSize(t *testing.T) {
	if n := unsafe.Sizeof(Conn{}); n > 176 {
		t.Fatalf("Conn is %d bytes, over the 176-byte size class", n)
	}
	if n := unsafe.Sizeof(frameParser{}); n > 64 {
		t.Fatalf("frameParser is %d bytes, want at most 64", n)
	}
}

package ws

import (
	"io"
	"sync"
)

// Messages that are fragmented or compressed are assembled in buffers
// taken from pools by capacity class, so an idle connection holds none
// and a steady stream of large messages allocates nothing. A buffer that
// fills up is replaced by one of a larger class (the old one goes back to
// its pool), so each class pool serves the messages of its size.
var msgBufClasses = [...]int{512, 4 << 10, 16 << 10, 64 << 10, 256 << 10, 1 << 20}

var msgBufPools [len(msgBufClasses)]sync.Pool

// getMsgBuf returns an empty buffer with a capacity of at least size:
// pooled up to the largest class, allocated beyond.
func getMsgBuf(size int) *[]byte {
	for i, c := range msgBufClasses {
		if size <= c {
			if bp, ok := msgBufPools[i].Get().(*[]byte); ok {
				return bp
			}
			b := make([]byte, 0, c)
			return &b
		}
	}
	b := make([]byte, 0, size)
	return &b
}

// putMsgBuf returns bp to the pool of its class. A buffer more than
// twice its class (grown past the largest) is left to the collector.
func putMsgBuf(bp *[]byte) {
	c := cap(*bp)
	for i := len(msgBufClasses) - 1; i >= 0; i-- {
		if c >= msgBufClasses[i] {
			if c <= 2*msgBufClasses[i] {
				*bp = (*bp)[:0]
				msgBufPools[i].Put(bp)
			}
			return
		}
	}
}

// growMsgBuf makes room for at least n more bytes after the contents of
// bp: when they do not fit it copies the contents to a buffer of a larger
// class, at least twice as large, and returns bp to its pool.
func growMsgBuf(bp *[]byte, n int) *[]byte {
	b := *bp
	if cap(b)-len(b) >= n {
		return bp
	}
	nb := getMsgBuf(max(len(b)+n, 2*cap(b)))
	*nb = append((*nb)[:0], b...)
	putMsgBuf(bp)
	return nb
}

// appendMsgBuf appends p to the pooled buffer bp, growing it through the
// size classes, and returns the buffer now holding the message.
func appendMsgBuf(bp *[]byte, p []byte) *[]byte {
	bp = growMsgBuf(bp, len(p))
	*bp = append(*bp, p...)
	return bp
}

// readMsgBuf appends what r yields until io.EOF to the pooled buffer bp,
// growing it through the size classes, and returns the buffer holding the
// message. It reads at most limit+1 bytes in all and reports
// errMessageTooBig when there are more than limit. When the buffer is
// full, the next read goes into the larger buffer before anything is
// copied to it, so a message that fills its buffer exactly (the last read
// returns only io.EOF) is not moved just to find its end. Errors other
// than io.EOF are returned with the buffer; either way the caller owns
// it.
func readMsgBuf(bp *[]byte, r io.Reader, limit int64) (*[]byte, error) {
	for {
		b := *bp
		if int64(len(b)) > limit {
			return bp, errMessageTooBig
		}
		dst, next := b, bp
		if len(b) == cap(b) {
			next = getMsgBuf(max(len(b)+1, 2*cap(b)))
			dst = (*next)[:len(b)]
		}
		room := cap(dst) - len(dst)
		if left := limit - int64(len(dst)); left < int64(room) {
			room = int(left) + 1 // one byte over tells the message is too big
		}
		n, err := r.Read(dst[len(dst) : len(dst)+room])
		switch {
		case next == bp:
			*bp = dst[:len(dst)+n]
		case n > 0:
			copy(dst, b)
			*next = dst[:len(dst)+n]
			putMsgBuf(bp)
			bp = next
		default:
			putMsgBuf(next)
		}
		if err == io.EOF {
			if int64(len(*bp)) > limit {
				return bp, errMessageTooBig
			}
			return bp, nil
		}
		if err != nil {
			return bp, err
		}
	}
}

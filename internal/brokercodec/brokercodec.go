// Package brokercodec is the binary encoding the cluster brokers use to
// carry publications and client infos through Redis and NATS.
//
// A publication is encoded as
//
//	version byte (1)
//	flags byte (bit 0: info present)
//	time: signed varint (unix milliseconds)
//	data: uvarint length + bytes
//	[info: client, user, conn_info, chan_info, each uvarint length + bytes]
//
// and a client info alone as the version byte followed by its four fields.
// The offset is not part of the encoding: the brokers carry it next to the
// blob because it is assigned by the backing service. Encoding is binary
// safe; data is copied verbatim.
//
// Decoding checks every length against the remaining input and against
// MaxFieldSize before it allocates. The functions are pure and safe for
// concurrent use.
package brokercodec

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/heraldhq/herald/internal/hub"
)

const version = 1

const flagInfo = 1

// MaxFieldSize bounds any single decoded field (64 MiB); larger lengths are
// rejected as corrupt before anything is allocated.
const MaxFieldSize = 64 << 20

// ErrCorrupt is wrapped by every decoding error.
var ErrCorrupt = errors.New("brokercodec: corrupt encoding")

// AppendPublication appends pub's encoding (without its offset) to dst.
func AppendPublication(dst []byte, pub *hub.Publication) []byte {
	var flags byte
	if pub.Info != nil {
		flags |= flagInfo
	}
	dst = append(dst, version, flags)
	dst = binary.AppendVarint(dst, pub.Time)
	dst = appendBytes(dst, pub.Data)
	if pub.Info != nil {
		dst = appendInfoFields(dst, pub.Info)
	}
	return dst
}

// AppendClientInfo appends info's encoding to dst.
func AppendClientInfo(dst []byte, info *hub.ClientInfo) []byte {
	dst = append(dst, version)
	return appendInfoFields(dst, info)
}

func appendInfoFields(dst []byte, info *hub.ClientInfo) []byte {
	dst = appendBytes(dst, []byte(info.Client))
	dst = appendBytes(dst, []byte(info.User))
	dst = appendBytes(dst, info.ConnInfo)
	return appendBytes(dst, info.ChanInfo)
}

func appendBytes(dst, b []byte) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(b)))
	return append(dst, b...)
}

// DecodePublication decodes a publication; its Offset is left 0. The result
// does not alias b.
func DecodePublication(b []byte) (*hub.Publication, error) {
	d := decoder{b: b}
	if v := d.byte(); v != version {
		return nil, d.fail(fmt.Errorf("version %d", v))
	}
	flags := d.byte()
	if flags&^flagInfo != 0 {
		return nil, d.fail(fmt.Errorf("unknown flags %#x", flags))
	}
	pub := &hub.Publication{Time: d.varint()}
	pub.Data = d.bytes()
	if flags&flagInfo != 0 {
		pub.Info = d.info()
	}
	if err := d.finish(); err != nil {
		return nil, err
	}
	return pub, nil
}

// DecodeClientInfo decodes a client info. The result does not alias b.
func DecodeClientInfo(b []byte) (*hub.ClientInfo, error) {
	d := decoder{b: b}
	if v := d.byte(); v != version {
		return nil, d.fail(fmt.Errorf("version %d", v))
	}
	info := d.info()
	if err := d.finish(); err != nil {
		return nil, err
	}
	return info, nil
}

type decoder struct {
	b   []byte
	err error
}

func (d *decoder) fail(err error) error {
	if d.err == nil {
		d.err = fmt.Errorf("%w: %w", ErrCorrupt, err)
	}
	return d.err
}

func (d *decoder) finish() error {
	if d.err == nil && len(d.b) != 0 {
		d.fail(fmt.Errorf("%d trailing bytes", len(d.b)))
	}
	return d.err
}

func (d *decoder) byte() byte {
	if d.err != nil {
		return 0
	}
	if len(d.b) == 0 {
		d.fail(errors.New("truncated"))
		return 0
	}
	c := d.b[0]
	d.b = d.b[1:]
	return c
}

func (d *decoder) varint() int64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.fail(errors.New("bad varint"))
		return 0
	}
	d.b = d.b[n:]
	return v
}

// bytes reads a length-prefixed field; an empty field decodes as nil.
func (d *decoder) bytes() []byte {
	if d.err != nil {
		return nil
	}
	n, k := binary.Uvarint(d.b)
	if k <= 0 {
		d.fail(errors.New("bad length"))
		return nil
	}
	d.b = d.b[k:]
	if n > MaxFieldSize || n > uint64(len(d.b)) {
		d.fail(fmt.Errorf("field length %d exceeds input", n))
		return nil
	}
	if n == 0 {
		return nil
	}
	out := make([]byte, n)
	copy(out, d.b[:n])
	d.b = d.b[n:]
	return out
}

func (d *decoder) info() *hub.ClientInfo {
	return &hub.ClientInfo{
		Client:   string(d.bytes()),
		User:     string(d.bytes()),
		ConnInfo: d.bytes(),
		ChanInfo: d.bytes(),
	}
}

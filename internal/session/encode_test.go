package session

import (
	"bytes"
	"reflect"
	"testing"

	"github.com/heraldhq/herald/internal/wire"
)

// otherCodec is a codec the session does not know by type, so that
// encodeReply takes its general path.
type otherCodec struct{ wire.JSONCodec }

// TestDetachReplyCopiesEveryResult fills every result of a reply and
// checks that detachReply copies each of them: a result added to
// wire.Reply and forgotten there would vanish from the replies of codecs
// other than JSON and binary.
func TestDetachReplyCopiesEveryResult(t *testing.T) {
	r := &wire.Reply{ID: 7}
	rv := reflect.ValueOf(r).Elem()
	for i := range rv.NumField() {
		f := rv.Field(i)
		if f.Kind() != reflect.Pointer {
			continue
		}
		v := reflect.New(f.Type().Elem())
		// A recognisable first field, so that a copy of the zero value
		// would not pass for a copy of this one.
		if first := v.Elem().Field(0); first.CanSet() {
			switch first.Kind() {
			case reflect.String:
				first.SetString(rv.Type().Field(i).Name)
			case reflect.Uint32, reflect.Uint64:
				first.SetUint(uint64(i + 1))
			case reflect.Bool:
				first.SetBool(true)
			}
		}
		f.Set(v)
	}
	c := detachReply(r)
	if !reflect.DeepEqual(c, r) {
		t.Fatalf("detached reply %+v, want %+v", c, r)
	}
	cv := reflect.ValueOf(c).Elem()
	for i := range rv.NumField() {
		if f := rv.Field(i); f.Kind() == reflect.Pointer && f.Pointer() == cv.Field(i).Pointer() {
			t.Errorf("%s shares the original's result", rv.Type().Field(i).Name)
		}
	}
}

// TestEncodeReplySameForEveryPath checks that the general path encodes a
// reply exactly as the direct one.
func TestEncodeReplySameForEveryPath(t *testing.T) {
	replies := []*wire.Reply{
		{ID: 1, Publish: &wire.PublishResult{Offset: 42, Epoch: "e1"}},
		{ID: 2, Error: &wire.Error{Code: wire.ErrPermissionDenied, Message: "permission denied"}},
		{ID: 3, PresenceStats: &wire.PresenceStatsResult{NumClients: 2, NumUsers: 1}},
		{ID: 4},
	}
	for _, r := range replies {
		direct := encodeReply(wire.JSON, r)
		general := encodeReply(otherCodec{}, r)
		if !bytes.Equal(direct, general) {
			t.Errorf("reply %d: general path %s, direct %s", r.ID, general, direct)
		}
	}
}

package session

import (
	"encoding/base64"
	"testing"
	"unsafe"
)

// TestSessionSize keeps a Session within the 176-byte size class: an idle
// server holds one per connection (the WebSocket transport embeds it in its
// own 208-byte state).
func TestSessionSize(t *testing.T) {
	if n := unsafe.Sizeof(Session{}); n > 176 {
		t.Fatalf("Session is %d bytes, over the 176-byte size class", n)
	}
}

// TestClientIDs: ids are unpadded base64url of 120 random bits, distinct,
// and the id string is the session's own buffer.
func TestClientIDs(t *testing.T) {
	seen := make(map[string]bool)
	for range 1000 {
		var s Session
		s.setNewID()
		id := s.ID()
		if len(id) != 20 {
			t.Fatalf("id %q: %d characters, want 20", id, len(id))
		}
		raw, err := base64.RawURLEncoding.DecodeString(id)
		if err != nil || len(raw) != clientIDBytes {
			t.Fatalf("id %q is not base64url of %d bytes: %v", id, clientIDBytes, err)
		}
		if seen[id] {
			t.Fatalf("id %q repeated", id)
		}
		seen[id] = true
	}
}

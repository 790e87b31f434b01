package auth

import (
	"errors"
	"testing"
	"time"
)

// FuzzVerify feeds arbitrary strings to an HS256 verifier: it must never
// panic, must classify every failure as expired or invalid, and must only
// accept tokens that re-verify to a non-empty subject.
func FuzzVerify(f *testing.F) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	v, err := NewVerifier(Config{HMACSecret: testSecret, Now: func() time.Time { return now }})
	if err != nil {
		f.Fatal(err)
	}
	for _, c := range []Claims{
		{Subject: "u"},
		{Subject: "u", ExpiresAt: now.Add(-time.Hour)},
		{Subject: "u", Channels: []string{"a", "b"}, Info: []byte(`{"x":1}`)},
	} {
		tok, err := Sign(c, HS256, testSecret)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(tok)
	}
	f.Add("")
	f.Add("a.b.c")
	f.Fuzz(func(t *testing.T, token string) {
		c, err := v.Verify(token)
		if err != nil {
			if !errors.Is(err, ErrInvalidToken) && !errors.Is(err, ErrTokenExpired) {
				t.Fatalf("unclassified error %v", err)
			}
			return
		}
		if c.Subject == "" {
			t.Fatal("accepted token without subject")
		}
	})
}

package testnode

import (
	"context"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/heraldhq/herald/internal/auth"
	"github.com/heraldhq/herald/internal/hub"
	"github.com/heraldhq/herald/internal/session"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestStart checks that the node's parts are wired together: the session
// adjustment is applied, the hub delivers through its broker, tokens
// verify, and Drain and Close are idempotent.
func TestStart(t *testing.T) {
	secret := []byte("testnode-secret-0123456789abcdef")
	adjusted := false
	n := Start(t, Config{
		Hub:     hub.Config{Namespaces: hub.NamespaceMap{"": {AllowPublish: true, AllowAnonymous: true, HistorySize: 10, AllowHistory: true}}},
		Secret:  secret,
		Session: func(cfg *session.Config) { adjusted = cfg.Hub != nil && cfg.Verifier != nil && cfg.Metrics != nil },
	})
	if !adjusted {
		t.Fatal("Session adjustment not called with the hub, verifier and metrics set")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := n.Hub.Publish(ctx, "news", []byte(`"x"`), nil); err != nil {
		t.Fatalf("Publish: %v", err)
	}
	v, err := auth.NewVerifier(auth.Config{HMACSecret: secret})
	if err != nil {
		t.Fatal(err)
	}
	if c, err := v.Verify(n.Token("42")); err != nil || c.Subject != "42" {
		t.Fatalf("token: %+v %v", c, err)
	}
	n.Drain(ctx)
	n.Drain(ctx)
	n.Close(ctx)
	n.Close(ctx)
}

func TestMetrics(t *testing.T) {
	m := NewMetrics()
	m.SessionOpened("tcp")
	m.SessionClosed("tcp", 3001)
	m.SessionClosed("tcp", 3001)
	m.SessionClosed("tcp", 3000)
	if m.Opened() != 1 || m.ClosedWith(3001) != 2 || m.ClosedWith(3000) != 1 || m.ClosedWith(1) != 0 {
		t.Fatalf("opened %d, 3001: %d, 3000: %d", m.Opened(), m.ClosedWith(3001), m.ClosedWith(3000))
	}
}

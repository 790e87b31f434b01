package membroker

import (
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/heraldhq/herald/internal/hub"
	"github.com/heraldhq/herald/internal/hub/brokertest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func TestSuite(t *testing.T) {
	brokertest.RunSuite(t, func(t *testing.T) (hub.Broker, hub.PresenceManager) {
		b := New(Options{JanitorInterval: 50 * time.Millisecond})
		return b, b
	})
}

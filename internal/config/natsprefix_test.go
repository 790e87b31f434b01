package config

import "testing"

// TestNATSPrefix checks broker.nats.prefix end to end: its environment
// variable, and the validation that rejects characters NATS subjects and
// stream names cannot hold.
func TestNATSPrefix(t *testing.T) {
	c := Default()
	env := []string{"HERALD_BROKER_TYPE=nats", "HERALD_BROKER_NATS_URL=nats://127.0.0.1:4222", "HERALD_BROKER_NATS_PREFIX=app-1_eu"}
	if unknown := UnknownEnv(env); len(unknown) != 0 {
		t.Fatalf("unknown variables: %v", unknown)
	}
	if err := applyEnv(c, env); err != nil {
		t.Fatalf("applyEnv: %v", err)
	}
	if c.Broker.NATS.Prefix != "app-1_eu" {
		t.Fatalf("prefix %q", c.Broker.NATS.Prefix)
	}
	if err := c.Validate(); err != nil {
		t.Fatalf("Validate: %v", err)
	}
	for _, bad := range []string{"a.b", "a b", "a*", "a>", "ü"} {
		c.Broker.NATS.Prefix = bad
		if err := c.Validate(); err == nil {
			t.Errorf("prefix %q accepted", bad)
		}
	}
}

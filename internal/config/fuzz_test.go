package config

import "testing"

// FuzzParse feeds arbitrary documents to Parse and Validate: they must
// return errors, never panic, and a document that parses must render and
// parse again.
func FuzzParse(f *testing.F) {
	f.Add([]byte("listen: 127.0.0.1:8080\n"))
	f.Add([]byte("namespaces:\n  - name: chat\n    history_size: 10\n    history_ttl: 1m\n"))
	f.Add([]byte("token: {secret: abc}\nlog: {level: debug}\n"))
	f.Add([]byte("a: &x [*x]\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		c := Default()
		if err := Parse(data, c); err != nil {
			return
		}
		_ = c.Validate()
		out, err := c.YAML()
		if err != nil {
			t.Fatalf("YAML after successful Parse: %v", err)
		}
		if err := Parse(out, Default()); err != nil {
			t.Fatalf("rendered config does not parse: %v\n%s", err, out)
		}
	})
}

package client

import (
	"testing"

	"github.com/heraldhq/herald/internal/config"
	"github.com/heraldhq/herald/internal/testcert"
)

// TestTLS: wss:// and tls:// URLs with a trusted certificate work; an
// untrusted one is refused.
func TestTLS(t *testing.T) {
	cert := testcert.New(t, "127.0.0.1")
	certFile, keyFile := cert.Files(t)
	s := startServer(t, func(c *config.Config) { c.TLS = config.TLS{CertFile: certFile, KeyFile: keyFile} })
	for _, url := range []string{"wss://" + s.srv.Addr() + "/ws", "tls://" + s.srv.TCPAddr()} {
		t.Run(url[:3], func(t *testing.T) {
			ctx := ctxT(t)
			o := fastOptions()
			o.TLSConfig = cert.ClientConfig("")
			c := newClient(t, url, o)
			if err := c.Connect(ctx); err != nil {
				t.Fatal(err)
			}
			got := make(chan Publication, 1)
			sub, err := c.Subscribe("chat:tls", func(p Publication) { got <- p })
			if err != nil {
				t.Fatal(err)
			}
			if err := sub.Ready(ctx); err != nil {
				t.Fatal(err)
			}
			if _, err := c.Publish(ctx, "chat:tls", []byte(`"secure"`)); err != nil {
				t.Fatal(err)
			}
			if p := <-got; string(p.Data) != `"secure"` {
				t.Errorf("publication %s", p.Data)
			}

			untrusted := newClient(t, url, fastOptions())
			if err := untrusted.Connect(ctx); err == nil {
				t.Error("connected with an untrusted certificate")
			}
		})
	}
}

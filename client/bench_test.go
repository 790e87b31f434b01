package client

import (
	"context"
	"testing"
)

// BenchmarkPublish measures a publish command's round trip (client ->
// server -> reply) per transport.
func BenchmarkPublish(b *testing.B) {
	s := startServer(b, nil)
	tn := startTCPNode(b)
	for _, tc := range []struct {
		name, url string
		enc       Encoding
	}{
		{"ws", s.wsURL(), EncodingBinary},
		{"tcp-binary", "tcp://" + tn.addr, EncodingBinary},
		{"tcp-json", "tcp://" + tn.addr, EncodingJSON},
	} {
		b.Run(tc.name, func(b *testing.B) {
			o := fastOptions()
			o.TCPEncoding = tc.enc
			c := newClient(b, tc.url, o)
			ctx := context.Background()
			if err := c.Connect(ctx); err != nil {
				b.Fatal(err)
			}
			data := []byte(`{"text":"hello"}`)
			b.ReportAllocs()
			for b.Loop() {
				if _, err := c.Publish(ctx, "chat:bench", data); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkDeliver measures publications delivered to a subscription's
// handler (publish on the node, receive through the transport).
func BenchmarkDeliver(b *testing.B) {
	tn := startTCPNode(b)
	for _, enc := range []Encoding{EncodingBinary, EncodingJSON} {
		name := map[Encoding]string{EncodingBinary: "tcp-binary", EncodingJSON: "tcp-json"}[enc]
		b.Run(name, func(b *testing.B) {
			o := fastOptions()
			o.TCPEncoding = enc
			c := newClient(b, "tcp://"+tn.addr, o)
			ctx := context.Background()
			if err := c.Connect(ctx); err != nil {
				b.Fatal(err)
			}
			got := make(chan struct{}, 1024)
			sub, err := c.Subscribe("chat:deliver-"+name, func(Publication) { got <- struct{}{} })
			if err != nil {
				b.Fatal(err)
			}
			if err := sub.Ready(ctx); err != nil {
				b.Fatal(err)
			}
			data := []byte(`{"text":"hello"}`)
			b.ReportAllocs()
			for b.Loop() {
				tn.publish("chat:deliver-"+name, data)
				<-got
			}
		})
	}
}

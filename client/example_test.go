package client_test

import (
	"context"
	"fmt"
	"io"
	"log"
	"log/slog"
	"time"

	"github.com/heraldhq/herald/client"
	"github.com/heraldhq/herald/internal/config"
	"github.com/heraldhq/herald/internal/server"
)

// startExampleServer runs a herald node on a free loopback port.
func startExampleServer() (addr string, stop func()) {
	c := config.Default()
	c.Listen = "127.0.0.1:0"
	c.Demo.Enabled = false
	c.DrainTimeout = 10 * time.Millisecond
	s, err := server.New(server.Options{Config: c, Logger: slog.New(slog.DiscardHandler), Out: io.Discard})
	if err != nil {
		log.Fatal(err)
	}
	if err := s.Start(context.Background()); err != nil {
		log.Fatal(err)
	}
	return s.Addr(), func() { _ = s.Shutdown(context.Background()) }
}

// Subscribe to a channel and receive what is published to it.
func Example() {
	addr, stop := startExampleServer()
	defer stop()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	c, err := client.New("ws://"+addr+"/ws", client.Options{})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	if err := c.Connect(ctx); err != nil {
		log.Fatal(err)
	}

	received := make(chan client.Publication, 1)
	sub, err := c.Subscribe("chat:lobby", func(p client.Publication) { received <- p })
	if err != nil {
		log.Fatal(err)
	}
	if err := sub.Ready(ctx); err != nil {
		log.Fatal(err)
	}
	if _, err := c.Publish(ctx, "chat:lobby", []byte(`{"text":"hello"}`)); err != nil {
		log.Fatal(err)
	}
	p := <-received
	fmt.Println(p.Channel, p.Offset, string(p.Data))
	// Output: chat:lobby 1 {"text":"hello"}
}

// Load the recent history of a channel, then subscribe from its position
// so that nothing published in between is missed.
func ExampleClient_History() {
	addr, stop := startExampleServer()
	defer stop()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	c, err := client.New("ws://"+addr+"/ws", client.Options{})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	if err := c.Connect(ctx); err != nil {
		log.Fatal(err)
	}
	for _, text := range []string{`"one"`, `"two"`, `"three"`} {
		if _, err := c.Publish(ctx, "chat:news", []byte(text)); err != nil {
			log.Fatal(err)
		}
	}
	h, err := c.History(ctx, "chat:news", client.HistoryOptions{Limit: 2, Reverse: true})
	if err != nil {
		log.Fatal(err)
	}
	for _, p := range h.Publications {
		fmt.Println("history", p.Offset, string(p.Data))
	}

	live := make(chan client.Publication, 1)
	sub, err := c.Subscribe("chat:news", func(p client.Publication) { live <- p },
		client.WithSince(h.Position),
		client.OnSubscribed(func(e client.SubscribedEvent) {
			fmt.Println("subscribed, recovered:", e.Recovered)
		}))
	if err != nil {
		log.Fatal(err)
	}
	if err := sub.Ready(ctx); err != nil {
		log.Fatal(err)
	}
	if _, err := c.Publish(ctx, "chat:news", []byte(`"four"`)); err != nil {
		log.Fatal(err)
	}
	p := <-live
	fmt.Println("live", p.Offset, string(p.Data))
	// Output:
	// history 3 "three"
	// history 2 "two"
	// subscribed, recovered: true
	// live 4 "four"
}

// Errors carry the server's error code.
func ExampleError() {
	addr, stop := startExampleServer()
	defer stop()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	c, err := client.New("ws://"+addr+"/ws", client.Options{})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	if err := c.Connect(ctx); err != nil {
		log.Fatal(err)
	}
	_, err = c.Publish(ctx, "nowhere:x", []byte(`1`))
	if e, ok := err.(*client.Error); ok {
		fmt.Println(e.Code == client.CodeUnknownChannel, e.Temporary)
	}
	// Output: true false
}

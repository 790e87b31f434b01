package netpoll_test

import (
	"bytes"
	"fmt"
	"io"
	"net"

	"github.com/heraldhq/herald/internal/netpoll"
)

// upper answers every read with its upper-case form.
type upper struct{ closed chan error }

func (upper) OnData(c *netpoll.Conn, data []byte) {
	// data is only valid during the call; Write keeps a reference, so it
	// gets its own copy.
	c.Write(bytes.ToUpper(data))
}

func (u upper) OnClose(c *netpoll.Conn, err error) { u.closed <- err }

func Example() {
	p, err := netpoll.New(netpoll.Options{})
	if err != nil {
		panic(err)
	}
	defer p.Close()

	server, client := net.Pipe() // a TCP connection would be moved to epoll
	h := upper{closed: make(chan error, 1)}
	if _, err := p.Register(server, h); err != nil {
		panic(err)
	}
	client.Write([]byte("hello"))
	reply := make([]byte, 5)
	io.ReadFull(client, reply)
	fmt.Println(string(reply))
	client.Close()
	fmt.Println(<-h.closed)
	// Output:
	// HELLO
	// EOF
}

// Command peer runs one of the comparison servers of the benchmarks:
// another Go WebSocket library doing the job of herald's fan-out, written
// the way that library's documentation suggests, speaking the minimal
// "raw" protocol the load generator drives (see internal/loadgen):
//
//	client -> {"sub":"CHANNEL"}                 server -> {"ok":"CHANNEL"}
//	client -> {"pub":"CHANNEL","data":PAYLOAD}  server sends PAYLOAD to every subscriber
//	client -> {"pub":"CHANNEL","id":N,"data":PAYLOAD}   the same, then server -> {"id":N}
//
// Each publication is one text frame holding PAYLOAD, framed once and
// written to every subscriber. Publishing through HTTP and /metrics are
// package peer's (bench/peer), shared with the centrifuge server.
//
//	peer -impl gorilla -addr 127.0.0.1:18081
//	peer -impl gws -addr 127.0.0.1:18082
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"strconv"

	"github.com/heraldhq/herald/bench/peer"
)

// command is what a client sends.
type command struct {
	Sub  string          `json:"sub"`
	Pub  string          `json:"pub"`
	ID   uint64          `json:"id"` // pub only: answer {"id":ID} once published
	Data json.RawMessage `json:"data"`
}

// ackFrame is the answer to a pub command that carries an id.
func ackFrame(id uint64) []byte {
	return append(strconv.AppendUint([]byte(`{"id":`), id, 10), '}')
}

// broker is what both implementations provide to the HTTP side.
type broker interface {
	http.Handler // the WebSocket endpoint
	publish(channel string, data []byte)
}

func main() {
	impl := flag.String("impl", "gorilla", "implementation: gorilla or gws")
	addr := flag.String("addr", "127.0.0.1:18081", "listen address")
	queue := flag.Int("queue", 1024, "messages that may wait per connection before it is dropped (gorilla)")
	flag.Parse()
	var b broker
	switch *impl {
	case "gorilla":
		b = newGorillaHub(*queue)
	case "gws":
		b = newGWSHub()
	default:
		log.Fatalf("peer: unknown -impl %q", *impl)
	}
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		log.Fatalf("peer: %v", err)
	}
	fmt.Printf("peer %s listening on %s\n", *impl, ln.Addr())
	log.Fatal(http.Serve(ln, newMux(b)))
}

// newMux serves b at /ws with the comparison servers' HTTP side.
func newMux(b broker) *http.ServeMux { return peer.NewMux(b, b.publish) }

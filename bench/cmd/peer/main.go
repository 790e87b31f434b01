// Command peer runs one of the comparison servers of the benchmarks:
// another Go WebSocket library doing the job of herald's fan-out, written
// the way that library's documentation suggests, speaking the minimal
// "raw" protocol the load generator drives (see internal/loadgen):
//
//	client -> {"sub":"CHANNEL"}                 server -> {"ok":"CHANNEL"}
//	client -> {"pub":"CHANNEL","data":PAYLOAD}  server sends PAYLOAD to every subscriber
//	client -> {"pub":"CHANNEL","id":N,"data":PAYLOAD}   the same, then server -> {"id":N}
//	POST /publish {"channel":"CHANNEL","data":PAYLOAD} -> 200 {}
//	POST /api/batch {"commands":[{"publish":{"channel":"CHANNEL","data":PAYLOAD}},...]}
//	    -> 200 {"replies":[{"result":{}},...]}   (herald's batch shape, publish only)
//
// Each publication is one text frame holding PAYLOAD, framed once and
// written to every subscriber. /metrics reports the Go runtime figures
// the idle-memory workload reads, under the Prometheus Go collector's
// names.
//
//	peer -impl gorilla -addr 127.0.0.1:18081
//	peer -impl gws -addr 127.0.0.1:18082
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"runtime"
	"strconv"
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

// publishRequest is the body of POST /publish.
type publishRequest struct {
	Channel string          `json:"channel"`
	Data    json.RawMessage `json:"data"`
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

// newMux serves the WebSocket endpoint, /publish, /api/batch and /metrics.
func newMux(b broker) *http.ServeMux {
	mux := http.NewServeMux()
	mux.Handle("/ws", b)
	mux.HandleFunc("/publish", func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			http.Error(w, "POST only", http.StatusMethodNotAllowed)
			return
		}
		var req publishRequest
		if err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&req); err != nil || req.Channel == "" || len(req.Data) == 0 {
			http.Error(w, `{"error":"bad request"}`, http.StatusBadRequest)
			return
		}
		b.publish(req.Channel, req.Data)
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, "{}")
	})
	mux.HandleFunc("/api/batch", serveBatch(b))
	mux.HandleFunc("/metrics", func(w http.ResponseWriter, _ *http.Request) {
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		fmt.Fprintf(w, "go_memstats_heap_inuse_bytes %d\ngo_memstats_stack_inuse_bytes %d\ngo_goroutines %d\n",
			ms.HeapInuse, ms.StackInuse, runtime.NumGoroutine())
	})
	return mux
}

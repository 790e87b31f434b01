// Package peer is the HTTP side shared by the comparison servers of the
// benchmarks (bench/cmd/peer and bench/centrifuge): whatever WebSocket
// library a server is built on, the load generator publishes to it and
// reads its memory figures the same way.
//
//	POST /publish {"channel":"CHANNEL","data":PAYLOAD} -> 200 {}
//	POST /api/batch {"commands":[{"publish":{"channel":"CHANNEL","data":PAYLOAD}},...]}
//	    -> 200 {"replies":[{"result":{}},...]}   (herald's batch shape, publish only)
//	GET /metrics   the Go runtime figures the idle-memory workload reads,
//	               under the Prometheus Go collector's names
//
// The WebSocket endpoint is /ws.
package peer

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"runtime"
)

// PublishFunc hands one publication to every subscriber of channel. It
// must not keep data after it returns.
type PublishFunc func(channel string, data []byte)

// publishRequest is the body of POST /publish and one batch command.
type publishRequest struct {
	Channel string          `json:"channel"`
	Data    json.RawMessage `json:"data"`
}

// maxPublishBody bounds the body of POST /publish.
const maxPublishBody = 1 << 20

// NewMux serves ws at /ws, and /publish, /api/batch and /metrics.
func NewMux(ws http.Handler, publish PublishFunc) *http.ServeMux {
	mux := http.NewServeMux()
	mux.Handle("/ws", ws)
	mux.HandleFunc("/publish", func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			http.Error(w, "POST only", http.StatusMethodNotAllowed)
			return
		}
		var req publishRequest
		if err := json.NewDecoder(io.LimitReader(r.Body, maxPublishBody)).Decode(&req); err != nil || req.Channel == "" || len(req.Data) == 0 {
			http.Error(w, `{"error":"bad request"}`, http.StatusBadRequest)
			return
		}
		publish(req.Channel, req.Data)
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, "{}")
	})
	mux.HandleFunc("/api/batch", serveBatch(publish))
	mux.HandleFunc("/metrics", func(w http.ResponseWriter, _ *http.Request) {
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		fmt.Fprintf(w, "go_memstats_heap_inuse_bytes %d\ngo_memstats_stack_inuse_bytes %d\ngo_goroutines %d\n",
			ms.HeapInuse, ms.StackInuse, runtime.NumGoroutine())
	})
	return mux
}

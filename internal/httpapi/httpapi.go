// Package httpapi is herald's server API: the HTTP/1.1 JSON endpoints under
// /api/ through which application backends publish and manage clients.
//
// Every request is a POST with a JSON object body and the X-API-Key header;
// every response is a JSON object. Errors look like
//
//	{"error": {"code": 102, "message": "unknown channel namespace \"nope\""}}
//
// where code is a client protocol error code (docs/protocol.md) and the
// HTTP status says who is at fault:
//
//	400  malformed JSON, unknown fields, bad parameters, unknown namespace, data missing
//	401  X-API-Key missing or wrong
//	403  the namespace forbids the operation
//	404  no such API method
//	405  not a POST
//	413  body larger than Options.MaxBodyBytes
//	429  rate limited by the backend
//	503  the broker is unavailable (retry later)
//	500  anything else (logged)
//
// POST /api/batch runs a list of commands ({"publish": {...}}: the method
// name and the body of that method's own endpoint) in order and answers
// one result or error per command, so busy backends pay one request for
// many publications.
//
// Publication and message data pass through as raw JSON: the request's data
// value is forwarded byte for byte (after the decoder validated it) and is
// never decoded into Go values; responses carry stored data compacted. The endpoints and their bodies are documented in
// docs/api.md.
//
// The bodies of the publish path, a publish request and a batch of publish
// commands, are scanned by hand rather than with encoding/json's
// reflection; anything outside their usual shape, and every malformed
// body, goes through encoding/json, so answers and errors are the same
// either way (see scan.go).
//
// An API is safe for concurrent use; it holds no per-request state.
package httpapi

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/heraldhq/herald/internal/hub"
	"github.com/heraldhq/herald/internal/metrics"
	"github.com/heraldhq/herald/internal/wire"
)

// Backend is what the API needs from the hub. Methods return *wire.Error
// for refusals the caller can fix (unknown channel, feature off) and errors
// wrapping hub.ErrBrokerUnavailable when the broker is down. They must be
// safe for concurrent use.
type Backend interface {
	// Publish publishes data (one raw JSON value) to channel.
	Publish(ctx context.Context, channel string, data []byte) (wire.StreamPosition, error)
	// Broadcast publishes data to every channel. It validates every
	// channel first and publishes nothing (returning the error) if one is
	// invalid; afterwards each channel's outcome is reported at its index.
	Broadcast(ctx context.Context, channels []string, data []byte) ([]BroadcastOutcome, error)
	// Send delivers data to every connection of user, cluster-wide.
	Send(ctx context.Context, user string, data []byte) error
	Presence(ctx context.Context, channel string) (map[string]*wire.ClientInfo, error)
	PresenceStats(ctx context.Context, channel string) (hub.PresenceStats, error)
	History(ctx context.Context, channel string, opts hub.HistoryOptions) (hub.HistoryResult, error)
	// Unsubscribe removes user's subscriptions to channel on every node.
	Unsubscribe(ctx context.Context, user, channel string) error
	// Disconnect closes every connection of user with d.
	Disconnect(ctx context.Context, user string, d wire.Disconnect) error
	// Channels lists channels with subscribers on this node.
	Channels(ctx context.Context) (map[string]ChannelInfo, error)
	// Info describes the nodes.
	Info(ctx context.Context) ([]NodeInfo, error)
}

// BroadcastOutcome is the result of publishing to one channel of a
// broadcast: its position, or the error.
type BroadcastOutcome struct {
	Position wire.StreamPosition
	Err      error
}

// ChannelInfo describes one active channel.
type ChannelInfo struct {
	NumClients int `json:"num_clients"`
}

// NodeInfo describes one node.
type NodeInfo struct {
	Name             string `json:"name"`
	Version          string `json:"version"`
	UptimeSeconds    int64  `json:"uptime"`
	NumClients       int    `json:"num_clients"`
	NumUsers         int    `json:"num_users"`
	NumChannels      int    `json:"num_channels"`
	NumSubscriptions int    `json:"num_subscriptions"`
}

// Options configure an API. APIKey is required; the zero value of every
// other field is a sensible default.
type Options struct {
	// APIKey is compared in constant time with each request's X-API-Key.
	APIKey string
	// MaxBodyBytes bounds request bodies; larger ones get 413 before they
	// are read. Default 1 MiB.
	MaxBodyBytes int64
	// MaxHistoryLimit caps the limit of a history request (and replaces a
	// negative "all" limit). Default 1000.
	MaxHistoryLimit int
	// MaxBroadcastChannels bounds the channels of one broadcast. Default 1000.
	MaxBroadcastChannels int
	// MaxBatchCommands bounds the commands of one batch request; a body
	// with more is refused (400) before the rest is decoded. Default 1000.
	MaxBatchCommands int
	// Timeout bounds reading each request's body and its calls into the
	// backend, all the commands of a batch together (and, doubled,
	// writing the response). Default 10 s.
	Timeout time.Duration
	// Metrics, when set, counts requests by method and status.
	Metrics *metrics.Metrics
	// Logger receives internal errors (500s). Default slog.Default().
	Logger *slog.Logger
}

// API serves /api/. Create it with New.
type API struct {
	b        Backend
	opts     Options
	keyHash  [sha256.Size]byte
	handlers map[string]func(context.Context, []byte) (any, error)
}

// New returns the API over b.
func New(b Backend, opts Options) (*API, error) {
	if opts.APIKey == "" {
		return nil, errors.New("httpapi: APIKey is required")
	}
	if opts.MaxBodyBytes <= 0 {
		opts.MaxBodyBytes = 1 << 20
	}
	if opts.MaxHistoryLimit <= 0 {
		opts.MaxHistoryLimit = 1000
	}
	if opts.MaxBroadcastChannels <= 0 {
		opts.MaxBroadcastChannels = 1000
	}
	if opts.MaxBatchCommands <= 0 {
		opts.MaxBatchCommands = 1000
	}
	if opts.Timeout <= 0 {
		opts.Timeout = 10 * time.Second
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	a := &API{b: b, opts: opts, keyHash: sha256.Sum256([]byte(opts.APIKey))}
	a.handlers = map[string]func(context.Context, []byte) (any, error){
		"publish":        a.publishEndpoint,
		"broadcast":      endpoint(a.broadcast),
		"send":           endpoint(a.send),
		"presence":       endpoint(a.presence),
		"presence_stats": endpoint(a.presenceStats),
		"history":        endpoint(a.history),
		"unsubscribe":    endpoint(a.unsubscribe),
		"disconnect":     endpoint(a.disconnect),
		"channels":       endpoint(a.channels),
		"info":           endpoint(a.info),
	}
	// A batch runs its commands through batchCommand's fields, which have
	// none for batch itself, so a batch cannot nest.
	a.handlers[batchMethod] = a.batch
	return a, nil
}

// Prefix is the path the API is mounted under.
const Prefix = "/api/"

// apiError is an error with the HTTP status and wire code to answer with.
type apiError struct {
	status  int
	code    uint32
	message string
}

func (e *apiError) Error() string { return e.message }

func badRequest(format string, args ...any) error {
	return &apiError{status: http.StatusBadRequest, code: wire.ErrBadRequest, message: fmt.Sprintf(format, args...)}
}

// ServeHTTP implements http.Handler for paths under Prefix.
func (a *API) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	name := strings.TrimPrefix(r.URL.Path, Prefix)
	h, ok := a.handlers[name]
	label := name
	if !ok {
		label = "unknown" // bounded label cardinality
	}
	status := a.serve(w, r, name, h, ok)
	a.opts.Metrics.ObserveAPIRequest(label, status, time.Since(start))
}

func (a *API) serve(w http.ResponseWriter, r *http.Request, name string, h func(context.Context, []byte) (any, error), ok bool) int {
	if !ok {
		return writeError(w, &apiError{status: http.StatusNotFound, code: wire.ErrMethodNotFound,
			message: fmt.Sprintf("unknown API method %q", name)})
	}
	got := sha256.Sum256([]byte(r.Header.Get("X-API-Key")))
	if r.Header.Get("X-API-Key") == "" || subtle.ConstantTimeCompare(got[:], a.keyHash[:]) != 1 {
		return writeError(w, &apiError{status: http.StatusUnauthorized, code: wire.ErrUnauthorized,
			message: "missing or wrong X-API-Key"})
	}
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		return writeError(w, &apiError{status: http.StatusMethodNotAllowed, code: wire.ErrBadRequest,
			message: fmt.Sprintf("method %s not allowed: use POST", r.Method)})
	}
	if r.ContentLength > a.opts.MaxBodyBytes {
		return writeError(w, tooLarge(a.opts.MaxBodyBytes))
	}
	// A client trickling its body or not reading the answer must not hold
	// the connection forever; the server's own timeouts cannot cover this
	// because WebSocket upgrades share the listener. Writers that cannot
	// set deadlines (tests' recorders) are fine without them.
	rc := http.NewResponseController(w)
	deadline := time.Now().Add(a.opts.Timeout)
	_ = rc.SetReadDeadline(deadline)
	_ = rc.SetWriteDeadline(deadline.Add(a.opts.Timeout))
	buf := getBodyBuffer(r.ContentLength)
	defer putBodyBuffer(buf)
	body, err := readAll(http.MaxBytesReader(w, r.Body, a.opts.MaxBodyBytes), (*buf)[:0])
	*buf = body
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return writeError(w, tooLarge(a.opts.MaxBodyBytes))
		}
		return writeError(w, &apiError{status: http.StatusBadRequest, code: wire.ErrBadRequest, message: fmt.Sprintf("reading body: %v", err)})
	}
	ctx, cancel := context.WithTimeout(r.Context(), a.opts.Timeout)
	defer cancel()
	res, err := h(ctx, body)
	if err != nil {
		return a.writeBackendError(w, name, err)
	}
	return writeJSON(w, http.StatusOK, res)
}

// Request bodies are read into pooled buffers: a busy backend's requests
// then cost no allocation and copying as the body grows. Nothing the API
// decodes from a body refers to it afterwards (strings and data are
// copied), so a buffer is reused as soon as its request is answered.
var bodyBuffers = sync.Pool{New: func() any { return new([]byte) }}

const (
	// minBodyBuffer is a body buffer's initial capacity: a typical
	// request fits.
	minBodyBuffer = 4 << 10
	// maxPooledBodyBuffer bounds the buffers kept for reuse, so that a
	// few large requests do not pin their memory.
	maxPooledBodyBuffer = 256 << 10
)

// getBodyBuffer returns a buffer for a body of contentLength bytes (-1 if
// unknown), which the caller has already checked against MaxBodyBytes.
func getBodyBuffer(contentLength int64) *[]byte {
	buf := bodyBuffers.Get().(*[]byte)
	// One byte more than the body lets the read see the end of the body
	// without growing the buffer. A declared length is not trusted
	// further than the pooled size: a larger body grows the buffer as it
	// arrives.
	if want := int(min(contentLength+1, maxPooledBodyBuffer)); cap(*buf) < want {
		*buf = make([]byte, 0, max(want, minBodyBuffer))
	} else if cap(*buf) == 0 {
		*buf = make([]byte, 0, minBodyBuffer)
	}
	return buf
}

func putBodyBuffer(buf *[]byte) {
	if cap(*buf) > maxPooledBodyBuffer {
		*buf = nil
	}
	*buf = (*buf)[:0]
	bodyBuffers.Put(buf)
}

// readAll is io.ReadAll reading into buf.
func readAll(r io.Reader, buf []byte) ([]byte, error) {
	for {
		n, err := r.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if err != nil {
			if err == io.EOF { // as io.ReadAll: Read returns EOF itself, unwrapped
				err = nil
			}
			return buf, err
		}
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
	}
}

func tooLarge(limit int64) *apiError {
	return &apiError{status: http.StatusRequestEntityTooLarge, code: wire.ErrLimitExceeded,
		message: fmt.Sprintf("request body larger than %d bytes", limit)}
}

// writeBackendError maps err to a status and code. Internal errors are
// logged and answered without their text, which may describe internals.
func (a *API) writeBackendError(w http.ResponseWriter, method string, err error) int {
	var ae *apiError
	if errors.As(err, &ae) {
		return writeError(w, ae)
	}
	if errors.Is(err, hub.ErrBrokerUnavailable) {
		return writeError(w, &apiError{status: http.StatusServiceUnavailable, code: wire.ErrBrokerUnavailable,
			message: "broker unavailable, retry later"})
	}
	var we *wire.Error
	if errors.As(err, &we) {
		return writeError(w, &apiError{status: statusForCode(we.Code), code: we.Code, message: we.Message})
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return writeError(w, &apiError{status: http.StatusServiceUnavailable, code: wire.ErrInternal,
			message: "timed out, retry later"})
	}
	a.opts.Logger.Error("server API request failed", "method", method, "error", err)
	return writeError(w, &apiError{status: http.StatusInternalServerError, code: wire.ErrInternal,
		message: "internal error"})
}

func statusForCode(code uint32) int {
	switch code {
	case wire.ErrUnknownChannel, wire.ErrBadRequest, wire.ErrDataNotJSON, wire.ErrNotAvailable,
		wire.ErrUnrecoverable, wire.ErrNotSubscribed, wire.ErrAlreadySubscribed:
		return http.StatusBadRequest
	case wire.ErrLimitExceeded:
		return http.StatusRequestEntityTooLarge
	case wire.ErrPermissionDenied:
		return http.StatusForbidden
	case wire.ErrUnauthorized, wire.ErrTokenExpired:
		return http.StatusUnauthorized
	case wire.ErrUserNotFound, wire.ErrConnectionNotFound:
		return http.StatusNotFound
	case wire.ErrTooManyRequests:
		return http.StatusTooManyRequests
	case wire.ErrBrokerUnavailable:
		return http.StatusServiceUnavailable
	}
	return http.StatusInternalServerError
}

type errorBody struct {
	Error struct {
		Code    uint32 `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

func writeError(w http.ResponseWriter, e *apiError) int {
	var b errorBody
	b.Error.Code = e.code
	b.Error.Message = e.message
	return writeJSON(w, e.status, b)
}

// encodedJSON is a response body already encoded, as json.Marshal would
// have encoded the value it stands for.
type encodedJSON []byte

func writeJSON(w http.ResponseWriter, status int, v any) int {
	body, ok := v.(encodedJSON)
	if !ok {
		var err error
		if body, err = json.Marshal(v); err != nil {
			status = http.StatusInternalServerError
			body = []byte(`{"error":{"code":100,"message":"encoding the response failed"}}`)
		}
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = w.Write(append(body, '\n'))
	return status
}

// decode parses body as exactly one JSON object into v, refusing unknown
// fields.
func decode(body []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		if errors.Is(err, io.EOF) {
			return badRequest("empty body: want a JSON object")
		}
		return badRequest("malformed JSON: %v", err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return badRequest("malformed JSON: trailing data after the object")
	}
	return nil
}

// requireData checks the data field: present (null is a value) and, as
// the decoder already guarantees for json.RawMessage, one JSON value.
func requireData(data json.RawMessage) error {
	if len(data) == 0 {
		return &apiError{status: http.StatusBadRequest, code: wire.ErrDataNotJSON,
			message: "data is required: one JSON value"}
	}
	return nil
}

func requireChannel(ch string) error {
	if ch == "" {
		return badRequest("channel is required")
	}
	return nil
}

package httpapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"

	"github.com/heraldhq/herald/internal/wire"
)

// batchCommand is one command of a batch: an object with exactly one
// field, named after the method, whose value is the body that method
// takes on its own endpoint. Decoding it decodes the parameters too, so a
// batch's body is parsed once.
type batchCommand struct {
	Publish       *publishRequest     `json:"publish"`
	Broadcast     *broadcastRequest   `json:"broadcast"`
	Send          *sendRequest        `json:"send"`
	Presence      *channelRequest     `json:"presence"`
	PresenceStats *channelRequest     `json:"presence_stats"`
	History       *historyRequest     `json:"history"`
	Unsubscribe   *unsubscribeRequest `json:"unsubscribe"`
	Disconnect    *disconnectRequest  `json:"disconnect"`
	Channels      *noParams           `json:"channels"`
	Info          *noParams           `json:"info"`
}

// boundCall is a batch command's method, bound to its decoded request.
type boundCall struct {
	method string
	run    func(context.Context) (any, error)
}

// bind binds run to req when the command named this method (req set).
func bind[R any](method string, req *R, run func(context.Context, *R) (any, error)) boundCall {
	if req == nil {
		return boundCall{}
	}
	return boundCall{method, func(ctx context.Context) (any, error) { return run(ctx, req) }}
}

// runCommand runs c's method; method is its name for logs ("" when c
// does not name exactly one).
func (a *API) runCommand(ctx context.Context, c *batchCommand) (method string, res any, err error) {
	var call boundCall
	n := 0
	for _, b := range [...]boundCall{
		bind("publish", c.Publish, a.publish),
		bind("broadcast", c.Broadcast, a.broadcast),
		bind("send", c.Send, a.send),
		bind("presence", c.Presence, a.presence),
		bind("presence_stats", c.PresenceStats, a.presenceStats),
		bind("history", c.History, a.history),
		bind("unsubscribe", c.Unsubscribe, a.unsubscribe),
		bind("disconnect", c.Disconnect, a.disconnect),
		bind("channels", c.Channels, a.channels),
		bind("info", c.Info, a.info),
	} {
		if b.run != nil {
			call = b
			n++
		}
	}
	if n != 1 {
		return "", nil, badRequest("a command is an object with exactly one method, got %d", n)
	}
	res, err = call.run(ctx)
	return call.method, res, err
}

// batchReply is one command's outcome: exactly one of Result and Error.
type batchReply struct {
	Result any         `json:"result,omitempty"`
	Error  *wire.Error `json:"error,omitempty"`
}

// batch runs several commands of one request in order, so a backend
// publishing thousands of messages per second pays one HTTP round trip
// for many of them, and publications to one channel keep their order. A
// malformed body or more than MaxBatchCommands commands fails the whole
// request; after that every command reports its own outcome at its index
// and one failure does not stop the others. Commands share the request's
// Timeout.
func (a *API) batch(ctx context.Context, body []byte) (any, error) {
	cmds, err := a.decodeBatch(body)
	if err != nil {
		return nil, err
	}
	replies := make([]batchReply, len(cmds))
	for i := range cmds {
		method, res, err := a.runCommand(ctx, &cmds[i])
		if err != nil {
			replies[i].Error = a.commandError(method, err)
			continue
		}
		replies[i].Result = res
	}
	return struct {
		Replies []batchReply `json:"replies"`
	}{replies}, nil
}

// batchMethod is the name of the batch method, which a batch cannot
// contain (batchCommand has no field for it).
const batchMethod = "batch"

// decodeBatch parses {"commands": [...]} in one pass, refusing the body as
// soon as it holds more than MaxBatchCommands commands, before decoding
// (and keeping) any more of them.
func (a *API) decodeBatch(body []byte) ([]batchCommand, error) {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	malformed := func(err error) error {
		if errors.Is(err, io.EOF) {
			return badRequest("malformed JSON: unexpected end of the body")
		}
		return badRequest("malformed JSON: %v", err)
	}
	tok, err := dec.Token()
	if errors.Is(err, io.EOF) {
		return nil, badRequest("empty body: want a JSON object")
	}
	if err != nil {
		return nil, malformed(err)
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return nil, badRequest("malformed JSON: want a JSON object")
	}
	var cmds []batchCommand
	seen := false
	for dec.More() {
		if tok, err = dec.Token(); err != nil {
			return nil, malformed(err)
		}
		if key, _ := tok.(string); key != "commands" {
			return nil, badRequest("malformed JSON: unknown field %s", quote(key))
		}
		if seen {
			return nil, badRequest("malformed JSON: commands given twice")
		}
		seen = true
		if tok, err = dec.Token(); err != nil {
			return nil, malformed(err)
		}
		if d, ok := tok.(json.Delim); !ok || d != '[' {
			return nil, badRequest("commands must be an array")
		}
		cmds = make([]batchCommand, 0, min(a.opts.MaxBatchCommands, 64))
		for dec.More() {
			if len(cmds) == a.opts.MaxBatchCommands {
				return nil, badRequest("more than the limit of %d commands", a.opts.MaxBatchCommands)
			}
			cmds = append(cmds, batchCommand{})
			if err := dec.Decode(&cmds[len(cmds)-1]); err != nil {
				return nil, malformed(err)
			}
		}
		if _, err := dec.Token(); err != nil { // ]
			return nil, malformed(err)
		}
	}
	if _, err := dec.Token(); err != nil { // }
		return nil, malformed(err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, badRequest("malformed JSON: trailing data after the object")
	}
	if len(cmds) == 0 {
		return nil, badRequest("commands is required: at least one command")
	}
	return cmds, nil
}

// commandError is the code and message a failed command of a batch
// reports: what its own endpoint would have answered, without the status.
func (a *API) commandError(method string, err error) *wire.Error {
	var ae *apiError
	if errors.As(err, &ae) {
		return &wire.Error{Code: ae.code, Message: ae.message}
	}
	return a.wireError(method, err)
}

func quote(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

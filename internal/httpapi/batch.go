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

// runCommand runs c's method and returns its reply. A publish's position
// stays unboxed in the reply: batches are mostly publications.
func (a *API) runCommand(ctx context.Context, c *batchCommand) commandReply {
	n := 0
	for _, set := range [...]bool{
		c.Publish != nil, c.Broadcast != nil, c.Send != nil, c.Presence != nil, c.PresenceStats != nil,
		c.History != nil, c.Unsubscribe != nil, c.Disconnect != nil, c.Channels != nil, c.Info != nil,
	} {
		if set {
			n++
		}
	}
	if n != 1 {
		return commandReply{err: a.commandError("", badRequest("a command is an object with exactly one method, got %d", n))}
	}
	var (
		method string
		res    any
		err    error
	)
	switch {
	case c.Publish != nil:
		pos, err := a.publishPosition(ctx, c.Publish)
		if err != nil {
			return commandReply{err: a.commandError("publish", err)}
		}
		return commandReply{pos: pos, isPos: true}
	case c.Broadcast != nil:
		method = "broadcast"
		res, err = a.broadcast(ctx, c.Broadcast)
	case c.Send != nil:
		method = "send"
		res, err = a.send(ctx, c.Send)
	case c.Presence != nil:
		method = "presence"
		res, err = a.presence(ctx, c.Presence)
	case c.PresenceStats != nil:
		method = "presence_stats"
		res, err = a.presenceStats(ctx, c.PresenceStats)
	case c.History != nil:
		method = "history"
		res, err = a.history(ctx, c.History)
	case c.Unsubscribe != nil:
		method = "unsubscribe"
		res, err = a.unsubscribe(ctx, c.Unsubscribe)
	case c.Disconnect != nil:
		method = "disconnect"
		res, err = a.disconnect(ctx, c.Disconnect)
	case c.Channels != nil:
		method = "channels"
		res, err = a.channels(ctx, c.Channels)
	case c.Info != nil:
		method = "info"
		res, err = a.info(ctx, c.Info)
	}
	if err != nil {
		return commandReply{err: a.commandError(method, err)}
	}
	return commandReply{result: res}
}

// batchReply is one command's outcome as the response shows it: exactly
// one of Result and Error.
type batchReply struct {
	Result any         `json:"result,omitempty"`
	Error  *wire.Error `json:"error,omitempty"`
}

// commandReply is one command's outcome: a publish's position (isPos), or
// another method's result, or err.
type commandReply struct {
	pos    positionJSON
	isPos  bool
	result any
	err    *wire.Error
}

// batchResponse is the response body of a batch, as encoding/json would
// write it.
type batchResponse struct {
	Replies []batchReply `json:"replies"`
}

func (r *commandReply) batchReply() batchReply {
	if r.isPos {
		return batchReply{Result: r.pos}
	}
	return batchReply{Result: r.result, Error: r.err}
}

// batch runs several commands of one request in order, so a backend
// publishing thousands of messages per second pays one HTTP round trip
// for many of them, and publications to one channel keep their order. A
// malformed body or more than MaxBatchCommands commands fails the whole
// request; after that every command reports its own outcome at its index
// and one failure does not stop the others. Commands share the request's
// Timeout.
func (a *API) batch(ctx context.Context, body []byte) (any, error) {
	cmds, ok := scanPublishBatch(body, a.opts.MaxBatchCommands)
	if !ok {
		var err error
		if cmds, err = a.decodeBatch(body); err != nil {
			return nil, err
		}
	}
	replies := make([]commandReply, len(cmds))
	for i := range cmds {
		replies[i] = a.runCommand(ctx, &cmds[i])
	}
	return encodeReplies(replies), nil
}

// encodeReplies writes the response of a batch: byte for byte what
// encoding/json makes of batchResponse, without reflection for the
// publish results that make up most batches.
func encodeReplies(replies []commandReply) any {
	out := make([]byte, 0, 16+len(replies)*48)
	out = append(out, `{"replies":[`...)
	for i := range replies {
		if i > 0 {
			out = append(out, ',')
		}
		r := &replies[i]
		var v any
		switch {
		case r.isPos:
			out = append(out, `{"result":`...)
			out = appendPosition(out, r.pos)
			out = append(out, '}')
			continue
		case r.err != nil:
			out = append(out, `{"error":`...)
			v = r.err
		case r.result != nil:
			out = append(out, `{"result":`...)
			v = r.result
		default:
			out = append(out, "{}"...)
			continue
		}
		b, err := json.Marshal(v)
		if err != nil {
			// Let the response writer meet (and answer) the same failure.
			res := batchResponse{make([]batchReply, len(replies))}
			for i := range replies {
				res.Replies[i] = replies[i].batchReply()
			}
			return res
		}
		out = append(out, b...)
		out = append(out, '}')
	}
	return encodedJSON(append(out, "]}"...))
}

// appendJSONString appends s as encoding/json writes a string: quoted,
// with HTML-sensitive characters escaped.
func appendJSONString(dst []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c > 0x7e || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			b, _ := json.Marshal(s) // a string always encodes
			return append(dst, b...)
		}
	}
	dst = append(dst, '"')
	dst = append(dst, s...)
	return append(dst, '"')
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

package peer

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
)

// maxBatchCommands bounds the commands of one POST /api/batch, as
// herald's default does.
const maxBatchCommands = 1000

// maxBatchBody bounds its body.
const maxBatchBody = 1 << 20

// batchCommand is one command of a batch; only publish is served.
type batchCommand struct {
	Publish *publishRequest `json:"publish"`
}

// decodeBatch parses herald's batch body {"commands":[{"publish":{...}},...]}
// in one pass, refusing it as soon as it holds more than
// maxBatchCommands commands.
func decodeBatch(body []byte) ([]batchCommand, error) {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := expectDelim(dec, '{'); err != nil {
		return nil, err
	}
	var cmds []batchCommand
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, err
		}
		if key, _ := tok.(string); key != "commands" || cmds != nil {
			return nil, fmt.Errorf("unexpected field %v", tok)
		}
		if err := expectDelim(dec, '['); err != nil {
			return nil, err
		}
		cmds = make([]batchCommand, 0, 64)
		for dec.More() {
			if len(cmds) == maxBatchCommands {
				return nil, fmt.Errorf("more than %d commands", maxBatchCommands)
			}
			cmds = append(cmds, batchCommand{})
			if err := dec.Decode(&cmds[len(cmds)-1]); err != nil {
				return nil, err
			}
		}
		if err := expectDelim(dec, ']'); err != nil {
			return nil, err
		}
	}
	if err := expectDelim(dec, '}'); err != nil {
		return nil, err
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, errors.New("trailing data")
	}
	if len(cmds) == 0 {
		return nil, errors.New("no commands")
	}
	return cmds, nil
}

func expectDelim(dec *json.Decoder, want json.Delim) error {
	tok, err := dec.Token()
	if err != nil {
		return err
	}
	if d, ok := tok.(json.Delim); !ok || d != want {
		return fmt.Errorf("want %q, got %v", want, tok)
	}
	return nil
}

// serveBatch is POST /api/batch: each command is published in order and
// answered {"result":{}}, or {"error":...} when it is not a publish with
// a channel and data; a malformed body is a 400.
func serveBatch(publish PublishFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			http.Error(w, `{"error":{"code":107,"message":"POST only"}}`, http.StatusMethodNotAllowed)
			return
		}
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBatchBody))
		if err != nil {
			http.Error(w, `{"error":{"code":106,"message":"body too large"}}`, http.StatusRequestEntityTooLarge)
			return
		}
		cmds, err := decodeBatch(body)
		if err != nil {
			msg, _ := json.Marshal("malformed batch: " + err.Error())
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusBadRequest)
			fmt.Fprintf(w, `{"error":{"code":107,"message":%s}}`, msg)
			return
		}
		out := make([]byte, 0, 16+len(cmds)*len(`{"result":{}},`))
		out = append(out, `{"replies":[`...)
		for i, c := range cmds {
			if i > 0 {
				out = append(out, ',')
			}
			if p := c.Publish; p == nil || p.Channel == "" || len(p.Data) == 0 {
				out = append(out, `{"error":{"code":107,"message":"want a publish with channel and data"}}`...)
				continue
			}
			publish(c.Publish.Channel, c.Publish.Data)
			out = append(out, `{"result":{}}`...)
		}
		out = append(out, "]}"...)
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(out)
	}
}

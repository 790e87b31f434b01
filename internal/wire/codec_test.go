package wire

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"reflect"
	"strings"
	"testing"
)

var codecs = []Codec{JSON, Binary}

func TestCodecRoundTripCommands(t *testing.T) {
	for _, c := range codecs {
		for _, s := range sampleCommands() {
			t.Run(c.Name()+"/"+s.name, func(t *testing.T) {
				b := c.AppendCommand(nil, s.cmd)
				got, err := c.DecodeCommand(b)
				if err != nil {
					t.Fatalf("decode %q: %v", b, err)
				}
				if !reflect.DeepEqual(got, s.cmd) {
					t.Fatalf("round trip of %q:\n got %s\nwant %s", b, dump(got), dump(s.cmd))
				}
				// Appending after existing bytes must not disturb them.
				prefixed := c.AppendCommand([]byte("xyz"), s.cmd)
				if !bytes.Equal(prefixed[3:], b) || string(prefixed[:3]) != "xyz" {
					t.Fatalf("append to a non-empty buffer differs")
				}
			})
		}
	}
}

func TestCodecRoundTripReplies(t *testing.T) {
	for _, c := range codecs {
		for _, s := range sampleReplies() {
			t.Run(c.Name()+"/"+s.name, func(t *testing.T) {
				methodOf := func(id uint32) Method {
					if id != s.reply.ID {
						t.Errorf("methodOf(%d), want id %d", id, s.reply.ID)
					}
					return s.method
				}
				b := c.AppendReply(nil, s.reply)
				got, err := c.DecodeReply(b, methodOf)
				if err != nil {
					t.Fatalf("decode %q: %v", b, err)
				}
				if !reflect.DeepEqual(got, s.reply) {
					t.Fatalf("round trip of %q:\n got %s\nwant %s", b, dump(got), dump(s.reply))
				}
				r, p, err := c.DecodeServerMessage(b, methodOf)
				if err != nil || p != nil || !reflect.DeepEqual(r, s.reply) {
					t.Fatalf("DecodeServerMessage = %s, %v, %v", dump(r), p, err)
				}
				if _, err := c.DecodePush(b); err == nil {
					t.Fatalf("DecodePush accepted a reply")
				}
			})
		}
	}
}

func TestCodecRoundTripPushes(t *testing.T) {
	for _, c := range codecs {
		for _, s := range samplePushes() {
			t.Run(c.Name()+"/"+s.name, func(t *testing.T) {
				b := c.AppendPush(nil, s.push)
				got, err := c.DecodePush(b)
				if err != nil {
					t.Fatalf("decode %q: %v", b, err)
				}
				if !reflect.DeepEqual(got, s.push) {
					t.Fatalf("round trip of %q:\n got %s\nwant %s", b, dump(got), dump(s.push))
				}
				r, p, err := c.DecodeServerMessage(b, nil)
				if err != nil || r != nil || !reflect.DeepEqual(p, s.push) {
					t.Fatalf("DecodeServerMessage = %v, %s, %v", r, dump(p), err)
				}
				if _, err := c.DecodeReply(b, func(uint32) Method { return MethodPing }); err == nil {
					t.Fatalf("DecodeReply accepted a push")
				}
			})
		}
	}
}

func TestJSONOutputIsValidAndMatchesEncodingJSON(t *testing.T) {
	// Every JSON encoding is one valid JSON value, and decoding it with
	// encoding/json into the tagged message types (which ignore raw data)
	// agrees on the plain fields.
	for _, s := range sampleCommands() {
		if b := JSON.AppendCommand(nil, s.cmd); !json.Valid(b) {
			t.Errorf("command %s: invalid JSON %s", s.name, b)
		}
	}
	for _, s := range sampleReplies() {
		if b := JSON.AppendReply(nil, s.reply); !json.Valid(b) {
			t.Errorf("reply %s: invalid JSON %s", s.name, b)
		}
	}
	for _, s := range samplePushes() {
		if b := JSON.AppendPush(nil, s.push); !json.Valid(b) {
			t.Errorf("push %s: invalid JSON %s", s.name, b)
		}
	}
}

func TestJSONGolden(t *testing.T) {
	tests := []struct {
		name string
		got  []byte
		want string
	}{
		{"publication", JSON.AppendPush(nil, samplePublicationPush()),
			`{"type":"publication","channel":"chat:room1","offset":43,"data":{"text":"hi"},"info":{"client":"c8f3a1","user":"42"},"time":1763750000000}`},
		{"nil data is null", JSON.AppendPush(nil, &Push{Type: PushMessage, Message: &Message{}}),
			`{"type":"message","data":null}`},
		{"publication without payload", JSON.AppendPush(nil, &Push{Type: PushPublication, Channel: "a"}),
			`{"type":"publication","channel":"a","data":null}`},
		{"data verbatim", JSON.AppendCommand(nil, &Command{ID: 5, Method: MethodPublish,
			Publish: &PublishParams{Channel: "c", Data: []byte(" {\"a\" : [1, 2]}\n")}}),
			`{"id":5,"method":"publish","params":{"channel":"c","data": {"a" : [1, 2]}` + "\n}}"},
		{"empty result", JSON.AppendReply(nil, &Reply{ID: 4}), `{"id":4,"result":{}}`},
		{"error", JSON.AppendReply(nil, &Reply{ID: 2, Error: &Error{Code: 114, Message: "down", Temporary: true}}),
			`{"id":2,"error":{"code":114,"message":"down","temporary":true}}`},
		{"error wins", JSON.AppendReply(nil, &Reply{ID: 2, Error: &Error{Code: 100, Message: "x"}, Publish: &PublishResult{Offset: 1}}),
			`{"id":2,"error":{"code":100,"message":"x"}}`},
		{"history empty", JSON.AppendReply(nil, &Reply{ID: 8, History: &HistoryResult{}}),
			`{"id":8,"result":{"publications":[],"offset":0,"epoch":""}}`},
		{"presence sorted", JSON.AppendReply(nil, &Reply{ID: 6, Presence: &PresenceResult{Presence: map[string]*ClientInfo{
			"b": {Client: "b"}, "a": {Client: "a", ConnInfo: []byte(`{}`)}, "c": {Client: "c"}}}}),
			`{"id":6,"result":{"presence":{"a":{"client":"a","conn_info":{}},"b":{"client":"b"},"c":{"client":"c"}}}}`},
		{"presence nil", JSON.AppendReply(nil, &Reply{ID: 6, Presence: &PresenceResult{}}),
			`{"id":6,"result":{"presence":{}}}`},
		{"pong", JSON.AppendCommand(nil, &Command{Method: MethodPong}), `{"method":"pong"}`},
		{"connect without params", JSON.AppendCommand(nil, &Command{ID: 1, Method: MethodConnect}), `{"id":1,"method":"connect"}`},
		{"disconnect", JSON.AppendPush(nil, &Push{Type: PushDisconnect, Disconnect: &Disconnect{Code: 3501}}),
			`{"type":"disconnect","code":3501,"reconnect":false}`},
	}
	for _, tt := range tests {
		if string(tt.got) != tt.want {
			t.Errorf("%s:\n got %s\nwant %s", tt.name, tt.got, tt.want)
		}
	}
}

func TestJSONStringEscaping(t *testing.T) {
	cases := []string{
		"", "plain", `quote " backslash \ slash /`, "\x00\x01\x1f\x7f", "\b\f\n\r\t",
		"<html> & 'apos'", "é ü 日本 🎉", "\u2028\u2029", "bad \xff\xfe utf8 \xc3", "\xed\xa0\x80 surrogate",
		"trailing \xe6\x97",
	}
	for i := 0; i < 256; i++ {
		cases = append(cases, string([]byte{byte(i)}), "a"+string([]byte{byte(i)})+"b")
	}
	for _, s := range cases {
		var want bytes.Buffer
		enc := json.NewEncoder(&want)
		enc.SetEscapeHTML(false)
		if err := enc.Encode(s); err != nil {
			t.Fatal(err)
		}
		got := appendJSONString(nil, s)
		if string(got) != strings.TrimSuffix(want.String(), "\n") {
			t.Errorf("appendJSONString(%q) = %s, encoding/json %s", s, got, want.String())
		}
	}
}

func TestDecodeCommandErrors(t *testing.T) {
	big := append([]byte(`{"id":1,"method":"publish","params":{"channel":"c","data":"`), bytes.Repeat([]byte("x"), DefaultMaxMessageSize)...)
	big = append(big, `"}}`...)
	tests := []struct {
		name   string
		codec  Codec
		in     []byte
		id     uint32
		code   uint32
		closeC uint16 // expected ProtocolError code instead of a CommandError
	}{
		{"json not json", JSON, []byte(`hello`), 0, ErrBadRequest, 0},
		{"json empty", JSON, nil, 0, ErrBadRequest, 0},
		{"json array", JSON, []byte(`[1]`), 0, ErrBadRequest, 0},
		{"json unknown method", JSON, []byte(`{"id":7,"method":"nope"}`), 7, ErrMethodNotFound, 0},
		{"json missing method", JSON, []byte(`{"id":7}`), 7, ErrBadRequest, 0},
		{"json method not string", JSON, []byte(`{"id":7,"method":1}`), 7, ErrBadRequest, 0},
		{"json missing id", JSON, []byte(`{"method":"ping"}`), 0, ErrBadRequest, 0},
		{"json zero id", JSON, []byte(`{"id":0,"method":"ping"}`), 0, ErrBadRequest, 0},
		{"json null id", JSON, []byte(`{"id":null,"method":"subscribe"}`), 0, ErrBadRequest, 0},
		{"json negative id", JSON, []byte(`{"id":-1,"method":"ping"}`), 0, ErrBadRequest, 0},
		{"json fractional id", JSON, []byte(`{"id":1.5,"method":"ping"}`), 0, ErrBadRequest, 0},
		{"json exponent id", JSON, []byte(`{"id":1e2,"method":"ping"}`), 0, ErrBadRequest, 0},
		{"json string id", JSON, []byte(`{"id":"1","method":"ping"}`), 0, ErrBadRequest, 0},
		{"json id overflow", JSON, []byte(`{"id":4294967296,"method":"ping"}`), 0, ErrBadRequest, 0},
		{"json params string", JSON, []byte(`{"id":3,"method":"subscribe","params":"chat"}`), 3, ErrBadRequest, 0},
		{"json params array", JSON, []byte(`{"id":3,"method":"subscribe","params":["chat"]}`), 3, ErrBadRequest, 0},
		{"json channel number", JSON, []byte(`{"id":3,"method":"subscribe","params":{"channel":5}}`), 3, ErrBadRequest, 0},
		{"json since offset negative", JSON, []byte(`{"id":3,"method":"subscribe","params":{"channel":"a","since":{"offset":-1}}}`), 3, ErrBadRequest, 0},
		{"json limit string", JSON, []byte(`{"id":3,"method":"history","params":{"channel":"a","limit":"2"}}`), 3, ErrBadRequest, 0},
		{"json trailing garbage", JSON, []byte(`{"id":3,"method":"ping"} x`), 0, ErrBadRequest, 0},
		{"json too large", JSON, big, 0, 0, DisconnectMessageTooBig},
		{"binary empty", Binary, nil, 0, ErrBadRequest, 0},
		{"binary not a command", Binary, []byte{2, 0, 1}, 0, ErrBadRequest, 0},
		{"binary unknown method", Binary, []byte{1, 99, 7}, 7, ErrMethodNotFound, 0},
		{"binary method zero", Binary, []byte{1, 0, 7}, 7, ErrMethodNotFound, 0},
		{"binary missing id", Binary, []byte{1, byte(MethodPing), 0}, 0, ErrBadRequest, 0},
		{"binary id overflow", Binary, []byte{1, byte(MethodPing), 0x80, 0x80, 0x80, 0x80, 0x10}, 0, ErrBadRequest, 0},
		{"binary varint overflow", Binary, []byte{1, byte(MethodPing), 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01}, 0, ErrBadRequest, 0},
		{"binary truncated params", Binary, []byte{1, byte(MethodSubscribe), 3, 5, 'c', 'h'}, 3, ErrBadRequest, 0},
		{"binary huge string length", Binary, []byte{1, byte(MethodSubscribe), 3, 0xff, 0xff, 0xff, 0xff, 0x0f, 'c'}, 3, ErrBadRequest, 0},
		{"binary trailing bytes", Binary, []byte{1, byte(MethodPing), 9, 0}, 9, ErrBadRequest, 0},
		{"binary unknown flag", Binary, []byte{1, byte(MethodSubscribe), 3, 1, 'c', 0x80}, 3, ErrBadRequest, 0},
		{"binary too large", Binary, make([]byte, DefaultMaxMessageSize+1), 0, 0, DisconnectMessageTooBig},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cmd, err := tt.codec.DecodeCommand(tt.in)
			if err == nil {
				t.Fatalf("decoded %s, want an error", dump(cmd))
			}
			if tt.closeC != 0 {
				var pe *ProtocolError
				if !errors.As(err, &pe) || pe.Code != tt.closeC {
					t.Fatalf("err = %v, want ProtocolError %d", err, tt.closeC)
				}
				return
			}
			var ce *CommandError
			if !errors.As(err, &ce) {
				t.Fatalf("err = %T %v, want *CommandError", err, err)
			}
			if ce.ID != tt.id || ce.Code != tt.code {
				t.Fatalf("err = %v: id %d code %d, want id %d code %d", err, ce.ID, ce.Code, tt.id, tt.code)
			}
			rep := ce.Reply()
			if (rep != nil) != (tt.id != 0) {
				t.Fatalf("Reply() = %v for id %d", rep, tt.id)
			}
			if rep != nil {
				if got := string(JSON.AppendReply(nil, rep)); !strings.Contains(got, fmt.Sprintf(`"code":%d`, tt.code)) {
					t.Fatalf("error reply %s lacks code %d", got, tt.code)
				}
			}
		})
	}
}

func TestDecodeCommandLimit(t *testing.T) {
	cmd := &Command{ID: 1, Method: MethodPublish, Publish: &PublishParams{Channel: "c", Data: []byte(`"` + strings.Repeat("x", 100) + `"`)}}
	for _, c := range []Codec{JSONCodec{MaxMessageSize: 64}, BinaryCodec{MaxMessageSize: 64}} {
		b := c.AppendCommand(nil, cmd)
		_, err := c.DecodeCommand(b)
		var pe *ProtocolError
		if !errors.As(err, &pe) || pe.Code != DisconnectMessageTooBig || !errors.Is(err, ErrMessageTooLarge) {
			t.Errorf("%s: err = %v, want message too large", c.Name(), err)
		}
		if pe != nil {
			d := pe.Disconnect()
			if d.Type != PushDisconnect || d.Disconnect.Code != DisconnectMessageTooBig || d.Disconnect.Reconnect {
				t.Errorf("%s: disconnect push %+v", c.Name(), d.Disconnect)
			}
		}
		if _, err := c.DecodeReply(make([]byte, 65), nil); !errors.Is(err, ErrMessageTooLarge) {
			t.Errorf("%s: DecodeReply err = %v", c.Name(), err)
		}
		if _, err := c.DecodePush(make([]byte, 65)); err == nil {
			t.Errorf("%s: DecodePush accepted oversized input", c.Name())
		}
	}
}

func TestDecodeCommandNormalizesParams(t *testing.T) {
	// Methods with params always decode with their params pointer set, and
	// JSON null data decodes as nil.
	for _, in := range []string{
		`{"id":1,"method":"connect"}`, `{"id":1,"method":"connect","params":null}`, `{"id":1,"method":"connect","params":{}}`,
	} {
		cmd, err := JSON.DecodeCommand([]byte(in))
		if err != nil || cmd.Connect == nil || *cmd.Connect != (ConnectParams{}) {
			t.Errorf("%s: %s, %v", in, dump(cmd), err)
		}
	}
	cmd, err := JSON.DecodeCommand([]byte(`{"id":2,"method":"publish","params":{"channel":"c","data":null}}`))
	if err != nil || cmd.Publish == nil || cmd.Publish.Data != nil {
		t.Errorf("null data: %s, %v", dump(cmd), err)
	}
	cmd, err = JSON.DecodeCommand([]byte(`{"id":2,"method":"ping","params":{"x":1},"extra":[1,2]}`))
	if err != nil || cmd.Method != MethodPing {
		t.Errorf("ping with extra fields: %s, %v", dump(cmd), err)
	}
	cmd, err = JSON.DecodeCommand([]byte(`{"id":5,"method":"pong"}`))
	if err != nil || cmd.Method != MethodPong || cmd.ID != 5 {
		t.Errorf("pong with id: %s, %v", dump(cmd), err)
	}
	cmd, err = Binary.DecodeCommand([]byte{1, byte(MethodPublish), 2, 1, 'c', 0})
	if err != nil || cmd.Publish == nil || cmd.Publish.Data != nil || cmd.Publish.Channel != "c" {
		t.Errorf("binary empty data: %s, %v", dump(cmd), err)
	}
}

func TestDecodeServerMessageErrors(t *testing.T) {
	tests := []struct {
		codec Codec
		in    string
	}{
		{JSON, `not json`},
		{JSON, `{}`},
		{JSON, `{"id":0,"result":{}}`},
		{JSON, `{"id":1}`},
		{JSON, `{"id":1,"result":[]}`},
		{JSON, `{"type":"nope"}`},
		{JSON, `{"type":"disconnect","code":70000}`},
		{JSON, `{"id":99,"result":{}}`}, // no command in flight with id 99
		{JSON, `{"id":1,"result":{"client":5}}`},
		{Binary, ""},
		{Binary, "\x01\x08\x01"},                     // a command
		{Binary, "\x02\x07\x01"},                     // truncated history result
		{Binary, "\x02\x00\x00"},                     // reply id 0
		{Binary, "\x02\x33\x01"},                     // unknown reply kind
		{Binary, "\x03\x09"},                         // unknown push type
		{Binary, "\x03\x07\x00"},                     // trailing byte after ping
		{Binary, "\x03\x06\x80\x80\x04"},             // disconnect code > 65535
		{Binary, "\x02\x07\x01\x00\x00\xff\xff\x03"}, // publication count larger than input
	}
	methodOf := func(id uint32) Method {
		if id == 1 {
			return MethodConnect
		}
		return MethodUnknown
	}
	for _, tt := range tests {
		r, p, err := tt.codec.DecodeServerMessage([]byte(tt.in), methodOf)
		var pe *ProtocolError
		if !errors.As(err, &pe) || pe.Code != DisconnectBadRequest {
			t.Errorf("%s %q: got %v %v err %v, want ProtocolError 3501", tt.codec.Name(), tt.in, r, p, err)
		}
	}
}

func TestCodecFor(t *testing.T) {
	if c, ok := CodecFor(EncodingJSON); !ok || c.Name() != "json" || c.Encoding() != EncodingJSON {
		t.Errorf("CodecFor(json) = %v, %v", c, ok)
	}
	if c, ok := CodecFor(EncodingBinary); !ok || c.Name() != "binary" || c.Encoding() != EncodingBinary {
		t.Errorf("CodecFor(binary) = %v, %v", c, ok)
	}
	if _, ok := CodecFor(7); ok {
		t.Errorf("CodecFor(7) succeeded")
	}
	if EncodingBinary.String() != "binary" || Encoding(9).String() != "encoding(9)" {
		t.Errorf("Encoding.String")
	}
}

func TestValidJSON(t *testing.T) {
	for in, want := range map[string]bool{
		`{"a":1}`: true, ` 1 `: true, `null`: true, `"x"`: true, ``: false, `{`: false, `1 2`: false, `{"a":1}x`: false,
	} {
		if got := ValidJSON([]byte(in)); got != want {
			t.Errorf("ValidJSON(%q) = %v", in, got)
		}
	}
}

// TestProtocolDocExamples decodes every JSON example in docs/protocol.md
// with the decoder for its kind, checks that re-encoding reproduces it,
// and that the binary codec round-trips the same message.
func TestProtocolDocExamples(t *testing.T) {
	doc, err := os.ReadFile("../../docs/protocol.md")
	if err != nil {
		t.Fatal(err)
	}
	blocks := codeBlocks(string(doc), "json")
	if len(blocks) < 3 {
		t.Fatalf("found %d json blocks in docs/protocol.md", len(blocks))
	}
	n := 0
	for _, block := range blocks {
		inFlight := map[uint32]Method{}
		dec := json.NewDecoder(strings.NewReader(block))
		for {
			var raw json.RawMessage
			if err := dec.Decode(&raw); err == io.EOF {
				break
			} else if err != nil {
				t.Fatalf("example is not JSON: %v\n%s", err, block)
			}
			n++
			var probe map[string]json.RawMessage
			if err := json.Unmarshal(raw, &probe); err != nil {
				t.Fatalf("example %s is not an object", raw)
			}
			var jsonOut, again []byte
			switch {
			case probe["method"] != nil:
				cmd, err := JSON.DecodeCommand(raw)
				if err != nil {
					t.Fatalf("command example %s: %v", raw, err)
				}
				inFlight[cmd.ID] = cmd.Method
				jsonOut = JSON.AppendCommand(nil, cmd)
				b, err := Binary.DecodeCommand(Binary.AppendCommand(nil, cmd))
				if err != nil || !reflect.DeepEqual(b, cmd) {
					t.Fatalf("binary round trip of %s: %s, %v", raw, dump(b), err)
				}
				again = JSON.AppendCommand(nil, b)
			case probe["type"] != nil:
				p, err := JSON.DecodePush(raw)
				if err != nil {
					t.Fatalf("push example %s: %v", raw, err)
				}
				jsonOut = JSON.AppendPush(nil, p)
				b, err := Binary.DecodePush(Binary.AppendPush(nil, p))
				if err != nil || !reflect.DeepEqual(b, p) {
					t.Fatalf("binary round trip of %s: %s, %v", raw, dump(b), err)
				}
				again = JSON.AppendPush(nil, b)
			default:
				methodOf := func(id uint32) Method { return inFlight[id] }
				r, err := JSON.DecodeReply(raw, methodOf)
				if err != nil {
					t.Fatalf("reply example %s: %v", raw, err)
				}
				jsonOut = JSON.AppendReply(nil, r)
				b, err := Binary.DecodeReply(Binary.AppendReply(nil, r), nil)
				if err != nil || !reflect.DeepEqual(b, r) {
					t.Fatalf("binary round trip of %s: %s, %v", raw, dump(b), err)
				}
				again = JSON.AppendReply(nil, b)
			}
			if compact(t, jsonOut) != compact(t, raw) {
				t.Errorf("example re-encodes differently:\n doc  %s\n code %s", compact(t, raw), compact(t, jsonOut))
			}
			if !bytes.Equal(jsonOut, again) {
				t.Errorf("binary detour changed the JSON:\n%s\n%s", jsonOut, again)
			}
		}
	}
	if n < 25 {
		t.Errorf("checked only %d examples", n)
	}
}

// codeBlocks returns the contents of the fenced code blocks of the given
// language in a Markdown document.
func codeBlocks(doc, lang string) []string {
	var blocks []string
	lines := strings.Split(doc, "\n")
	for i := 0; i < len(lines); i++ {
		if strings.TrimSpace(lines[i]) != "```"+lang {
			continue
		}
		var b strings.Builder
		for i++; i < len(lines) && strings.TrimSpace(lines[i]) != "```"; i++ {
			b.WriteString(lines[i])
			b.WriteByte('\n')
		}
		blocks = append(blocks, b.String())
	}
	return blocks
}

func compact(t *testing.T, b []byte) string {
	t.Helper()
	var buf bytes.Buffer
	if err := json.Compact(&buf, b); err != nil {
		t.Fatalf("compact %s: %v", b, err)
	}
	return buf.String()
}

func dump(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprintf("%+v", v)
	}
	return string(b)
}

func TestJSONFastDecoderMatchesReference(t *testing.T) {
	inputs := []string{
		`{"id": 3, "method": "subscribe", "params": {"channel": "chat:room1", "since": {"offset": 38, "epoch": "k3Jd9a"}}}`,
		`{"params":{"data":{"a":[1,{"b":"}]\\\""}]},"channel":"c"},"method":"publish","id":7}`,
		`{"id":8,"method":"history","params":{"channel":"c","limit":-9223372036854775808,"reverse":false,"since":null}}`,
		`{"id":1,"method":"connect","params":{"token":"t","name":"日本","version":"1"}}`,
		`{"id":1,"method":"send","params":{"user":"u","data":null}}`,
		`{"method":"pong","id":null}`,
		` {"id":4294967295,"method":"ping","params":null} `,
	}
	for _, s := range sampleCommands() {
		inputs = append(inputs, string(JSON.AppendCommand(nil, s.cmd)))
	}
	for _, in := range inputs {
		fast, ok := decodeJSONCommandFast([]byte(in))
		if !ok {
			t.Errorf("fast decoder declined %s", in)
			continue
		}
		ref, err := decodeJSONCommandReflect([]byte(in))
		if err != nil || !reflect.DeepEqual(fast, ref) {
			t.Errorf("%s:\n fast %s\n ref  %s, %v", in, dump(fast), dump(ref), err)
		}
	}
	// Shapes the fast decoder leaves to encoding/json, which still
	// decodes them.
	for _, in := range []string{
		`{"ID":1,"Method":"ping"}`,
		`{"id":1,"method":"subscribe","params":{"channel":"\u0063"}}`,
		`{"id":1,"method":"subscribe","params":{"channel":"c","channel":"d"}}`,
		`{"id":1,"method":"subscribe","params":{"channel":"c"},"extra":true}`,
		`{"id":1,"method":"subscribe","params":{"channel":null}}`,
		"{\"id\":1,\"method\":\"subscribe\",\"params\":{\"channel\":\"\xff\"}}",
	} {
		if _, ok := decodeJSONCommandFast([]byte(in)); ok {
			t.Errorf("fast decoder accepted %s", in)
		}
		if _, err := JSON.DecodeCommand([]byte(in)); err != nil {
			t.Errorf("%s: %v", in, err)
		}
	}
}

// TestJSONFastDecoderMutations mutates valid commands at every byte (a set
// of structurally interesting replacements, and deletion) and checks that
// whenever the fast decoder accepts the result, encoding/json decodes the
// same command.
func TestJSONFastDecoderMutations(t *testing.T) {
	repl := []byte("\"\\{}[],: 0-+.eE1n\x01\xff")
	accepted := 0
	for _, s := range sampleCommands() {
		in := JSON.AppendCommand(nil, s.cmd)
		check := func(m []byte) {
			fast, ok := decodeJSONCommandFast(m)
			if !ok {
				return
			}
			accepted++
			ref, err := decodeJSONCommandReflect(m)
			if err != nil || !reflect.DeepEqual(fast, ref) {
				t.Fatalf("fast decoder disagrees on %q:\n fast %s\n ref  %s, %v", m, dump(fast), dump(ref), err)
			}
		}
		for i := range in {
			for _, c := range repl {
				m := bytes.Clone(in)
				m[i] = c
				check(m)
			}
			check(append(bytes.Clone(in[:i]), in[i+1:]...))
		}
	}
	if accepted == 0 {
		t.Fatal("no mutation was accepted by the fast decoder")
	}
}

// TestNilPayloadsEncodeAsZero checks that a message whose params, result
// or payload pointer is nil encodes like one with a zero value, so a
// caller's omission never produces a message the peer cannot decode.
func TestNilPayloadsEncodeAsZero(t *testing.T) {
	for _, c := range codecs {
		for m := MethodConnect; m <= MethodPong; m++ {
			cmd, err := c.DecodeCommand(c.AppendCommand(nil, &Command{ID: 1, Method: m}))
			if err != nil {
				t.Fatalf("%s %s: %v", c.Name(), m, err)
			}
			zero := reflect.ValueOf(cmd).Elem()
			for i := 2; i < zero.NumField(); i++ {
				f := zero.Field(i)
				if !f.IsNil() && !f.Elem().IsZero() {
					t.Errorf("%s %s: %s = %+v, want zero", c.Name(), m, zero.Type().Field(i).Name, f.Interface())
				}
			}
		}
		for typ := PushPublication; typ <= PushPing; typ++ {
			p, err := c.DecodePush(c.AppendPush(nil, &Push{Type: typ, Channel: "ch"}))
			if err != nil {
				t.Fatalf("%s push %s: %v", c.Name(), typ, err)
			}
			if p.Type != typ {
				t.Fatalf("%s push %s decoded as %s", c.Name(), typ, p.Type)
			}
			v := reflect.ValueOf(p).Elem()
			set := 0
			for i := 2; i < v.NumField(); i++ {
				if f := v.Field(i); !f.IsNil() {
					set++
					if !f.Elem().IsZero() {
						t.Errorf("%s push %s: %s = %+v, want zero", c.Name(), typ, v.Type().Field(i).Name, f.Interface())
					}
				}
			}
			if want := map[bool]int{true: 0, false: 1}[typ == PushPing]; set != want {
				t.Errorf("%s push %s: %d payload fields set", c.Name(), typ, set)
			}
		}
	}
}

func TestErrorStrings(t *testing.T) {
	cause := errors.New("cause")
	for _, err := range []error{
		&CommandError{ID: 3, Code: ErrBadRequest, Message: "invalid params", Err: cause},
		&ProtocolError{Code: DisconnectBadRequest, Reason: "malformed", Err: cause},
	} {
		if !strings.Contains(err.Error(), "cause") || !errors.Is(err, cause) {
			t.Errorf("%T: %q does not carry its cause", err, err.Error())
		}
	}
	if s := (&CommandError{ID: 3, Code: ErrMethodNotFound, Message: "unknown method"}).Error(); !strings.Contains(s, "104") {
		t.Errorf("CommandError.Error() = %q", s)
	}
	if s := (&ProtocolError{Code: DisconnectMessageTooBig, Reason: "frame too large"}).Error(); !strings.Contains(s, "1009") {
		t.Errorf("ProtocolError.Error() = %q", s)
	}
}

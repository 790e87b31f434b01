package session

import (
	"encoding/json"
	"testing"

	"github.com/heraldhq/herald/internal/wire"
)

// FuzzJSONCommandData checks the guarantee checkData relies on to skip a
// second validation for the JSON codec: whatever command the JSON codec
// decodes, its publish or send data is nil or one valid JSON value.
func FuzzJSONCommandData(f *testing.F) {
	for _, s := range []string{
		`{"id":1,"method":"publish","params":{"channel":"c","data":{"t":[1,2,{"x":null}]}}}`,
		`{"id":1,"method":"publish","params":{"channel":"c","data":"\u00e9\n"}}`,
		`{"id":1,"method":"publish","params":{"channel":"c","data":{"t":}}}`,
		`{"id":1,"method":"send","params":{"user":"u","data":-0.5e+7}}`,
		`{"ID":1,"Method":"publish","Params":{"Channel":"c","Data":[true , false]}}`,
		`{"id":1,"method":"publish","params":{"channel":"c","data":01}}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if !decodedDataValid(wire.JSON) {
			t.Fatal("the JSON codec must be trusted to validate data")
		}
		cmd, err := wire.JSON.DecodeCommand(b)
		if err != nil {
			return
		}
		var data []byte
		switch {
		case cmd.Publish != nil:
			data = cmd.Publish.Data
		case cmd.Send != nil:
			data = cmd.Send.Data
		}
		if data != nil && !json.Valid(data) {
			t.Fatalf("decoded %q with invalid data %q", b, data)
		}
	})
}

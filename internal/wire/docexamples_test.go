package wire

import (
	"bytes"
	"encoding/hex"
	"os"
	"strings"
	"testing"
)

// TestProtocolDocHexDumps checks every hex dump in docs/protocol.md
// against the bytes the code produces for the message it describes.
func TestProtocolDocHexDumps(t *testing.T) {
	doc, err := os.ReadFile("../../docs/protocol.md")
	if err != nil {
		t.Fatal(err)
	}
	connect := &Command{ID: 1, Method: MethodConnect, Connect: &ConnectParams{Token: "eyJ.x.y", Name: "herald-py", Version: "1.0"}}
	pub := &Push{Type: PushPublication, Channel: "chat:room1", Publication: &Publication{Offset: 42,
		Data: []byte(`{"text":"hi"}`), Info: &ClientInfo{Client: "c8f3a1", User: "42"}, Time: 1763750000000}}
	mustDatagram := func(d *Datagram) []byte {
		b, err := AppendDatagram(nil, d)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	want := map[string][]byte{
		"binary connect reply": Binary.AppendReply(nil, &Reply{ID: 1, Connect: &ConnectResult{
			Client: "c8f3a1", Version: "0.1.0", Ping: 25, Pong: true}}),
		"client hello, binary":           AppendClientHello(nil, ProtocolVersion, EncodingBinary),
		"server hello, ok":               AppendServerHello(nil, ProtocolVersion, EncodingBinary, HelloOK),
		"frame: binary connect command":  AppendFrame(nil, Binary.AppendCommand(nil, connect)),
		"frame: JSON connect command":    AppendFrame(nil, JSON.AppendCommand(nil, connect)),
		"frame: binary publication push": AppendFrame(nil, Binary.AppendPush(nil, pub)),
		"datagram: publication push": mustDatagram(&Datagram{Kind: DatagramData, Session: 0x1f2e3d4c5b6a7988,
			Secret: 0x0123456789abcdef, Seq: 7, Message: Binary.AppendPush(nil, pub)}),
		"datagram: connect (first 37 bytes)": mustDatagram(&Datagram{Kind: DatagramConnect, Nonce: 0xa1b2c3d4e5f60718,
			Message: Binary.AppendCommand(nil, connect)})[:37],
	}
	seen := map[string]bool{}
	for _, block := range codeBlocks(string(doc), "hex") {
		name, got := parseHexDump(t, block)
		w, ok := want[name]
		if !ok {
			t.Errorf("docs/protocol.md has a hex dump %q that no test checks", name)
			continue
		}
		seen[name] = true
		if !bytes.Equal(got, w) {
			t.Errorf("hex dump %q:\n doc  % x\n code % x", name, got, w)
		}
	}
	for name := range want {
		if !seen[name] {
			t.Errorf("hex dump %q missing from docs/protocol.md", name)
		}
	}
}

// parseHexDump reads a block whose first line is "# name" and whose other
// lines are hex bytes separated by spaces, each line optionally followed
// by a "# comment".
func parseHexDump(t *testing.T, block string) (string, []byte) {
	lines := strings.Split(strings.TrimSpace(block), "\n")
	name := strings.TrimSpace(strings.TrimPrefix(lines[0], "#"))
	var out []byte
	for _, line := range lines[1:] {
		if i := strings.Index(line, "#"); i >= 0 {
			line = line[:i]
		}
		for _, tok := range strings.Fields(line) {
			b, err := hex.DecodeString(tok)
			if err != nil || len(b) != 1 {
				t.Fatalf("hex dump %q: bad byte %q", name, tok)
			}
			out = append(out, b[0])
		}
	}
	return name, out
}

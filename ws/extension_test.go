package ws

import (
	"strings"
	"testing"
)

// RFC 6455 §9.1 grammar: elements, parameters, quoted values.
func TestForEachExtension(t *testing.T) {
	type elem struct {
		name   string
		params string // "name=value;name;..."
		valid  bool
	}
	cases := []struct {
		in   []string
		want []elem
	}{
		{[]string{"permessage-deflate"}, []elem{{"permessage-deflate", "", true}}},
		{[]string{"a; x=1; y , b;z=\"q\""}, []elem{{"a", "x=1;y", true}, {"b", "z=q", true}}},
		{[]string{"a", "b;c"}, []elem{{"a", "", true}, {"b", "c", true}}},
		{[]string{" , a ,, "}, []elem{{"a", "", true}}},
		{[]string{"a; x = \"1\""}, []elem{{"a", "x=1", true}}},
		{[]string{"a; x=\"a\\bc\""}, []elem{{"a", "x=abc", true}}},
		// Invalid elements are reported and skipped up to the next comma
		// outside quotes.
		{[]string{"a; x=\"1,2\", b"}, []elem{{"a", "x", false}, {"b", "", true}}},
		{[]string{"a;;b, c"}, []elem{{"a", "", false}, {"c", "", true}}},
		{[]string{"a; x=, c"}, []elem{{"a", "x", false}, {"c", "", true}}},
		{[]string{"a b, c"}, []elem{{"a", "", false}, {"c", "", true}}},
		{[]string{"a; x=\"unterminated"}, []elem{{"a", "x", false}}},
		{[]string{"=a, c"}, []elem{{"", "", false}, {"c", "", true}}},
		{[]string{"a;p1;p2;p3;p4;p5;p6;p7;p8;p9"}, []elem{{"a", "p1;p2;p3;p4;p5;p6;p7;p8", false}}},
	}
	for _, c := range cases {
		var got []elem
		forEachExtension(c.in, func(e *extension) bool {
			var ps []string
			for _, p := range e.paramList() {
				if p.hasValue {
					ps = append(ps, p.name+"="+p.value)
				} else {
					ps = append(ps, p.name)
				}
			}
			got = append(got, elem{e.name, strings.Join(ps, ";"), e.valid})
			return true
		})
		if len(got) != len(c.want) {
			t.Errorf("%q: got %+v, want %+v", c.in, got, c.want)
			continue
		}
		for i := range got {
			// The name and parameters of invalid elements are whatever was
			// parsed before the error; only validity matters for them.
			if got[i].valid != c.want[i].valid || (got[i].valid && got[i] != c.want[i]) {
				t.Errorf("%q element %d: got %+v, want %+v", c.in, i, got[i], c.want[i])
			}
		}
	}
}

// RFC 7692 §7.1: server-side negotiation, one table row per offer.
func TestNegotiateDeflate(t *testing.T) {
	const (
		noCtx   = "permessage-deflate; server_no_context_takeover; client_no_context_takeover"
		decline = ""
	)
	def := &CompressionOptions{}
	ctx := &CompressionOptions{ContextTakeover: true}
	small := &CompressionOptions{MaxWindowBits: 10}
	cases := []struct {
		name      string
		opts      *CompressionOptions
		offer     []string
		resp      string
		writeBits int // server's compressor window
		readBits  int
	}{
		{"§7 plain offer", def, []string{"permessage-deflate"}, noCtx, 15, 15},
		{"§7.1.2.2 client_max_window_bits without value", def, []string{"permessage-deflate; client_max_window_bits"}, noCtx, 15, 15},
		{"§7.1.2.2 client_max_window_bits hint", def, []string{"permessage-deflate; client_max_window_bits=10"}, noCtx, 15, 15},
		{"§7.1.2.1 server_max_window_bits honoured", def, []string{"permessage-deflate; server_max_window_bits=10"}, noCtx + "; server_max_window_bits=10", 10, 15},
		{"§7.1.2.1 server_max_window_bits=8", def, []string{"permessage-deflate; server_max_window_bits=8"}, noCtx + "; server_max_window_bits=8", 8, 15},
		{"§7.1.2.1 server_max_window_bits=15", def, []string{"permessage-deflate; server_max_window_bits=15"}, noCtx + "; server_max_window_bits=15", 15, 15},
		{"§7.1.2.1 quoted value", def, []string{`permessage-deflate; server_max_window_bits="9"`}, noCtx + "; server_max_window_bits=9", 9, 15},
		{"§7.1.2.1 server_max_window_bits needs a value", def, []string{"permessage-deflate; server_max_window_bits"}, decline, 0, 0},
		{"§7.1.2.1 window bits 7", def, []string{"permessage-deflate; server_max_window_bits=7"}, decline, 0, 0},
		{"§7.1.2.1 window bits 16", def, []string{"permessage-deflate; server_max_window_bits=16"}, decline, 0, 0},
		{"§7.1.2.1 leading zero", def, []string{"permessage-deflate; server_max_window_bits=010"}, decline, 0, 0},
		{"§7.1.2.1 not a number", def, []string{"permessage-deflate; server_max_window_bits=x"}, decline, 0, 0},
		{"§7.1.2.2 client bits 16", def, []string{"permessage-deflate; client_max_window_bits=16"}, decline, 0, 0},
		{"§7.1 unknown parameter", def, []string{"permessage-deflate; foo"}, decline, 0, 0},
		{"§7.1 unknown parameter, next offer", def, []string{"permessage-deflate; foo=1, permessage-deflate; client_max_window_bits"}, noCtx, 15, 15},
		{"§7.1 duplicate parameter", def, []string{"permessage-deflate; server_no_context_takeover; server_no_context_takeover"}, decline, 0, 0},
		{"§7.1 duplicate window bits", def, []string{"permessage-deflate; client_max_window_bits; client_max_window_bits=9"}, decline, 0, 0},
		{"§7.1.1.1 no_context_takeover takes no value", def, []string{"permessage-deflate; server_no_context_takeover=1"}, decline, 0, 0},
		{"§5 first acceptable offer wins", def, []string{"permessage-deflate; server_max_window_bits=9, permessage-deflate"}, noCtx + "; server_max_window_bits=9", 9, 15},
		{"§5 fallback offer", def, []string{"permessage-deflate; server_max_window_bits=99, permessage-deflate; server_max_window_bits=12"}, noCtx + "; server_max_window_bits=12", 12, 15},
		{"other extensions ignored", def, []string{"x-webkit-deflate-frame, permessage-deflate; client_max_window_bits"}, noCtx, 15, 15},
		{"several header lines", def, []string{"foo; bar=1", "permessage-deflate"}, noCtx, 15, 15},
		{"name is case-insensitive", def, []string{"PerMessage-Deflate; Server_Max_Window_Bits=11"}, noCtx + "; server_max_window_bits=11", 11, 15},
		{"malformed then valid", def, []string{`permessage-deflate; x="a,b", permessage-deflate`}, noCtx, 15, 15},
		{"malformed only", def, []string{"permessage-deflate;;"}, decline, 0, 0},
		{"no deflate offer", def, []string{"x-foo"}, decline, 0, 0},
		{"§7.1.1 context takeover kept", ctx, []string{"permessage-deflate; client_max_window_bits"}, "permessage-deflate", 15, 15},
		{"§7.1.1.1 server_no_context_takeover honoured", ctx, []string{"permessage-deflate; server_no_context_takeover"}, "permessage-deflate; server_no_context_takeover", 15, 15},
		{"§7.1.1.2 client_no_context_takeover echoed", ctx, []string{"permessage-deflate; client_no_context_takeover"}, "permessage-deflate; client_no_context_takeover", 15, 15},
		{"§7.1.2 smaller server window", small, []string{"permessage-deflate"}, noCtx + "; server_max_window_bits=10", 10, 15},
		{"§7.1.2.2 limit the client", small, []string{"permessage-deflate; client_max_window_bits"}, noCtx + "; server_max_window_bits=10; client_max_window_bits=10", 10, 10},
		{"§7.1.2 both limits, lowest wins", small, []string{"permessage-deflate; client_max_window_bits=9; server_max_window_bits=12"}, noCtx + "; server_max_window_bits=10; client_max_window_bits=9", 10, 9},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			resp, params, ok := negotiateDeflate(c.offer, c.opts)
			if c.resp == decline {
				if ok {
					t.Fatalf("offer %q accepted with %q, want decline", c.offer, resp.appendTo(nil))
				}
				return
			}
			if !ok {
				t.Fatalf("offer %q declined, want %q", c.offer, c.resp)
			}
			if got := string(resp.appendTo(nil)); got != c.resp {
				t.Errorf("response %q, want %q", got, c.resp)
			}
			if params.writeWindowBits != c.writeBits || params.readWindowBits != c.readBits {
				t.Errorf("window bits write %d read %d, want %d %d", params.writeWindowBits, params.readWindowBits, c.writeBits, c.readBits)
			}
			if params.writeNoContextTakeover != strings.Contains(c.resp, paramServerNoContext) ||
				params.readNoContextTakeover != strings.Contains(c.resp, paramClientNoContext) {
				t.Errorf("context takeover params %+v for response %q", params, c.resp)
			}
			if params.threshold != 256 || params.level != 1 {
				t.Errorf("defaults threshold %d level %d", params.threshold, params.level)
			}
		})
	}
}

// RFC 7692 §5 and §7.1: what a client accepts in the server's response.
func TestAcceptDeflateResponse(t *testing.T) {
	def := &CompressionOptions{}
	ctx := &CompressionOptions{ContextTakeover: true}
	small := &CompressionOptions{MaxWindowBits: 10}
	cases := []struct {
		name     string
		opts     *CompressionOptions
		resp     []string
		wantErr  bool
		none     bool
		writeNo  bool
		readNo   bool
		wBits    int
		rBits    int
		wantDesc string
	}{
		{name: "declined", opts: def, resp: nil, none: true},
		{name: "plain", opts: def, resp: []string{"permessage-deflate"}, writeNo: true, wBits: 15, rBits: 15},
		{name: "plain with context takeover", opts: ctx, resp: []string{"permessage-deflate"}, wBits: 15, rBits: 15},
		{name: "§7.1.1.1 server resets", opts: ctx, resp: []string{"permessage-deflate; server_no_context_takeover"}, readNo: true, wBits: 15, rBits: 15},
		{name: "§7.1.1.2 server asks client to reset", opts: ctx, resp: []string{"permessage-deflate; client_no_context_takeover"}, writeNo: true, wBits: 15, rBits: 15},
		{name: "§7.1.2.2 client window limited", opts: def, resp: []string{"permessage-deflate; client_max_window_bits=9"}, writeNo: true, wBits: 9, rBits: 15},
		{name: "§7.1.2.1 server window announced", opts: def, resp: []string{"permessage-deflate; server_max_window_bits=12"}, writeNo: true, wBits: 15, rBits: 12},
		{name: "§7.1.2.1 within our limit", opts: small, resp: []string{"permessage-deflate; server_max_window_bits=9"}, writeNo: true, wBits: 10, rBits: 9},
		{name: "§7.1.2.1 above our limit", opts: small, resp: []string{"permessage-deflate; server_max_window_bits=12"}, wantErr: true},
		{name: "§7.1.2.2 client bits need a value", opts: def, resp: []string{"permessage-deflate; client_max_window_bits"}, wantErr: true},
		{name: "§7.1.2 bad window", opts: def, resp: []string{"permessage-deflate; server_max_window_bits=16"}, wantErr: true},
		{name: "§7.1 unknown parameter", opts: def, resp: []string{"permessage-deflate; foo"}, wantErr: true},
		{name: "§7.1 duplicate parameter", opts: def, resp: []string{"permessage-deflate; server_no_context_takeover; server_no_context_takeover"}, wantErr: true},
		{name: "§9.1 unoffered extension", opts: def, resp: []string{"x-foo"}, wantErr: true},
		{name: "§9.1 two extensions", opts: def, resp: []string{"permessage-deflate", "permessage-deflate"}, wantErr: true},
		{name: "§9.1 not offered at all", opts: nil, resp: []string{"permessage-deflate"}, wantErr: true},
		{name: "malformed", opts: def, resp: []string{"permessage-deflate; ="}, wantErr: true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p, err := acceptDeflateResponse(c.resp, c.opts)
			if c.wantErr {
				if err != ErrBadExtension {
					t.Fatalf("err = %v, want ErrBadExtension", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if c.none {
				if p != nil {
					t.Fatalf("params %+v, want none", p)
				}
				return
			}
			if p.writeNoContextTakeover != c.writeNo || p.readNoContextTakeover != c.readNo || p.writeWindowBits != c.wBits || p.readWindowBits != c.rBits {
				t.Fatalf("params %+v, want writeNo %v readNo %v wBits %d rBits %d", *p, c.writeNo, c.readNo, c.wBits, c.rBits)
			}
		})
	}
}

// Every client offer we make is accepted by our server, and the two ends
// agree: what one compresses with, the other can inflate.
func TestDeflateOfferRoundTrip(t *testing.T) {
	var all []*CompressionOptions
	for _, ctx := range []bool{false, true} {
		for _, bits := range []int{0, 8, 9, 12, 15} {
			all = append(all, &CompressionOptions{ContextTakeover: ctx, MaxWindowBits: bits})
		}
	}
	for _, client := range all {
		for _, server := range all {
			offer := string(appendDeflateOffer(nil, client))
			resp, sp, ok := negotiateDeflate([]string{offer}, server)
			if !ok {
				t.Fatalf("server %+v declined our offer %q", *server, offer)
			}
			cp, err := acceptDeflateResponse([]string{string(resp.appendTo(nil))}, client)
			if err != nil || cp == nil {
				t.Fatalf("client %+v refused response %q to %q: %v", *client, resp.appendTo(nil), offer, err)
			}
			if sp.writeWindowBits > cp.readWindowBits || cp.writeWindowBits > sp.readWindowBits {
				t.Errorf("offer %q response %q: server writes %d/client expects %d, client writes %d/server expects %d",
					offer, resp.appendTo(nil), sp.writeWindowBits, cp.readWindowBits, cp.writeWindowBits, sp.readWindowBits)
			}
			if sp.writeNoContextTakeover != cp.readNoContextTakeover || (sp.readNoContextTakeover && !cp.writeNoContextTakeover) {
				t.Errorf("offer %q response %q: context takeover server %+v client %+v", offer, resp.appendTo(nil), sp, *cp)
			}
			if !client.ContextTakeover && !(cp.writeNoContextTakeover && cp.readNoContextTakeover) {
				t.Errorf("client without context takeover keeps a context: %+v", *cp)
			}
			if !server.ContextTakeover && !(sp.writeNoContextTakeover && sp.readNoContextTakeover) {
				t.Errorf("server without context takeover keeps a context: %+v", sp)
			}
		}
	}
}

func FuzzExtensions(f *testing.F) {
	for _, s := range []string{
		"permessage-deflate",
		"permessage-deflate; client_max_window_bits",
		"permessage-deflate; server_max_window_bits=10; client_no_context_takeover",
		`permessage-deflate; server_max_window_bits="9", permessage-deflate`,
		"x-webkit-deflate-frame, permessage-deflate; foo",
		`a; b="c\"d", e`,
	} {
		f.Add(s)
	}
	opts := []*CompressionOptions{{}, {ContextTakeover: true}, {MaxWindowBits: 9}}
	f.Fuzz(func(t *testing.T, header string) {
		forEachExtension([]string{header}, func(e *extension) bool {
			if !e.valid {
				return true
			}
			if !isToken(e.name) {
				t.Fatalf("valid element with name %q", e.name)
			}
			for _, p := range e.paramList() {
				if !isToken(p.name) || (p.hasValue && !isToken(p.value)) {
					t.Fatalf("valid element with parameter %+v", p)
				}
			}
			return true
		})
		for _, o := range opts {
			resp, params, ok := negotiateDeflate([]string{header}, o)
			if !ok {
				continue
			}
			// The response must be one a client accepts and must not
			// exceed any limit the offer set.
			text := string(resp.appendTo(nil))
			var n int
			forEachExtension([]string{text}, func(e *extension) bool {
				n++
				if _, ok := checkDeflate(e, true); !ok {
					t.Fatalf("response %q to %q is invalid", text, header)
				}
				return true
			})
			if n != 1 {
				t.Fatalf("response %q has %d elements", text, n)
			}
			if params.writeWindowBits < 8 || params.writeWindowBits > 15 || params.readWindowBits < 8 || params.readWindowBits > 15 {
				t.Fatalf("window bits out of range: %+v", params)
			}
			if !o.ContextTakeover && !(params.writeNoContextTakeover && params.readNoContextTakeover) {
				t.Fatalf("context takeover despite options: %+v", params)
			}
		}
		_, _ = acceptDeflateResponse([]string{header}, opts[0])
	})
}

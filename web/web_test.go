package web

import (
	"bytes"
	"compress/gzip"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/andybalholm/brotli"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

var (
	testScript = strings.Repeat("export function hello() { return 'hello, world'; }\n", 40)
	testStyle  = strings.Repeat("body { color: #222; background: #fff; }\n", 40)
	testPage   = `<!doctype html><html><head><link rel="stylesheet" href="style.css">` +
		`<script type="module" src="/app.js"></script><script src="missing.js"></script></head>` +
		`<body>` + strings.Repeat("<p>hello</p>", 50) + `</body></html>`
)

func testSite(t *testing.T) *site {
	t.Helper()
	s, err := newSite(fstest.MapFS{
		"index.html":   {Data: []byte(testPage)},
		"app.js":       {Data: []byte(testScript)},
		"style.css":    {Data: []byte(testStyle)},
		"tiny.txt":     {Data: []byte("tiny")},
		"img/logo.svg": {Data: []byte(`<svg xmlns="http://www.w3.org/2000/svg"/>`)},
		".hidden":      {Data: []byte("secret")},
	})
	if err != nil {
		t.Fatalf("newSite: %v", err)
	}
	return s
}

func do(t *testing.T, h http.Handler, method, target string, header map[string]string) *http.Response {
	t.Helper()
	req := httptest.NewRequest(method, target, nil)
	for k, v := range header {
		req.Header.Set(k, v)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec.Result()
}

func body(t *testing.T, resp *http.Response) []byte {
	t.Helper()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("read body: %v", err)
	}
	return b
}

func TestContentTypes(t *testing.T) {
	s := testSite(t)
	for _, tc := range []struct{ path, want string }{
		{"/", "text/html; charset=utf-8"},
		{"/index.html", "text/html; charset=utf-8"},
		{"/app.js", "text/javascript; charset=utf-8"},
		{"/style.css", "text/css; charset=utf-8"},
		{"/tiny.txt", "text/plain; charset=utf-8"},
		{"/img/logo.svg", "image/svg+xml"},
	} {
		resp := do(t, s, http.MethodGet, tc.path, nil)
		if resp.StatusCode != http.StatusOK {
			t.Errorf("GET %s: status %d, want 200", tc.path, resp.StatusCode)
		}
		if got := resp.Header.Get("Content-Type"); got != tc.want {
			t.Errorf("GET %s: Content-Type %q, want %q", tc.path, got, tc.want)
		}
		if got := resp.Header.Get("X-Content-Type-Options"); got != "nosniff" {
			t.Errorf("GET %s: X-Content-Type-Options %q, want nosniff", tc.path, got)
		}
	}
}

func TestIdentityBodyAndLength(t *testing.T) {
	s := testSite(t)
	resp := do(t, s, http.MethodGet, "/app.js", nil)
	b := body(t, resp)
	if string(b) != testScript {
		t.Fatalf("body differs from the file")
	}
	if resp.Header.Get("Content-Encoding") != "" {
		t.Errorf("Content-Encoding %q without Accept-Encoding", resp.Header.Get("Content-Encoding"))
	}
	if got := resp.Header.Get("Content-Length"); got != strconv.Itoa(len(testScript)) {
		t.Errorf("Content-Length %s, want %d", got, len(testScript))
	}
	if resp.Header.Get("Vary") != "Accept-Encoding" {
		t.Errorf("Vary %q, want Accept-Encoding", resp.Header.Get("Vary"))
	}
}

func TestNotFound(t *testing.T) {
	s := testSite(t)
	for _, p := range []string{"/nope.js", "/img", "/img/", "/.hidden", "/index.html/", "/../web.go"} {
		resp := do(t, s, http.MethodGet, p, nil)
		if resp.StatusCode != http.StatusNotFound {
			t.Errorf("GET %s: status %d, want 404", p, resp.StatusCode)
		}
	}
}

func TestMethodNotAllowed(t *testing.T) {
	s := testSite(t)
	for _, m := range []string{http.MethodPost, http.MethodPut, http.MethodDelete, http.MethodPatch, http.MethodOptions} {
		resp := do(t, s, m, "/app.js", nil)
		if resp.StatusCode != http.StatusMethodNotAllowed {
			t.Errorf("%s: status %d, want 405", m, resp.StatusCode)
		}
		if got := resp.Header.Get("Allow"); got != "GET, HEAD" {
			t.Errorf("%s: Allow %q, want \"GET, HEAD\"", m, got)
		}
	}
}

func TestHead(t *testing.T) {
	s := testSite(t)
	get := do(t, s, http.MethodGet, "/style.css", map[string]string{"Accept-Encoding": "gzip"})
	head := do(t, s, http.MethodHead, "/style.css", map[string]string{"Accept-Encoding": "gzip"})
	if head.StatusCode != http.StatusOK {
		t.Fatalf("HEAD status %d", head.StatusCode)
	}
	if b := body(t, head); len(b) != 0 {
		t.Errorf("HEAD returned a %d-byte body", len(b))
	}
	for _, k := range []string{"Content-Type", "Content-Length", "Content-Encoding", "ETag", "Cache-Control"} {
		if head.Header.Get(k) != get.Header.Get(k) {
			t.Errorf("HEAD %s %q differs from GET %q", k, head.Header.Get(k), get.Header.Get(k))
		}
	}
}

func TestCompressionNegotiation(t *testing.T) {
	s := testSite(t)
	for _, tc := range []struct {
		accept string
		want   string
	}{
		{"", ""},
		{"identity", ""},
		{"gzip", "gzip"},
		{"gzip, deflate", "gzip"},
		{"br", "br"},
		{"gzip, deflate, br, zstd", "br"},
		{"br;q=0.5, gzip", "gzip"},
		{"br;q=0, gzip;q=0", ""},
		{"GZIP", "gzip"},
		{"*", "br"},
		{"*;q=0.1, br;q=0", "gzip"},
		{"br;q=bogus, gzip;q=0.2", "gzip"},
	} {
		resp := do(t, s, http.MethodGet, "/app.js", map[string]string{"Accept-Encoding": tc.accept})
		if got := resp.Header.Get("Content-Encoding"); got != tc.want {
			t.Errorf("Accept-Encoding %q: Content-Encoding %q, want %q", tc.accept, got, tc.want)
			continue
		}
		b := body(t, resp)
		if resp.Header.Get("Content-Length") != strconv.Itoa(len(b)) {
			t.Errorf("Accept-Encoding %q: Content-Length %s, body %d bytes", tc.accept, resp.Header.Get("Content-Length"), len(b))
		}
		var r io.Reader = bytes.NewReader(b)
		switch tc.want {
		case "gzip":
			zr, err := gzip.NewReader(r)
			if err != nil {
				t.Fatalf("gzip reader: %v", err)
			}
			r = zr
		case "br":
			r = brotli.NewReader(r)
		}
		plain, err := io.ReadAll(r)
		if err != nil {
			t.Fatalf("Accept-Encoding %q: decode: %v", tc.accept, err)
		}
		if string(plain) != testScript {
			t.Errorf("Accept-Encoding %q: decoded body differs from the file", tc.accept)
		}
		if tc.want != "" && len(b) >= len(testScript) {
			t.Errorf("Accept-Encoding %q: %d bytes is not smaller than %d", tc.accept, len(b), len(testScript))
		}
	}
}

func TestSmallFilesAreNotCompressed(t *testing.T) {
	s := testSite(t)
	resp := do(t, s, http.MethodGet, "/tiny.txt", map[string]string{"Accept-Encoding": "br, gzip"})
	if got := resp.Header.Get("Content-Encoding"); got != "" {
		t.Errorf("Content-Encoding %q for a 4-byte file", got)
	}
	if got := resp.Header.Get("Vary"); got != "" {
		t.Errorf("Vary %q for a file with one representation", got)
	}
	if string(body(t, resp)) != "tiny" {
		t.Errorf("wrong body")
	}
}

func TestETagAndConditionalGet(t *testing.T) {
	s := testSite(t)
	etags := map[string]string{}
	for _, enc := range []string{"", "gzip", "br"} {
		resp := do(t, s, http.MethodGet, "/app.js", map[string]string{"Accept-Encoding": enc})
		etag := resp.Header.Get("ETag")
		if !regexp.MustCompile(`^"[0-9a-f]{20}(-gz|-br)?"$`).MatchString(etag) {
			t.Fatalf("encoding %q: ETag %q is not a quoted content hash", enc, etag)
		}
		for other, e := range etags {
			if e == etag {
				t.Errorf("encodings %q and %q share ETag %s", other, enc, etag)
			}
		}
		etags[enc] = etag

		for _, inm := range []string{etag, "W/" + etag, `"other", ` + etag, "*"} {
			resp := do(t, s, http.MethodGet, "/app.js", map[string]string{"Accept-Encoding": enc, "If-None-Match": inm})
			if resp.StatusCode != http.StatusNotModified {
				t.Errorf("encoding %q If-None-Match %s: status %d, want 304", enc, inm, resp.StatusCode)
			}
			if b := body(t, resp); len(b) != 0 {
				t.Errorf("304 with a %d-byte body", len(b))
			}
			if resp.Header.Get("ETag") != etag {
				t.Errorf("304 ETag %q, want %q", resp.Header.Get("ETag"), etag)
			}
		}
		resp = do(t, s, http.MethodGet, "/app.js", map[string]string{"Accept-Encoding": enc, "If-None-Match": `"stale"`})
		if resp.StatusCode != http.StatusOK {
			t.Errorf("encoding %q stale If-None-Match: status %d, want 200", enc, resp.StatusCode)
		}
	}
	// The gzip ETag must not validate the identity representation.
	resp := do(t, s, http.MethodGet, "/app.js", map[string]string{"If-None-Match": etags["gzip"]})
	if resp.StatusCode != http.StatusOK {
		t.Errorf("identity request with the gzip ETag: status %d, want 200", resp.StatusCode)
	}
	// HEAD answers conditionals too.
	resp = do(t, s, http.MethodHead, "/app.js", map[string]string{"If-None-Match": etags[""]})
	if resp.StatusCode != http.StatusNotModified {
		t.Errorf("conditional HEAD: status %d, want 304", resp.StatusCode)
	}
}

func TestETagChangesWithContent(t *testing.T) {
	a, err := newAsset("/a.js", []byte(testScript))
	if err != nil {
		t.Fatal(err)
	}
	b, err := newAsset("/a.js", []byte(testScript+"//"))
	if err != nil {
		t.Fatal(err)
	}
	if a.identity.etag == b.identity.etag || a.hash == b.hash {
		t.Errorf("different contents share ETag %s", a.identity.etag)
	}
}

func TestCacheControlAndVersionedReferences(t *testing.T) {
	s := testSite(t)
	page := do(t, s, http.MethodGet, "/", nil)
	if got := page.Header.Get("Cache-Control"); got != "no-cache" {
		t.Errorf("HTML Cache-Control %q, want no-cache", got)
	}
	if page.Header.Get("Content-Security-Policy") == "" {
		t.Errorf("HTML without Content-Security-Policy")
	}
	html := string(body(t, page))
	appHash := s.assets["/app.js"].hash
	styleHash := s.assets["/style.css"].hash
	for _, want := range []string{
		`href="style.css?v=` + styleHash + `"`,
		`src="/app.js?v=` + appHash + `"`,
		`src="missing.js"`, // unknown files are left alone
	} {
		if !strings.Contains(html, want) {
			t.Errorf("page lacks %s:\n%s", want, html[:200])
		}
	}

	for _, tc := range []struct{ target, want string }{
		{"/app.js?v=" + appHash, "public, max-age=31536000, immutable"},
		{"/app.js", "no-cache"},
		{"/app.js?v=0123456789abcdef0123", "no-cache"},
		{"/style.css?v=" + appHash, "no-cache"},
	} {
		resp := do(t, s, http.MethodGet, tc.target, nil)
		if got := resp.Header.Get("Cache-Control"); got != tc.want {
			t.Errorf("GET %s: Cache-Control %q, want %q", tc.target, got, tc.want)
		}
	}
}

// TestEmbeddedSite checks the files the binary actually ships.
func TestEmbeddedSite(t *testing.T) {
	h := Handler()
	for _, tc := range []struct{ path, ctype, contains string }{
		{"/", "text/html; charset=utf-8", `<script type="module" src="app.js?v=`},
		{"/herald.js", "text/javascript; charset=utf-8", "export class Client"},
		{"/app.js", "text/javascript; charset=utf-8", "./herald.js"},
		{"/style.css", "text/css; charset=utf-8", "body"},
	} {
		resp := do(t, h, http.MethodGet, tc.path, nil)
		if resp.StatusCode != http.StatusOK {
			t.Errorf("GET %s: status %d", tc.path, resp.StatusCode)
			continue
		}
		if got := resp.Header.Get("Content-Type"); got != tc.ctype {
			t.Errorf("GET %s: Content-Type %q, want %q", tc.path, got, tc.ctype)
		}
		if b := body(t, resp); !bytes.Contains(b, []byte(tc.contains)) {
			t.Errorf("GET %s: body lacks %q", tc.path, tc.contains)
		}
	}
	// Served through a real server, compressed, and decoded by net/http.
	srv := httptest.NewServer(h)
	defer srv.Close()
	resp, err := srv.Client().Get(srv.URL + "/herald.js")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b := body(t, resp)
	if !resp.Uncompressed || !bytes.Contains(b, []byte("export class Client")) {
		t.Errorf("herald.js over HTTP: uncompressed=%v, %d bytes", resp.Uncompressed, len(b))
	}
	srv.Client().CloseIdleConnections()
}

func BenchmarkServeGzip(b *testing.B) {
	h := Handler()
	req := httptest.NewRequest(http.MethodGet, "/herald.js", nil)
	req.Header.Set("Accept-Encoding", "gzip, deflate, br")
	b.ReportAllocs()
	for b.Loop() {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
	}
}

// Package web serves herald's browser side: the JavaScript client library
// (/herald.js, built from web/client) and the demo chat application (/),
// both embedded in the binary, plus the demo ticker that feeds the demo's
// live panel.
//
// # Static files
//
// Handler serves the files under web/static. Every file is prepared once, on
// first use: its content type is fixed from the extension, its ETag is a hash
// of its content, and compressible files are precompressed with brotli and
// gzip. A request then costs a map lookup and a write:
//
//   - GET and HEAD only (405 with an Allow header otherwise); unknown paths
//     are 404; "/" serves index.html.
//   - Content negotiation on Accept-Encoding (br preferred over gzip when
//     both are acceptable, q-values honoured) with "Vary: Accept-Encoding";
//     each encoding has its own ETag.
//   - If-None-Match with a matching ETag answers 304 Not Modified.
//   - HTML pages are "Cache-Control: no-cache" (always revalidated). HTML
//     references to other embedded files are rewritten at preparation time
//     to carry "?v=<content hash>"; a request whose v matches the file's
//     current hash is cacheable for a year ("immutable"), any other request
//     gets "no-cache" so a stale URL never pins stale content.
//
// Handler is safe for concurrent use by any number of goroutines.
package web

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"fmt"
	"io/fs"
	"mime"
	"net/http"
	"path"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/andybalholm/brotli"
)

//go:embed static
var staticFS embed.FS

// Cache-Control values.
const (
	cacheRevalidate = "no-cache"
	cacheImmutable  = "public, max-age=31536000, immutable"
)

// contentSecurityPolicy allows the pages to load only their own scripts,
// styles and images, and to open connections (WebSocket included) only to
// their own origin.
const contentSecurityPolicy = "default-src 'self'; script-src 'self'; style-src 'self'; " +
	"img-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'"

// minCompressSize is the size under which compression is not worth a
// second round trip of CPU on the client.
const minCompressSize = 256

// representation is one encoding of a file, ready to write.
type representation struct {
	encoding string // "" for identity, "gzip", "br"
	body     []byte
	etag     string // quoted strong validator, unique per representation
}

// asset is one prepared file.
type asset struct {
	contentType string
	hash        string // hex content hash, the value of ?v= for immutable caching
	html        bool
	identity    representation
	gzip        *representation // nil when compression does not pay
	br          *representation
}

// site is the prepared set of files, keyed by URL path ("/app.js").
type site struct {
	assets map[string]*asset
}

var (
	prepareOnce sync.Once
	prepared    *site
	prepareErr  error
)

// Handler returns the http.Handler that serves the embedded files. Mount it
// at "/": it answers every path it does not know with 404.
//
// The files are prepared (hashed and compressed) on the first call; that
// takes tens of milliseconds once. Handler panics if the embedded files are
// broken, which only a bad build can cause.
func Handler() http.Handler {
	prepareOnce.Do(func() {
		sub, err := fs.Sub(staticFS, "static")
		if err != nil {
			prepareErr = err
			return
		}
		prepared, prepareErr = newSite(sub)
	})
	if prepareErr != nil {
		panic(fmt.Sprintf("web: preparing embedded files: %v", prepareErr))
	}
	return prepared
}

// newSite reads every regular file of fsys and prepares it.
func newSite(fsys fs.FS) (*site, error) {
	raw := map[string][]byte{}
	err := fs.WalkDir(fsys, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() || strings.HasPrefix(d.Name(), ".") {
			return nil
		}
		b, err := fs.ReadFile(fsys, p)
		if err != nil {
			return fmt.Errorf("read %s: %w", p, err)
		}
		raw["/"+p] = b
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("walk static files: %w", err)
	}
	s := &site{assets: make(map[string]*asset, len(raw))}
	// Non-HTML files first: HTML pages embed their hashes.
	names := make([]string, 0, len(raw))
	for name := range raw {
		names = append(names, name)
	}
	sort.Slice(names, func(i, j int) bool {
		hi, hj := isHTML(names[i]), isHTML(names[j])
		if hi != hj {
			return !hi
		}
		return names[i] < names[j]
	})
	for _, name := range names {
		body := raw[name]
		if isHTML(name) {
			body = s.versionReferences(name, body)
		}
		a, err := newAsset(name, body)
		if err != nil {
			return nil, err
		}
		s.assets[name] = a
	}
	return s, nil
}

func isHTML(name string) bool { return strings.HasSuffix(name, ".html") }

// referencePattern finds src and href attributes with a relative or
// root-relative URL without query or fragment.
var referencePattern = regexp.MustCompile(`\b(src|href)="(/?[A-Za-z0-9._/-]+)"`)

// versionReferences appends ?v=<hash> to the page's references to known,
// already prepared files so that browsers may cache them for good.
func (s *site) versionReferences(page string, body []byte) []byte {
	dir := path.Dir(page)
	return referencePattern.ReplaceAllFunc(body, func(m []byte) []byte {
		sub := referencePattern.FindSubmatch(m)
		ref := string(sub[2])
		target := ref
		if !strings.HasPrefix(target, "/") {
			target = path.Join(dir, target)
		}
		a, ok := s.assets[target]
		if !ok {
			return m
		}
		return fmt.Appendf(nil, `%s="%s?v=%s"`, sub[1], ref, a.hash)
	})
}

// newAsset hashes and compresses one file.
func newAsset(name string, body []byte) (*asset, error) {
	sum := sha256.Sum256(body)
	hash := hex.EncodeToString(sum[:])[:20]
	a := &asset{
		contentType: contentTypeFor(name),
		hash:        hash,
		html:        isHTML(name),
		identity:    representation{body: body, etag: `"` + hash + `"`},
	}
	if !compressible(a.contentType) || len(body) < minCompressSize {
		return a, nil
	}
	gz, err := gzipBytes(body)
	if err != nil {
		return nil, fmt.Errorf("gzip %s: %w", name, err)
	}
	if len(gz) < len(body) {
		a.gzip = &representation{encoding: "gzip", body: gz, etag: `"` + hash + `-gz"`}
	}
	br, err := brotliBytes(body)
	if err != nil {
		return nil, fmt.Errorf("brotli %s: %w", name, err)
	}
	if len(br) < len(body) {
		a.br = &representation{encoding: "br", body: br, etag: `"` + hash + `-br"`}
	}
	return a, nil
}

func gzipBytes(b []byte) ([]byte, error) {
	var buf bytes.Buffer
	w, err := gzip.NewWriterLevel(&buf, gzip.BestCompression)
	if err != nil {
		return nil, err
	}
	if _, err := w.Write(b); err != nil {
		return nil, err
	}
	if err := w.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

func brotliBytes(b []byte) ([]byte, error) {
	var buf bytes.Buffer
	w := brotli.NewWriterLevel(&buf, brotli.BestCompression)
	if _, err := w.Write(b); err != nil {
		return nil, err
	}
	if err := w.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// contentTypes pins the types of the files the site ships, so that they do
// not depend on the host's mime database.
var contentTypes = map[string]string{
	".html":  "text/html; charset=utf-8",
	".js":    "text/javascript; charset=utf-8",
	".mjs":   "text/javascript; charset=utf-8",
	".css":   "text/css; charset=utf-8",
	".json":  "application/json",
	".map":   "application/json",
	".svg":   "image/svg+xml",
	".png":   "image/png",
	".ico":   "image/x-icon",
	".txt":   "text/plain; charset=utf-8",
	".woff2": "font/woff2",
	".ts":    "text/plain; charset=utf-8",
}

func contentTypeFor(name string) string {
	ext := path.Ext(name)
	if t, ok := contentTypes[ext]; ok {
		return t
	}
	if t := mime.TypeByExtension(ext); t != "" {
		return t
	}
	return "application/octet-stream"
}

func compressible(contentType string) bool {
	return strings.HasPrefix(contentType, "text/") ||
		strings.HasPrefix(contentType, "application/json") ||
		strings.HasPrefix(contentType, "image/svg+xml")
}

// ServeHTTP serves one embedded file.
func (s *site) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	name := r.URL.Path
	if name == "/" {
		name = "/index.html"
	}
	a, ok := s.assets[name]
	if !ok {
		http.NotFound(w, r)
		return
	}
	rep := &a.identity
	if a.br != nil || a.gzip != nil {
		switch negotiate(r.Header.Values("Accept-Encoding"), a.br != nil, a.gzip != nil) {
		case "br":
			rep = a.br
		case "gzip":
			rep = a.gzip
		}
	}

	h := w.Header()
	if a.br != nil || a.gzip != nil {
		h.Set("Vary", "Accept-Encoding")
	}
	h.Set("ETag", rep.etag)
	switch {
	case a.html:
		h.Set("Cache-Control", cacheRevalidate)
		h.Set("Content-Security-Policy", contentSecurityPolicy)
		h.Set("Referrer-Policy", "no-referrer")
	case r.URL.Query().Get("v") == a.hash:
		h.Set("Cache-Control", cacheImmutable)
	default:
		h.Set("Cache-Control", cacheRevalidate)
	}
	h.Set("X-Content-Type-Options", "nosniff")

	if etagMatches(r.Header.Values("If-None-Match"), rep.etag) {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	h.Set("Content-Type", a.contentType)
	if rep.encoding != "" {
		h.Set("Content-Encoding", rep.encoding)
	}
	h.Set("Content-Length", strconv.Itoa(len(rep.body)))
	w.WriteHeader(http.StatusOK)
	if r.Method == http.MethodHead {
		return
	}
	_, _ = w.Write(rep.body) // a failed write means the client went away
}

// maxListItems bounds how many comma-separated items of one header are
// examined; the rest are ignored. Real browsers send fewer than ten.
const maxListItems = 64

// eachListItem calls f with up to maxListItems trimmed, non-empty items of
// the comma-separated header values, without allocating.
func eachListItem(headers []string, f func(item string) bool) {
	n := 0
	for _, h := range headers {
		for rest := h; rest != ""; {
			var item string
			item, rest, _ = strings.Cut(rest, ",")
			item = strings.TrimSpace(item)
			if item == "" {
				continue
			}
			if n++; n > maxListItems || !f(item) {
				return
			}
		}
	}
}

// etagMatches applies the weak comparison of If-None-Match (RFC 9110
// section 13.1.2): "*" matches, and W/ prefixes are ignored.
func etagMatches(headers []string, etag string) bool {
	matched := false
	eachListItem(headers, func(tag string) bool {
		matched = tag == "*" || strings.TrimPrefix(tag, "W/") == etag
		return !matched
	})
	return matched
}

// negotiate picks "br", "gzip" or "" (identity) from Accept-Encoding
// header values (RFC 9110 section 12.5.3): the highest q-value wins, br
// wins ties, q=0 refuses, and "*" stands for every coding not named.
func negotiate(headers []string, haveBr, haveGzip bool) string {
	qBr, qGzip, qStar := -1.0, -1.0, -1.0
	eachListItem(headers, func(item string) bool {
		coding, q := parseCoding(item)
		switch {
		case strings.EqualFold(coding, "br"):
			qBr = q
		case strings.EqualFold(coding, "gzip"), strings.EqualFold(coding, "x-gzip"):
			qGzip = q
		case coding == "*":
			qStar = q
		}
		return true
	})
	if qBr < 0 {
		qBr = qStar
	}
	if qGzip < 0 {
		qGzip = qStar
	}
	if !haveBr {
		qBr = -1
	}
	if !haveGzip {
		qGzip = -1
	}
	switch {
	case qBr > 0 && qBr >= qGzip:
		return "br"
	case qGzip > 0:
		return "gzip"
	}
	return ""
}

// parseCoding splits "gzip;q=0.5" into its coding and q-value (1 when
// absent, 0 when malformed).
func parseCoding(item string) (string, float64) {
	coding, params, _ := strings.Cut(item, ";")
	coding = strings.TrimSpace(coding)
	q := 1.0
	for params != "" {
		var p string
		p, params, _ = strings.Cut(params, ";")
		k, v, ok := strings.Cut(strings.TrimSpace(p), "=")
		if !ok || !strings.EqualFold(strings.TrimSpace(k), "q") {
			continue
		}
		v = strings.TrimSpace(v)
		if len(v) > len("0.001") { // RFC 9110: at most three decimals
			return coding, 0
		}
		f, err := strconv.ParseFloat(v, 64)
		if err != nil || f < 0 || f > 1 {
			return coding, 0
		}
		q = f
	}
	return coding, q
}

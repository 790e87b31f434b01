// Package tlsreload serves a TLS certificate and key from files and picks
// up new versions of them without a restart.
//
// A Reloader loads the pair once at New and then again whenever Reload is
// called (the server calls it on SIGHUP) or its polling goroutine sees the
// files' modification time or size change. Plug it into a tls.Config with
//
//	cfg := &tls.Config{GetCertificate: r.GetCertificate}
//
// so every new handshake (WebSocket over TLS, TCP over TLS) gets the
// current certificate; established connections keep the one they started
// with.
//
// A reload that fails (missing file, unreadable PEM, a key that does not
// match the certificate, or files caught half-written) keeps the previous
// certificate: the error is returned by Reload and logged by the polling
// goroutine, and the next change of either file is retried. A certificate
// renewal tool that writes the two files one after the other therefore
// causes at most one logged error before the matching pair is loaded.
package tlsreload

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// DefaultPollInterval is how often the files are checked for changes when
// Options.PollInterval is zero.
const DefaultPollInterval = 5 * time.Second

// Options configure a Reloader. CertFile and KeyFile are required.
type Options struct {
	// CertFile is a PEM file with the certificate, then any intermediates.
	CertFile string
	// KeyFile is the PEM file with the certificate's private key.
	KeyFile string
	// Logger receives reload successes (info) and failures (error) noticed
	// by the polling goroutine. Default: discard.
	Logger *slog.Logger
	// PollInterval is how often the files' modification time and size are
	// checked. Default DefaultPollInterval; a negative value disables
	// polling (only Reload then loads new files).
	PollInterval time.Duration
}

// Reloader holds the current certificate. All methods are safe for
// concurrent use. New starts one polling goroutine; Close stops it and
// waits for it.
type Reloader struct {
	opts Options
	cert atomic.Pointer[tls.Certificate]

	mu   sync.Mutex // serialises loads and guards seen
	seen fileStamps // the files' state at the last load attempt

	closeOnce sync.Once
	stop      chan struct{}
	done      chan struct{}
}

// fileStamps identifies a version of the two files.
type fileStamps struct {
	certMod, keyMod   time.Time
	certSize, keySize int64
}

// New loads certFile and keyFile and starts polling them every
// DefaultPollInterval. logger may be nil.
func New(certFile, keyFile string, logger *slog.Logger) (*Reloader, error) {
	return NewWithOptions(Options{CertFile: certFile, KeyFile: keyFile, Logger: logger})
}

// NewWithOptions is New with every setting.
func NewWithOptions(opts Options) (*Reloader, error) {
	if opts.CertFile == "" || opts.KeyFile == "" {
		return nil, errors.New("tlsreload: certificate and key files are required")
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.PollInterval == 0 {
		opts.PollInterval = DefaultPollInterval
	}
	r := &Reloader{opts: opts, stop: make(chan struct{}), done: make(chan struct{})}
	if err := r.Reload(); err != nil {
		return nil, err
	}
	if opts.PollInterval > 0 {
		go r.poll()
	} else {
		close(r.done)
	}
	return r, nil
}

// Reload loads the files now. On failure the previous certificate stays in
// use and the error says why.
func (r *Reloader) Reload() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	st, _ := r.stamps()
	r.seen = st
	return r.loadLocked()
}

func (r *Reloader) loadLocked() error {
	pair, err := tls.LoadX509KeyPair(r.opts.CertFile, r.opts.KeyFile)
	if err != nil {
		return fmt.Errorf("tlsreload: load %s / %s: %w", r.opts.CertFile, r.opts.KeyFile, err)
	}
	if pair.Leaf == nil && len(pair.Certificate) > 0 {
		leaf, err := x509.ParseCertificate(pair.Certificate[0])
		if err != nil {
			return fmt.Errorf("tlsreload: parse %s: %w", r.opts.CertFile, err)
		}
		pair.Leaf = leaf
	}
	r.cert.Store(&pair)
	return nil
}

// stamps reads the files' modification times and sizes.
func (r *Reloader) stamps() (fileStamps, error) {
	var st fileStamps
	ci, err := os.Stat(r.opts.CertFile)
	if err != nil {
		return st, fmt.Errorf("tlsreload: %w", err)
	}
	ki, err := os.Stat(r.opts.KeyFile)
	if err != nil {
		return st, fmt.Errorf("tlsreload: %w", err)
	}
	st.certMod, st.certSize = ci.ModTime(), ci.Size()
	st.keyMod, st.keySize = ki.ModTime(), ki.Size()
	return st, nil
}

// checkChanged reloads when the files changed since the last attempt. It
// reports whether it tried and the load error, if any.
func (r *Reloader) checkChanged() (bool, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	st, err := r.stamps()
	if err != nil {
		// A missing file is usually mid-replacement; a later change of the
		// files is retried.
		return false, nil
	}
	if st == r.seen {
		return false, nil
	}
	r.seen = st
	return true, r.loadLocked()
}

// poll is the Reloader's goroutine.
func (r *Reloader) poll() {
	defer close(r.done)
	t := time.NewTicker(r.opts.PollInterval)
	defer t.Stop()
	for {
		select {
		case <-r.stop:
			return
		case <-t.C:
			tried, err := r.checkChanged()
			switch {
			case err != nil:
				r.opts.Logger.Error("TLS certificate reload failed; keeping the previous certificate", "err", err)
			case tried:
				r.opts.Logger.Info("TLS certificate reloaded", "cert", r.opts.CertFile)
			}
		}
	}
}

// GetCertificate returns the current certificate; it is meant for
// tls.Config.GetCertificate and never fails once New succeeded.
func (r *Reloader) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	return r.cert.Load(), nil
}

// Certificate returns the current certificate.
func (r *Reloader) Certificate() *tls.Certificate { return r.cert.Load() }

// TLSConfig returns a server tls.Config that takes its certificate from r.
func (r *Reloader) TLSConfig() *tls.Config {
	return &tls.Config{GetCertificate: r.GetCertificate, MinVersion: tls.VersionTLS12}
}

// Close stops the polling goroutine and waits for it. Idempotent. The
// current certificate stays available.
func (r *Reloader) Close() error {
	r.closeOnce.Do(func() { close(r.stop) })
	<-r.done
	return nil
}

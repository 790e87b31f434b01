// Package auth verifies and issues herald connection tokens.
//
// A connection token is a JWT (RFC 7519) signed by the application backend
// and presented by a client in its connect command. herald accepts exactly
// the algorithms it was configured with: HS256 with a shared secret, RS256
// with an RSA public key and ES256 with a P-256 public key. The algorithm a
// token names selects which configured key verifies it; a token naming any
// other algorithm ("none", HS256 while only RS256 is configured, ...) is
// rejected before any key is touched, so a public key can never be misused
// as an HMAC secret.
//
// Claims herald reads:
//
//	sub       user id (required, non-empty)
//	exp       expiry, seconds since the epoch (optional: no exp = never expires)
//	iat       issue time (optional; a token issued in the future is rejected)
//	nbf       not before (optional)
//	channels  list of channel names the token grants (optional)
//	info      connection info, any JSON value, shown in presence and publications (optional)
//
// Verification errors wrap ErrTokenExpired when the token is well-formed,
// correctly signed and merely expired (the client should refresh it) and
// ErrInvalidToken otherwise (the client should not retry with it).
package auth

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Algorithm names as they appear in a token's "alg" header.
const (
	HS256 = "HS256"
	RS256 = "RS256"
	ES256 = "ES256"
)

// Defaults and hard limits of the verifier.
const (
	// DefaultLeeway is the clock skew tolerated on exp, nbf and iat.
	DefaultLeeway = 5 * time.Second
	// DefaultMaxTokenBytes bounds the token string checked before any
	// decoding.
	DefaultMaxTokenBytes = 8 << 10
	// DefaultMaxChannels bounds the number of channel grants in a token.
	DefaultMaxChannels = 1024
	// MinHMACSecretBytes is the shortest HS256 secret accepted: a shorter
	// secret can be brute-forced from any token.
	MinHMACSecretBytes = 32
	// MinRSABits is the smallest RSA modulus accepted.
	MinRSABits = 2048
)

// Errors returned (wrapped) by Verify.
var (
	// ErrTokenExpired: the token is authentic but its exp has passed.
	ErrTokenExpired = errors.New("token expired")
	// ErrInvalidToken: malformed, badly signed, wrong algorithm, not yet
	// valid, or missing required claims.
	ErrInvalidToken = errors.New("invalid token")
)

// Config selects the accepted algorithms and their keys. At least one key
// must be set; each key that is set enables its algorithm and no other.
type Config struct {
	// HMACSecret enables HS256. It must be at least MinHMACSecretBytes long.
	HMACSecret []byte
	// RSAPublicKeyPEM enables RS256: a PEM "PUBLIC KEY" (PKIX),
	// "RSA PUBLIC KEY" (PKCS #1) or "CERTIFICATE" block.
	RSAPublicKeyPEM []byte
	// ECDSAPublicKeyPEM enables ES256: a PEM "PUBLIC KEY" or
	// "CERTIFICATE" block holding a P-256 key.
	ECDSAPublicKeyPEM []byte
	// Leeway is the clock skew tolerated when checking exp, nbf and iat.
	// Default DefaultLeeway; a negative value tolerates none. Large values
	// let expired tokens in for that long.
	Leeway time.Duration
	// Issuer, when set, must equal the token's iss claim.
	Issuer string
	// Audience, when set, must be one of the token's aud values.
	Audience string
	// MaxTokenBytes bounds the token length. Default DefaultMaxTokenBytes.
	MaxTokenBytes int
	// MaxChannels bounds the channels claim. Default DefaultMaxChannels.
	MaxChannels int
	// Now returns the current time. Default time.Now; tests inject a clock.
	Now func() time.Time
}

// Claims are the verified contents of a connection token.
type Claims struct {
	// Subject is the user id (the sub claim); never empty after Verify.
	Subject string
	// ExpiresAt is the exp claim; the zero Time means the token never
	// expires.
	ExpiresAt time.Time
	// IssuedAt is the iat claim, or the zero Time.
	IssuedAt time.Time
	// Channels are the channel names this token grants.
	Channels []string
	// Info is connection info (raw JSON) or nil.
	Info json.RawMessage
}

// GrantsChannel reports whether channel is listed in the token's channels
// claim. Grants name channels exactly; there are no patterns.
func (c *Claims) GrantsChannel(channel string) bool {
	for _, g := range c.Channels {
		if g == channel {
			return true
		}
	}
	return false
}

// tokenClaims is the JSON form of the claims herald reads and writes.
type tokenClaims struct {
	jwt.RegisteredClaims
	Channels []string        `json:"channels,omitempty"`
	Info     json.RawMessage `json:"info,omitempty"`
}

// Verifier checks connection tokens. It is immutable after NewVerifier and
// safe for concurrent use.
type Verifier struct {
	hmacSecret    []byte
	rsaKey        *rsa.PublicKey
	ecKey         *ecdsa.PublicKey
	maxTokenBytes int
	maxChannels   int
	now           func() time.Time
	parser        *jwt.Parser
	algs          []string
}

// NewVerifier validates cfg and builds a Verifier.
func NewVerifier(cfg Config) (*Verifier, error) {
	v := &Verifier{
		maxTokenBytes: cfg.MaxTokenBytes,
		maxChannels:   cfg.MaxChannels,
		now:           cfg.Now,
	}
	if v.maxTokenBytes <= 0 {
		v.maxTokenBytes = DefaultMaxTokenBytes
	}
	if v.maxChannels <= 0 {
		v.maxChannels = DefaultMaxChannels
	}
	if v.now == nil {
		v.now = time.Now
	}
	if len(cfg.HMACSecret) > 0 {
		if len(cfg.HMACSecret) < MinHMACSecretBytes {
			return nil, fmt.Errorf("auth: HS256 secret is %d bytes, need at least %d", len(cfg.HMACSecret), MinHMACSecretBytes)
		}
		v.hmacSecret = bytes.Clone(cfg.HMACSecret)
		v.algs = append(v.algs, HS256)
	}
	if len(cfg.RSAPublicKeyPEM) > 0 {
		k, err := jwt.ParseRSAPublicKeyFromPEM(cfg.RSAPublicKeyPEM)
		if err != nil {
			return nil, fmt.Errorf("auth: RS256 public key: %w", err)
		}
		if k.N.BitLen() < MinRSABits {
			return nil, fmt.Errorf("auth: RS256 public key has %d bits, need at least %d", k.N.BitLen(), MinRSABits)
		}
		v.rsaKey = k
		v.algs = append(v.algs, RS256)
	}
	if len(cfg.ECDSAPublicKeyPEM) > 0 {
		k, err := jwt.ParseECPublicKeyFromPEM(cfg.ECDSAPublicKeyPEM)
		if err != nil {
			return nil, fmt.Errorf("auth: ES256 public key: %w", err)
		}
		if k.Curve != elliptic.P256() {
			return nil, fmt.Errorf("auth: ES256 public key is on %s, need P-256", k.Curve.Params().Name)
		}
		v.ecKey = k
		v.algs = append(v.algs, ES256)
	}
	if len(v.algs) == 0 {
		return nil, errors.New("auth: no token key configured (need an HMAC secret, an RSA or an ECDSA public key)")
	}
	leeway := cfg.Leeway
	switch {
	case leeway == 0:
		leeway = DefaultLeeway
	case leeway < 0:
		leeway = 0
	}
	opts := []jwt.ParserOption{
		jwt.WithValidMethods(v.algs),
		jwt.WithLeeway(leeway),
		jwt.WithTimeFunc(v.now),
		jwt.WithIssuedAt(),
		jwt.WithStrictDecoding(),
	}
	if cfg.Issuer != "" {
		opts = append(opts, jwt.WithIssuer(cfg.Issuer))
	}
	if cfg.Audience != "" {
		opts = append(opts, jwt.WithAudience(cfg.Audience))
	}
	v.parser = jwt.NewParser(opts...)
	return v, nil
}

// Algorithms lists the algorithms v accepts.
func (v *Verifier) Algorithms() []string { return append([]string(nil), v.algs...) }

// keyFor returns the configured key for the token's algorithm. The parser
// has already rejected algorithms outside v.algs; matching on the exact
// name again keeps a key from ever serving another algorithm.
func (v *Verifier) keyFor(t *jwt.Token) (any, error) {
	switch t.Method.Alg() {
	case HS256:
		if v.hmacSecret != nil {
			return v.hmacSecret, nil
		}
	case RS256:
		if v.rsaKey != nil {
			return v.rsaKey, nil
		}
	case ES256:
		if v.ecKey != nil {
			return v.ecKey, nil
		}
	}
	return nil, fmt.Errorf("algorithm %q not accepted", t.Method.Alg())
}

// Verify checks token's signature and claims and returns the claims. The
// error wraps ErrTokenExpired or ErrInvalidToken.
func (v *Verifier) Verify(token string) (Claims, error) {
	if token == "" {
		return Claims{}, fmt.Errorf("%w: empty token", ErrInvalidToken)
	}
	if len(token) > v.maxTokenBytes {
		return Claims{}, fmt.Errorf("%w: token is %d bytes, limit %d", ErrInvalidToken, len(token), v.maxTokenBytes)
	}
	var tc tokenClaims
	_, err := v.parser.ParseWithClaims(token, &tc, v.keyFor)
	if err != nil {
		// The library checks the signature before the claims, so an
		// expired error means the token is authentic.
		if errors.Is(err, jwt.ErrTokenExpired) && !errors.Is(err, jwt.ErrTokenSignatureInvalid) {
			return Claims{}, fmt.Errorf("%w: %w", ErrTokenExpired, err)
		}
		return Claims{}, fmt.Errorf("%w: %w", ErrInvalidToken, err)
	}
	if tc.Subject == "" {
		return Claims{}, fmt.Errorf("%w: missing sub claim", ErrInvalidToken)
	}
	if len(tc.Channels) > v.maxChannels {
		return Claims{}, fmt.Errorf("%w: %d channel grants, limit %d", ErrInvalidToken, len(tc.Channels), v.maxChannels)
	}
	c := Claims{
		Subject:  tc.Subject,
		Channels: tc.Channels,
	}
	if len(tc.Info) > 0 && !bytes.Equal(tc.Info, []byte("null")) {
		c.Info = tc.Info
	}
	if tc.ExpiresAt != nil {
		c.ExpiresAt = tc.ExpiresAt.Time
	}
	if tc.IssuedAt != nil {
		c.IssuedAt = tc.IssuedAt.Time
	}
	return c, nil
}

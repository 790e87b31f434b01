package auth

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Sign issues a token carrying c, signed with alg. key is the HS256 secret
// ([]byte), an *rsa.PrivateKey for RS256 or a P-256 *ecdsa.PrivateKey for
// ES256 (see ParsePrivateKeyPEM). A zero ExpiresAt issues a token that
// never expires; a zero IssuedAt is left out. Backends normally sign tokens
// themselves; Sign serves `herald token` and tests.
func Sign(c Claims, alg string, key any) (string, error) {
	if c.Subject == "" {
		return "", errors.New("auth: sign: empty subject")
	}
	if len(c.Info) > 0 && !json.Valid(c.Info) {
		return "", errors.New("auth: sign: info is not valid JSON")
	}
	var method jwt.SigningMethod
	switch alg {
	case HS256:
		secret, ok := key.([]byte)
		if !ok {
			return "", fmt.Errorf("auth: sign: HS256 needs a []byte secret, got %T", key)
		}
		if len(secret) < MinHMACSecretBytes {
			return "", fmt.Errorf("auth: sign: HS256 secret is %d bytes, need at least %d", len(secret), MinHMACSecretBytes)
		}
		method = jwt.SigningMethodHS256
	case RS256:
		if _, ok := key.(*rsa.PrivateKey); !ok {
			return "", fmt.Errorf("auth: sign: RS256 needs an *rsa.PrivateKey, got %T", key)
		}
		method = jwt.SigningMethodRS256
	case ES256:
		k, ok := key.(*ecdsa.PrivateKey)
		if !ok {
			return "", fmt.Errorf("auth: sign: ES256 needs an *ecdsa.PrivateKey, got %T", key)
		}
		if k.Curve != elliptic.P256() {
			return "", errors.New("auth: sign: ES256 needs a P-256 key")
		}
		method = jwt.SigningMethodES256
	default:
		return "", fmt.Errorf("auth: sign: unsupported algorithm %q", alg)
	}
	tc := tokenClaims{
		RegisteredClaims: jwt.RegisteredClaims{Subject: c.Subject},
		Channels:         c.Channels,
		Info:             c.Info,
	}
	if !c.ExpiresAt.IsZero() {
		tc.ExpiresAt = jwt.NewNumericDate(c.ExpiresAt)
	}
	if !c.IssuedAt.IsZero() {
		tc.IssuedAt = jwt.NewNumericDate(c.IssuedAt)
	}
	s, err := jwt.NewWithClaims(method, tc).SignedString(key)
	if err != nil {
		return "", fmt.Errorf("auth: sign: %w", err)
	}
	return s, nil
}

// SignHS256 issues an HS256 token for user that expires after ttl (never
// when ttl is 0), issued now.
func SignHS256(secret []byte, user string, ttl time.Duration, channels []string, info json.RawMessage) (string, error) {
	now := time.Now()
	c := Claims{Subject: user, IssuedAt: now, Channels: channels, Info: info}
	if ttl > 0 {
		c.ExpiresAt = now.Add(ttl)
	}
	return Sign(c, HS256, secret)
}

// ParsePrivateKeyPEM parses an RSA (PKCS #1 or PKCS #8) or ECDSA (SEC 1 or
// PKCS #8) private key and returns it with the algorithm it signs:
// RS256 or ES256.
func ParsePrivateKeyPEM(pemBytes []byte) (key any, alg string, err error) {
	if k, err := jwt.ParseRSAPrivateKeyFromPEM(pemBytes); err == nil {
		return k, RS256, nil
	}
	k, err := jwt.ParseECPrivateKeyFromPEM(pemBytes)
	if err != nil {
		return nil, "", errors.New("auth: private key: not an RSA or ECDSA PEM private key")
	}
	if k.Curve != elliptic.P256() {
		return nil, "", errors.New("auth: private key: ECDSA key is not P-256")
	}
	return k, ES256, nil
}

package auth

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

var testSecret = []byte("0123456789abcdef0123456789abcdef")

var (
	keysOnce sync.Once
	rsaKey   *rsa.PrivateKey
	ecKey    *ecdsa.PrivateKey
	rsaPub   []byte
	ecPub    []byte
)

func testKeys(t testing.TB) {
	t.Helper()
	keysOnce.Do(func() {
		var err error
		if rsaKey, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
			panic(err)
		}
		if ecKey, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader); err != nil {
			panic(err)
		}
		rsaPub = pemPublic(rsaKey.Public())
		ecPub = pemPublic(ecKey.Public())
	})
}

func pemPublic(k any) []byte {
	der, err := x509.MarshalPKIXPublicKey(k)
	if err != nil {
		panic(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
}

// fixedClock is a settable clock.
type fixedClock struct{ t time.Time }

func (c *fixedClock) now() time.Time { return c.t }

var epoch = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

func allVerifier(t *testing.T, clock *fixedClock) *Verifier {
	t.Helper()
	testKeys(t)
	v, err := NewVerifier(Config{HMACSecret: testSecret, RSAPublicKeyPEM: rsaPub, ECDSAPublicKeyPEM: ecPub, Now: clock.now})
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func mustSign(t *testing.T, c Claims, alg string, key any) string {
	t.Helper()
	s, err := Sign(c, alg, key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestVerifyEachAlgorithm(t *testing.T) {
	clock := &fixedClock{epoch}
	v := allVerifier(t, clock)
	want := Claims{
		Subject:   "42",
		IssuedAt:  epoch.Add(-time.Minute),
		ExpiresAt: epoch.Add(time.Hour),
		Channels:  []string{"chat:a", "news"},
		Info:      json.RawMessage(`{"name":"Ann"}`),
	}
	for _, tc := range []struct {
		alg string
		key any
	}{{HS256, testSecret}, {RS256, rsaKey}, {ES256, ecKey}} {
		t.Run(tc.alg, func(t *testing.T) {
			tok := mustSign(t, want, tc.alg, tc.key)
			got, err := v.Verify(tok)
			if err != nil {
				t.Fatalf("Verify: %v", err)
			}
			if got.Subject != want.Subject || !got.ExpiresAt.Equal(want.ExpiresAt) || !got.IssuedAt.Equal(want.IssuedAt) {
				t.Errorf("claims = %+v, want %+v", got, want)
			}
			if strings.Join(got.Channels, ",") != "chat:a,news" || string(got.Info) != `{"name":"Ann"}` {
				t.Errorf("channels/info = %v %s", got.Channels, got.Info)
			}
			if !got.GrantsChannel("news") || got.GrantsChannel("chat:b") {
				t.Errorf("GrantsChannel wrong for %v", got.Channels)
			}
		})
	}
}

func TestVerifyNoExpiry(t *testing.T) {
	v := allVerifier(t, &fixedClock{epoch})
	got, err := v.Verify(mustSign(t, Claims{Subject: "u"}, HS256, testSecret))
	if err != nil {
		t.Fatal(err)
	}
	if !got.ExpiresAt.IsZero() || got.Info != nil {
		t.Errorf("got %+v, want no expiry and no info", got)
	}
}

func TestVerifyExpiry(t *testing.T) {
	clock := &fixedClock{epoch}
	v := allVerifier(t, clock)
	tok := mustSign(t, Claims{Subject: "u", ExpiresAt: epoch.Add(10 * time.Second)}, ES256, ecKey)
	if _, err := v.Verify(tok); err != nil {
		t.Fatalf("fresh token: %v", err)
	}
	// Within the default leeway past exp: still accepted.
	clock.t = epoch.Add(10*time.Second + DefaultLeeway - time.Second)
	if _, err := v.Verify(tok); err != nil {
		t.Fatalf("token within leeway: %v", err)
	}
	clock.t = epoch.Add(10*time.Second + DefaultLeeway + time.Second)
	_, err := v.Verify(tok)
	if !errors.Is(err, ErrTokenExpired) || errors.Is(err, ErrInvalidToken) {
		t.Fatalf("expired token: err = %v, want ErrTokenExpired only", err)
	}
}

func TestVerifyNoLeeway(t *testing.T) {
	clock := &fixedClock{epoch}
	v, err := NewVerifier(Config{HMACSecret: testSecret, Leeway: -1, Now: clock.now})
	if err != nil {
		t.Fatal(err)
	}
	tok := mustSign(t, Claims{Subject: "u", ExpiresAt: epoch.Add(time.Second)}, HS256, testSecret)
	clock.t = epoch.Add(2 * time.Second)
	if _, err := v.Verify(tok); !errors.Is(err, ErrTokenExpired) {
		t.Fatalf("err = %v, want ErrTokenExpired", err)
	}
}

func TestVerifyRejects(t *testing.T) {
	clock := &fixedClock{epoch}
	testKeys(t)
	rsaOnly, err := NewVerifier(Config{RSAPublicKeyPEM: rsaPub, Now: clock.now})
	if err != nil {
		t.Fatal(err)
	}
	all := allVerifier(t, clock)
	good := Claims{Subject: "u", ExpiresAt: epoch.Add(time.Hour)}

	otherRSA, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	hsTok := mustSign(t, good, HS256, testSecret)
	parts := strings.Split(hsTok, ".")

	// HS256 signed with the RSA public key's PEM as the secret: the classic
	// algorithm-confusion attack against verifiers that let the token pick.
	confused := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{"sub": "admin"})
	confusedTok, err := confused.SignedString(rsaPub)
	if err != nil {
		t.Fatal(err)
	}
	noneTok, err := jwt.NewWithClaims(jwt.SigningMethodNone, jwt.MapClaims{"sub": "admin"}).SignedString(jwt.UnsafeAllowNoneSignatureType)
	if err != nil {
		t.Fatal(err)
	}
	hs384, err := jwt.NewWithClaims(jwt.SigningMethodHS384, jwt.MapClaims{"sub": "u"}).SignedString(testSecret)
	if err != nil {
		t.Fatal(err)
	}
	tamperedPayload := base64.RawURLEncoding.EncodeToString([]byte(`{"sub":"admin","exp":` + "9999999999" + `}`))

	cases := []struct {
		name  string
		v     *Verifier
		token string
	}{
		{"empty", all, ""},
		{"garbage", all, "not a token"},
		{"two parts", all, "a.b"},
		{"hs256 on rsa-only verifier", rsaOnly, hsTok},
		{"alg confusion", rsaOnly, confusedTok},
		{"alg none", all, noneTok},
		{"alg none rsa-only", rsaOnly, noneTok},
		{"hs384 not configured", all, hs384},
		{"tampered payload", all, parts[0] + "." + tamperedPayload + "." + parts[2]},
		{"tampered signature", all, parts[0] + "." + parts[1] + "." + flipLast(parts[2])},
		{"wrong rsa key", all, mustSign(t, good, RS256, otherRSA)},
		{"missing sub", all, mustSignMap(t, jwt.MapClaims{"exp": epoch.Add(time.Hour).Unix()})},
		{"issued in future", all, mustSign(t, Claims{Subject: "u", IssuedAt: epoch.Add(time.Hour)}, HS256, testSecret)},
		{"not yet valid", all, mustSignMap(t, jwt.MapClaims{"sub": "u", "nbf": epoch.Add(time.Hour).Unix()})},
		{"channels wrong type", all, mustSignMap(t, jwt.MapClaims{"sub": "u", "channels": "chat:a"})},
		{"too long", all, strings.Repeat("a", DefaultMaxTokenBytes+1)},
		{"expired and tampered", all, expiredTampered(t)},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := tc.v.Verify(tc.token)
			if !errors.Is(err, ErrInvalidToken) || errors.Is(err, ErrTokenExpired) {
				t.Fatalf("err = %v, want ErrInvalidToken only", err)
			}
		})
	}
}

// expiredTampered is an expired token whose signature does not match: it
// must be reported invalid, never merely expired.
func expiredTampered(t *testing.T) string {
	tok, err := Sign(Claims{Subject: "u", ExpiresAt: epoch.Add(-time.Hour)}, HS256, testSecret)
	if err != nil {
		t.Fatal(err)
	}
	parts := strings.Split(tok, ".")
	return parts[0] + "." + parts[1] + "." + flipLast(parts[2])
}

func flipLast(s string) string {
	b := []byte(s)
	if b[0] == 'A' {
		b[0] = 'B'
	} else {
		b[0] = 'A'
	}
	return string(b)
}

func mustSignMap(t *testing.T, c jwt.MapClaims) string {
	t.Helper()
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, c).SignedString(testSecret)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestIssuerAudience(t *testing.T) {
	clock := &fixedClock{epoch}
	v, err := NewVerifier(Config{HMACSecret: testSecret, Issuer: "backend", Audience: "herald", Now: clock.now})
	if err != nil {
		t.Fatal(err)
	}
	ok := mustSignMap(t, jwt.MapClaims{"sub": "u", "iss": "backend", "aud": "herald"})
	if _, err := v.Verify(ok); err != nil {
		t.Fatalf("matching iss/aud: %v", err)
	}
	for _, c := range []jwt.MapClaims{
		{"sub": "u", "iss": "other", "aud": "herald"},
		{"sub": "u", "iss": "backend", "aud": "other"},
		{"sub": "u"},
	} {
		if _, err := v.Verify(mustSignMap(t, c)); !errors.Is(err, ErrInvalidToken) {
			t.Errorf("claims %v: err = %v, want ErrInvalidToken", c, err)
		}
	}
}

func TestNewVerifierConfig(t *testing.T) {
	testKeys(t)
	p384, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	small, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	bad := []Config{
		{},
		{HMACSecret: []byte("short")},
		{RSAPublicKeyPEM: []byte("not pem")},
		{RSAPublicKeyPEM: ecPub},
		{RSAPublicKeyPEM: pemPublic(small.Public())},
		{ECDSAPublicKeyPEM: rsaPub},
		{ECDSAPublicKeyPEM: pemPublic(p384.Public())},
	}
	for i, c := range bad {
		if _, err := NewVerifier(c); err == nil {
			t.Errorf("config %d: NewVerifier succeeded, want error", i)
		}
	}
	v, err := NewVerifier(Config{RSAPublicKeyPEM: rsaPub, ECDSAPublicKeyPEM: ecPub})
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(v.Algorithms(), ","); got != "RS256,ES256" {
		t.Errorf("Algorithms = %s", got)
	}
}

func TestSignErrors(t *testing.T) {
	testKeys(t)
	for i, tc := range []struct {
		c   Claims
		alg string
		key any
	}{
		{Claims{}, HS256, testSecret},
		{Claims{Subject: "u"}, HS256, []byte("short")},
		{Claims{Subject: "u"}, HS256, rsaKey},
		{Claims{Subject: "u"}, RS256, testSecret},
		{Claims{Subject: "u"}, ES256, rsaKey},
		{Claims{Subject: "u"}, "none", nil},
		{Claims{Subject: "u", Info: json.RawMessage("{")}, HS256, testSecret},
	} {
		if _, err := Sign(tc.c, tc.alg, tc.key); err == nil {
			t.Errorf("case %d: Sign succeeded, want error", i)
		}
	}
}

func TestSignHS256AndParsePrivateKey(t *testing.T) {
	testKeys(t)
	v, err := NewVerifier(Config{HMACSecret: testSecret, RSAPublicKeyPEM: rsaPub, ECDSAPublicKeyPEM: ecPub})
	if err != nil {
		t.Fatal(err)
	}
	tok, err := SignHS256(testSecret, "7", time.Hour, []string{"c"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	c, err := v.Verify(tok)
	if err != nil || c.Subject != "7" || c.ExpiresAt.IsZero() {
		t.Fatalf("Verify = %+v, %v", c, err)
	}

	pkcs8, err := x509.MarshalPKCS8PrivateKey(rsaKey)
	if err != nil {
		t.Fatal(err)
	}
	ecDER, err := x509.MarshalECPrivateKey(ecKey)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		pem []byte
		alg string
	}{
		{pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: pkcs8}), RS256},
		{pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(rsaKey)}), RS256},
		{pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: ecDER}), ES256},
	} {
		key, alg, err := ParsePrivateKeyPEM(tc.pem)
		if err != nil || alg != tc.alg {
			t.Fatalf("ParsePrivateKeyPEM = %s, %v; want %s", alg, err, tc.alg)
		}
		tok := mustSign(t, Claims{Subject: "k"}, alg, key)
		if _, err := v.Verify(tok); err != nil {
			t.Errorf("%s token: %v", alg, err)
		}
	}
	if _, _, err := ParsePrivateKeyPEM(rsaPub); err == nil {
		t.Error("public key accepted as private key")
	}
}

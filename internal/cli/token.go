package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/heraldhq/herald/internal/auth"
	"github.com/heraldhq/herald/internal/config"
)

// token implements `herald token`: it prints a connection token for a
// user, signed with the configured HS256 secret (token.secret from
// --config, HERALD_TOKEN_SECRET or --token-secret) or with a private key
// file (--key, RS256 or ES256).
func token(env Env, args []string) error {
	fs := newFlagSet("token", env.Stderr)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), "Usage: herald token --user ID [--ttl 1h] [--channels a,b] [--info JSON] [--config FILE | --token-secret S | --key FILE]\n\n"+
			"Prints a connection token. A secret that herald serve generated is valid for that run only:\n"+
			"configure token.secret to issue tokens that survive restarts.\n\nFlags:\n")
		fs.PrintDefaults()
	}
	user := fs.String("user", "", "user `id` (the token's sub claim; required)")
	ttl := fs.Duration("ttl", time.Hour, "lifetime; 0 issues a token that never expires")
	channels := fs.String("channels", "", "comma-separated channels the token grants (for require_grant namespaces)")
	info := fs.String("info", "", "connection info, one JSON value, shown in presence and publications")
	file := fs.String("config", "", "YAML configuration `file` holding token.secret (env "+envConfigFile+")")
	secret := fs.String("token-secret", "", "HS256 secret (env HERALD_TOKEN_SECRET); overrides the configuration")
	keyFile := fs.String("key", "", "PEM private key `file` (RSA: RS256, ECDSA P-256: ES256) instead of the secret")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *user == "" {
		return fmt.Errorf("%w: token: --user is required", errUsage)
	}
	if *ttl < 0 {
		return fmt.Errorf("%w: token: --ttl must not be negative", errUsage)
	}
	var rawInfo json.RawMessage
	if *info != "" {
		if !json.Valid([]byte(*info)) {
			return fmt.Errorf("%w: token: --info is not valid JSON", errUsage)
		}
		rawInfo = json.RawMessage(*info)
	}
	var grants []string
	for _, c := range strings.Split(*channels, ",") {
		if c = strings.TrimSpace(c); c != "" {
			grants = append(grants, c)
		}
	}
	now := time.Now()
	claims := auth.Claims{Subject: *user, IssuedAt: now, Channels: grants, Info: rawInfo}
	if *ttl > 0 {
		claims.ExpiresAt = now.Add(*ttl)
	}

	var (
		key any
		alg string
	)
	if *keyFile != "" {
		pemBytes, err := os.ReadFile(*keyFile)
		if err != nil {
			return fmt.Errorf("token: %w", err)
		}
		if key, alg, err = auth.ParsePrivateKeyPEM(pemBytes); err != nil {
			return fmt.Errorf("token: %s: %w", *keyFile, err)
		}
	} else {
		var settings []config.Setting
		if *secret != "" {
			settings = append(settings, config.Setting{Key: "token.secret", Value: *secret})
		}
		cfg, err := loadConfig(env, *file, settings)
		if err != nil {
			return fmt.Errorf("token: %w", err)
		}
		if cfg.Token.Secret == "" {
			return errors.New("token: no token secret configured: set token.secret (--config FILE), " +
				"HERALD_TOKEN_SECRET or --token-secret, or sign with --key")
		}
		key, alg = []byte(cfg.Token.Secret), auth.HS256
	}
	tok, err := auth.Sign(claims, alg, key)
	if err != nil {
		return fmt.Errorf("token: %w", err)
	}
	_, err = fmt.Fprintln(env.Stdout, tok)
	return err
}

package cli

import (
	"fmt"
)

const configUsage = `Usage: herald config check FILE

Validates FILE merged with the defaults and the HERALD_* environment, as
herald serve would merge them, and prints the effective configuration with
secrets redacted. Exit status 1 when the configuration is invalid or herald
serve would refuse it (a non-loopback address without api_key and a token
key).
`

// configCmd implements `herald config check FILE`.
func configCmd(env Env, args []string) error {
	if len(args) == 2 && args[0] == "check" && (args[1] == "-h" || args[1] == "--help") {
		fmt.Fprint(env.Stdout, configUsage)
		return nil
	}
	if len(args) != 2 || args[0] != "check" || args[1] == "" {
		fmt.Fprint(env.Stderr, configUsage)
		return fmt.Errorf("%w: herald config check FILE", errUsage)
	}
	file := args[1]
	cfg, err := loadConfig(env, file, nil)
	if err != nil {
		return fmt.Errorf("invalid configuration: %w", err)
	}
	if err := cfg.CheckExposure(); err != nil {
		return fmt.Errorf("invalid configuration: herald serve would refuse it: %w", err)
	}
	out, err := cfg.Redacted().YAML()
	if err != nil {
		return err
	}
	if _, err := env.Stdout.Write(out); err != nil {
		return fmt.Errorf("write: %w", err)
	}
	fmt.Fprintf(env.Stderr, "%s: configuration OK\n", file)
	return nil
}

package cli

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/heraldhq/herald/internal/config"
	"github.com/heraldhq/herald/internal/server"
)

// envConfigFile names the configuration file when --config is not given.
const envConfigFile = "HERALD_CONFIG"

// otherCommandsEnv are HERALD_* variables that are not server options:
// serve does not warn about them.
var otherCommandsEnv = map[string]bool{
	envConfigFile:         true,
	"HERALD_URL":          true, // sub, pub
	"HERALD_CLIENT_TOKEN": true, // sub
}

// configFlags registers --config and one flag per scalar configuration
// option (named after its key path: --listen, --token-secret,
// --log-level, ...). Flags are recorded in the order given so that Load
// applies them last, over the file and the environment.
func configFlags(fs *flag.FlagSet, settings *[]config.Setting, file *string) {
	fs.StringVar(file, "config", "", "YAML configuration `file` (env "+envConfigFile+")")
	for _, k := range config.Keys() {
		name := k.Name
		set := func(v string) error {
			*settings = append(*settings, config.Setting{Key: name, Value: v})
			return nil
		}
		help := fmt.Sprintf("set %s (env %s)", k.Name, k.Env)
		switch k.Kind {
		case config.KindBool:
			fs.BoolFunc(k.Flag, help, set)
		case config.KindList:
			fs.Func(k.Flag, help+"; comma-separated", set)
		default:
			fs.Func(k.Flag, help+"; "+string(k.Kind), set)
		}
	}
}

// loadConfig merges the configuration sources of a command.
func loadConfig(env Env, file string, settings []config.Setting) (*config.Config, error) {
	if file == "" {
		file = lookupEnv(env.Environ, envConfigFile)
	}
	return config.Load(config.LoadOptions{File: file, Environ: env.Environ, Flags: settings})
}

func lookupEnv(environ []string, name string) string {
	for _, kv := range environ {
		if k, v, ok := strings.Cut(kv, "="); ok && k == name {
			return v
		}
	}
	return ""
}

// serve runs a node until ctx ends, then shuts it down within
// shutdown_timeout. started, when set, is called once the node serves.
func serve(ctx context.Context, restore func(), env Env, args []string, started func(*server.Server)) error {
	fs := newFlagSet("serve", env.Stderr)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: herald serve [flags]\n\n"+
			"Runs a node. With no configuration it listens on 127.0.0.1:8080 with the demo\n"+
			"at /, generating and printing an API key and a token secret.\n"+
			"SIGHUP reloads the TLS certificate (tls.cert_file, tls.key_file); SIGINT and\n"+
			"SIGTERM drain the clients and stop.\n"+
			"Precedence: flags > HERALD_* environment > --config file > defaults.\n\nFlags:\n")
		fs.PrintDefaults()
	}
	var settings []config.Setting
	var file string
	configFlags(fs, &settings, &file)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	cfg, err := loadConfig(env, file, settings)
	if err != nil {
		return err
	}
	log := server.NewLogger(cfg.Log, env.Stderr)
	// Packages that log through the default logger use the same format.
	prev := slog.Default()
	slog.SetDefault(log)
	defer slog.SetDefault(prev)
	for _, name := range config.UnknownEnv(env.Environ) {
		if !otherCommandsEnv[name] && !strings.HasPrefix(name, "HERALD_TEST_") {
			log.Warn("ignoring unknown environment variable", "name", name)
		}
	}
	srv, err := server.New(server.Options{Config: cfg, Version: version(), Logger: log, Out: env.Stdout})
	if err != nil {
		return err
	}
	// Listen for SIGHUP before the node serves, so that a reload signal
	// sent as soon as it is up never takes the default action (exit).
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	if err := srv.Start(ctx); err != nil {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cfg.ShutdownTimeout)
		defer cancel()
		_ = srv.Shutdown(sctx)
		return err
	}
	if started != nil {
		started(srv)
	}
	waitForShutdown(ctx, hup, srv, log)
	if restore != nil {
		restore() // a second signal now terminates at once
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cfg.ShutdownTimeout)
	defer cancel()
	return srv.Shutdown(sctx)
}

// waitForShutdown returns when ctx ends. Meanwhile each signal on hup
// (SIGHUP) reloads the TLS certificate and key.
func waitForShutdown(ctx context.Context, hup <-chan os.Signal, srv *server.Server, log *slog.Logger) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-hup:
			switch err := srv.Reload(); {
			case !srv.TLSEnabled():
				log.Info("SIGHUP: nothing to reload (no TLS configured)")
			case err != nil:
				log.Error("SIGHUP: TLS certificate reload failed; keeping the previous certificate", "error", err)
			default:
				log.Info("SIGHUP: TLS certificate reloaded")
			}
		}
	}
}

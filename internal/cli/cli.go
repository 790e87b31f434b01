// Package cli implements herald's command line: one file per subcommand.
//
//	herald serve [flags]                 run a node (flags: every scalar configuration option)
//	herald token --user ID [flags]       print a connection token signed with the configured key
//	herald config check FILE             validate a configuration file and print the effective configuration
//	herald sub [flags] CHANNEL...        print the publications of channels as JSON lines
//	herald pub [flags] CHANNEL DATA      publish through the server API (DATA "-": one message per stdin line)
//	herald bench [flags]                 load-test a node: fan-out, echo and idle-memory runs
//	herald version                       print the version
//
// Commands read the environment and write to the streams they are given,
// so tests run them in-process.
package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/debug"
	"strings"
	"syscall"
)

// Version is the release version, set at build time with
// -ldflags "-X github.com/heraldhq/herald/internal/cli.Version=v1.2.3".
// Empty means the module version from the build info, or "dev".
var Version = ""

// version returns the effective version string.
func version() string {
	if Version != "" {
		return Version
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return "dev"
}

// Env is what a command reads from and writes to.
type Env struct {
	Args    []string // arguments after the program name
	Environ []string // as os.Environ
	Stdout  io.Writer
	Stderr  io.Writer
	Stdin   io.Reader // nil: os.Stdin
}

// errUsage marks errors caused by the command line; the exit status is 2.
var errUsage = errors.New("usage")

const usage = `herald is a real-time messaging gateway.

Usage:
  herald serve [flags]               run a node (herald serve -h lists the flags)
  herald token --user ID [flags]     print a connection token
  herald config check FILE           validate FILE and print the effective configuration
  herald sub [flags] CHANNEL...      print publications as JSON lines (herald sub -h)
  herald pub [flags] CHANNEL DATA    publish through the server API (herald pub -h)
  herald bench [flags]               load-test a node (herald bench -h lists the flags)
  herald version                     print the version

Documentation: docs/configuration.md, docs/operations.md, docs/api.md, docs/protocol.md.
`

// Main runs the command line of the process and returns its exit status.
func Main() int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return Run(ctx, stop, Env{Args: os.Args[1:], Environ: os.Environ(), Stdout: os.Stdout, Stderr: os.Stderr, Stdin: os.Stdin})
}

// Run runs one command and returns the exit status: 0 success, 1 failure,
// 2 bad usage. ctx ending asks a running server to shut down; restore,
// when set, is called at that moment so that a second signal terminates
// the process at once.
func Run(ctx context.Context, restore func(), env Env) int {
	if len(env.Args) == 0 {
		fmt.Fprint(env.Stderr, usage)
		return 2
	}
	var err error
	switch cmd, args := env.Args[0], env.Args[1:]; cmd {
	case "serve":
		err = serve(ctx, restore, env, args, nil)
	case "token":
		err = token(env, args)
	case "config":
		err = configCmd(env, args)
	case "sub":
		err = sub(ctx, env, args)
	case "pub":
		err = pub(ctx, env, args)
	case "bench":
		err = bench(ctx, env, args)
	case "version", "--version", "-version":
		err = versionCmd(env, args)
	case "help", "-h", "--help":
		fmt.Fprint(env.Stdout, usage)
		return 0
	default:
		fmt.Fprintf(env.Stderr, "herald: unknown command %q\n\n%s", cmd, usage)
		return 2
	}
	switch {
	case err == nil:
		return 0
	case errors.Is(err, flag.ErrHelp):
		return 0
	case errors.Is(err, errUsage):
		fmt.Fprintf(env.Stderr, "herald: %v\n", err)
		return 2
	default:
		fmt.Fprintf(env.Stderr, "herald: %v\n", err)
		return 1
	}
}

// newFlagSet returns a flag set that reports errors as errUsage and writes
// its help to w.
func newFlagSet(name string, w io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(w)
	return fs
}

// parseFlags parses args and turns flag errors into errUsage.
func parseFlags(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return fmt.Errorf("%w: %s: %v", errUsage, fs.Name(), err)
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%w: %s: unexpected arguments: %s", errUsage, fs.Name(), strings.Join(fs.Args(), " "))
	}
	return nil
}

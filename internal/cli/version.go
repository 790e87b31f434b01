package cli

import (
	"fmt"
	"runtime"
)

func versionCmd(env Env, args []string) error {
	fs := newFlagSet("version", env.Stderr)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	fmt.Fprintf(env.Stdout, "herald %s (%s, %s/%s)\n", version(), runtime.Version(), runtime.GOOS, runtime.GOARCH)
	return nil
}

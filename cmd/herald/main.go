// Command herald is a self-hosted real-time messaging gateway. See
// README.md and `herald help`.
package main

import (
	"os"

	"github.com/heraldhq/herald/internal/cli"
)

func main() { os.Exit(cli.Main()) }

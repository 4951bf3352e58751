// Command cfg is the configuration-as-code toolchain: see the README.
package main

import (
	"os"

	"github.com/cfg-dev/cfg/cmd/cfg/internal/cli"
)

func main() { os.Exit(cli.Main()) }

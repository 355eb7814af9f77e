// Command starforge runs the Starforge master and its admin tools.
package main

import (
	"context"
	"os"

	"github.com/starforge/starforge/master/cli"
)

func main() {
	os.Exit(cli.Main(context.Background(), os.Args[1:], os.Stdout, os.Stderr))
}

// Command rackboot is the rackboot server, its CLI and its in-memory agent in one binary.
// main only builds a signal context and runs the command tree; nothing below it exits.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := execute(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "rackboot:", err)
		os.Exit(exitCode(err))
	}
}

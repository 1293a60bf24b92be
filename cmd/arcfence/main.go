// Command arcfence is the egress gate for Azure Arc: an HTTPS CONNECT
// forward proxy and optional DNS filter that admit exactly the endpoints the
// chosen Arc offerings need. See README.md.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	cmd := newRootCmd()
	if err := cmd.ExecuteContext(ctx); err != nil {
		var ee exitError
		if errors.As(err, &ee) {
			if ee.msg != "" {
				fmt.Fprintln(os.Stderr, "arcfence:", ee.msg)
			}
			os.Exit(ee.code)
		}
		fmt.Fprintln(os.Stderr, "arcfence:", err)
		os.Exit(1)
	}
}

// exitError ends the command with a given exit code (and message, if any).
type exitError struct {
	code int
	msg  string
}

func (e exitError) Error() string { return e.msg }

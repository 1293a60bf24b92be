package daemon

import (
	"context"
	"io"
	"testing"

	"github.com/spf13/pflag"

	"github.com/arcfence/arcfence/internal/config"
)

// flagSource parses args as `arcfence serve` would and returns the
// configuration source they make.
func flagSource(t *testing.T, args ...string) config.Source {
	t.Helper()
	fs := pflag.NewFlagSet("serve", pflag.ContinueOnError)
	config.AddFlags(fs)
	config.AddServeFlags(fs)
	if err := fs.Parse(args); err != nil {
		t.Fatal(err)
	}
	return config.FromFlags(fs)
}

// runServe runs a daemon from src until ctx ends, logging to w.
func runServe(ctx context.Context, src config.Source, w io.Writer) error {
	return Run(ctx, Options{Source: src, Stderr: w})
}

package main

import (
	"github.com/spf13/cobra"

	"github.com/arcfence/arcfence/internal/config"
	"github.com/arcfence/arcfence/internal/daemon"
)

func newServeCmd() *cobra.Command {
	c := &cobra.Command{
		Use:   "serve",
		Short: "Run the proxy (and the DNS filter when dns.listen is set) until SIGINT/SIGTERM",
		Long: `Run the CONNECT proxy on listen (and the HTTPS listener on tls.listen, the DNS
filter on dns.listen, the admin listener on admin.listen). The configuration
is reloaded when the --config file changes (a complete write: replaced by a
rename, or closed by its writer) and on SIGHUP, without dropping open
tunnels; a file that does not load leaves the running configuration in
place. SIGINT/SIGTERM stop accepting, let tunnels drain for
limits.shutdown_grace and exit 0.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return daemon.Run(cmd.Context(), daemon.Options{Source: config.FromFlags(cmd.Flags()), Stderr: cmd.ErrOrStderr()})
		},
	}
	config.AddServeFlags(c.Flags())
	return c
}

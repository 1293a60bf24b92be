package main

import (
	"github.com/arcfence/arcfence/internal/config"

	"github.com/spf13/cobra"
)

// newRootCmd builds the command tree. Every subcommand is added here.
func newRootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:           "arcfence",
		Short:         "The egress gate for Azure Arc: an allowlisting CONNECT proxy and DNS filter",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	config.AddFlags(root.PersistentFlags())
	root.AddCommand(newServeCmd())
	root.AddCommand(newExplainCmd())
	root.AddCommand(newConfigCmd())
	root.AddCommand(newCatalogCmd())
	root.AddCommand(newCertsCmd())
	root.AddCommand(newVersionCmd())
	root.AddCommand(newLearnCmd())
	root.AddCommand(newCheckCmd(), newAgentConfigCmd(), newServicebusCmd())
	return root
}

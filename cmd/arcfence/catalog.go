package main

import (
	"strings"

	"github.com/spf13/cobra"

	"github.com/arcfence/arcfence/export"
	"github.com/arcfence/arcfence/policy"
)

func newCatalogCmd() *cobra.Command {
	var (
		all    bool
		format string
		pacFor string
	)
	c := &cobra.Command{
		Use:   "catalog [flags]",
		Short: "Print the effective allowlist (or every catalog row with --all) in a format",
		Long: `Print the allowlist the configuration admits: catalog rows with regions
filled, then allow entries. --all prints every row of the catalog instead.
Formats: ` + strings.Join(export.Formats(), ", ") + `.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, p, err := loadPolicy(cmd)
			if err != nil {
				return err
			}
			rules := p.Rules()
			if all {
				cat, err := policy.EmbeddedCatalog()
				if err != nil {
					return err
				}
				rules = cat.AllRules(p.Regions())
			}
			proxy := pacFor
			if proxy == "" {
				proxy = cfg.Listen
			}
			return export.WriteWith(cmd.OutOrStdout(), format, rules, export.OptionsFor(p, proxy))
		},
	}
	c.Flags().BoolVar(&all, "all", false, "every catalog row, whatever the offerings")
	c.Flags().StringVar(&format, "format", export.FormatTable, "output format: "+strings.Join(export.Formats(), ", "))
	c.Flags().StringVar(&pacFor, "proxy-addr", "", "host:port the PAC file names (default: listen)")
	return c
}

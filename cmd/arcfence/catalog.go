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
				rules = p.Catalog().AllRules(p.Regions())
			}
			proxy := pacFor
			if proxy == "" {
				proxy = cfg.Listen
			}
			return export.WriteWith(cmd.OutOrStdout(), format, rules, export.OptionsFor(p, proxy))
		},
	}
	c.Flags().BoolVar(&all, "all", false, "every catalog row of the configured revision and cloud, whatever the offerings")
	c.Flags().StringVar(&format, "format", export.FormatTable, "output format: "+strings.Join(export.Formats(), ", "))
	c.Flags().StringVar(&pacFor, "proxy-addr", "", "host:port the PAC file names (default: listen)")
	c.AddCommand(newCatalogDiffCmd())
	return c
}

func newCatalogDiffCmd() *cobra.Command {
	var from, to, format string
	c := &cobra.Command{
		Use:   "diff --from REV --to REV [--offerings ...] [--features ...] [--cloud C]",
		Short: "Print the catalog rows added, removed and changed between two revisions",
		Long: `Print, per offering and feature, the catalog rows that revision --to adds,
removes or changes compared with --from (revisions: ` + strings.Join(policy.Revisions(), ", ") + `),
as a table or JSON. --offerings keeps those offerings' tables, --features the rows
that need no feature or one of these, --cloud one cloud's tables (default: every cloud).
Read it before changing catalog.revision.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var f policy.DiffFilter
			var err error
			if f.Offerings, err = cmd.Flags().GetStringSlice("offerings"); err != nil {
				return err
			}
			if f.Features, err = cmd.Flags().GetStringSlice("features"); err != nil {
				return err
			}
			if f.Cloud, err = cmd.Flags().GetString("cloud"); err != nil {
				return err
			}
			cat, err := policy.EmbeddedCatalog()
			if err != nil {
				return err
			}
			rows, err := cat.Diff(from, to, f)
			if err != nil {
				return err
			}
			return export.WriteDiff(cmd.OutOrStdout(), format, from, to, rows)
		},
	}
	c.Flags().StringVar(&from, "from", "", "the revision to compare from (e.g. "+policy.Revision202401+")")
	c.Flags().StringVar(&to, "to", policy.LatestRevision, "the revision to compare to")
	c.Flags().StringVar(&format, "format", export.FormatTable, "table or json")
	_ = c.MarkFlagRequired("from")
	return c
}

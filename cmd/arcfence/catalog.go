package main

import (
	"slices"
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
Formats: ` + strings.Join(export.Formats(), ", ") + `. --profile NAME prints that
profile's allowlist; without it, squid and azure-firewall render every profile,
each bound to its clients (the other formats print the default profile).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			rt, prof, err := loadProfile(cmd)
			if err != nil {
				return err
			}
			if !all && profileFlag(cmd) == "" && len(rt.Profiles.List()) > 1 && slices.Contains(export.ProfileFormats(), format) {
				return writeProfiles(cmd, rt.Profiles, format)
			}
			cfg, p := rt.Config, prof.Policy
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
	addProfileFlag(c.Flags(), "is printed; without it squid and azure-firewall render every profile bound to its clients")
	c.AddCommand(newCatalogDiffCmd())
	return c
}

// writeProfiles renders every profile with clients, bound to them, in the
// order a source address picks its profile.
func writeProfiles(cmd *cobra.Command, ps *policy.Profiles, format string) error {
	var out []export.Profile
	for _, pc := range ps.List() {
		if len(pc.Clients) == 0 {
			continue // the default profile of clients: []: serves no one
		}
		ep := export.Profile{Name: pc.Profile.Name, Rules: pc.Profile.Policy.Rules(), Options: export.OptionsFor(pc.Profile.Policy, "")}
		for _, c := range pc.Clients {
			ep.Clients = append(ep.Clients, c.String())
		}
		out = append(out, ep)
	}
	return export.WriteProfiles(cmd.OutOrStdout(), format, out)
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

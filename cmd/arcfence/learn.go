package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"strings"

	"github.com/spf13/cobra"

	"github.com/arcfence/arcfence/internal/config"
	"github.com/arcfence/arcfence/internal/learn"
	"github.com/arcfence/arcfence/policy"
)

// newLearnCmd is `arcfence learn`: turning refusal logs into config lines.
func newLearnCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "learn",
		Short: "Turn refusal logs into allowlist changes",
	}
	cmd.AddCommand(newLearnReportCmd())
	return cmd
}

func newLearnReportCmd() *cobra.Command {
	var format string
	cmd := &cobra.Command{
		Use:   "report [--config F] [--format text|yaml|json] [LOGFILE...]",
		Short: "Say what would admit each refused destination in arcfence's logs",
		Long: `Read arcfence's JSON log lines (the files given, or stdin when none), group the
refused ("denied") and would-be-refused ("would deny", learn mode) destinations,
folded summary lines counted in full, and say for each what would admit it under
the config: a catalog offering or feature (with the spec section of its row), a
region to add, or, when nothing in the catalog does, an allow entry. Every
suggestion is checked by deciding the destination under the suggested config.

--format yaml prints the config keys to paste (offerings, features, regions,
allow: the current entries plus the additions); pasted over the same keys of
the config, they admit every destination the report could admit. Lines that do
not parse are counted and reported, never fatal.

With profiles, the lines are grouped by the profile that refused them (the
"profile" field; lines naming none or an unknown profile go to the default) and
each profile is analysed with its own selection: yaml puts the default profile's
keys at the top level and the others under profiles: entries with their name,
to merge by name.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			switch format {
			case "text", "yaml", "json":
			default:
				return fmt.Errorf("--format %q: expected text, yaml or json", format)
			}
			cfg, err := loadConfig(cmd)
			if err != nil {
				return err
			}
			c := learn.NewCollector()
			if len(args) == 0 {
				if err := c.ReadLog(cmd.InOrStdin(), "stdin"); err != nil {
					return err
				}
			}
			for _, name := range args {
				f, err := os.Open(name)
				if err != nil {
					return err
				}
				err = c.ReadLog(f, name)
				f.Close()
				if err != nil {
					return err
				}
			}
			if len(cfg.Profiles) > 0 {
				return learnProfiles(cmd, cfg, c, format)
			}
			rep, err := learn.Analyze(*cfg, c)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			switch format {
			case "yaml":
				if err := rep.WriteYAML(out); err != nil {
					return err
				}
				if rep.Stats.Bad > 0 {
					fmt.Fprintf(cmd.ErrOrStderr(), "arcfence learn report: %d lines could not be parsed and were skipped\n", rep.Stats.Bad)
				}
				return nil
			case "json":
				return rep.WriteJSON(out)
			}
			return rep.WriteText(out)
		},
	}
	cmd.Flags().StringVar(&format, "format", "text", "text (a summary), yaml (the config lines to paste) or json")
	return cmd
}

// learnProfiles is learn report for a configuration with profiles: one
// analysis per profile that has refusals, the default first.
func learnProfiles(cmd *cobra.Command, cfg *config.Config, c *learn.Collector, format string) error {
	names := []string{policy.DefaultProfile}
	for _, p := range cfg.Profiles {
		names = append(names, p.Name)
	}
	split := c.Split(names, policy.DefaultProfile)
	reps := map[string]*learn.Report{}
	for _, name := range names {
		sub, ok := split[name]
		if !ok {
			continue
		}
		flat, _ := cfg.Flatten(name)
		rep, err := learn.AnalyzeProfile(flat, sub, names)
		if err != nil {
			return fmt.Errorf("profile %s: %w", name, err)
		}
		reps[name] = rep
	}
	out := cmd.OutOrStdout()
	switch format {
	case "json":
		enc := json.NewEncoder(out)
		enc.SetIndent("", "  ")
		return enc.Encode(struct {
			Profiles map[string]*learn.Report `json:"profiles"`
		}{reps})
	case "yaml":
		if rep := reps[policy.DefaultProfile]; rep != nil {
			if err := rep.WriteYAML(out); err != nil {
				return err
			}
		}
		first := true
		taken := slices.Clone(names)
		for _, name := range names {
			rep := reps[name]
			if rep == nil {
				continue
			}
			for i := range rep.NewProfiles {
				rep.NewProfiles[i].Before = name
				for slices.Contains(taken, rep.NewProfiles[i].Name) {
					rep.NewProfiles[i].Name += "-" + name
				}
				taken = append(taken, rep.NewProfiles[i].Name)
			}
			if len(rep.NewProfiles) > 0 && first {
				fmt.Fprintln(out, "profiles:   # new profiles first, each before the profile it names; merge the others into the profile of the same name")
				first = false
			}
			if err := learn.WriteNewProfiles(out, "  ", rep.NewProfiles); err != nil {
				return err
			}
		}
		for _, name := range names[1:] {
			rep := reps[name]
			if rep == nil {
				continue
			}
			if first {
				fmt.Fprintln(out, "profiles:   # merge each entry into the profile of the same name")
				first = false
			}
			var b bytes.Buffer
			if err := rep.WriteYAML(&b); err != nil {
				return err
			}
			fmt.Fprintf(out, "  - name: %s\n", name)
			for _, line := range strings.Split(strings.TrimRight(b.String(), "\n"), "\n") {
				fmt.Fprintf(out, "    %s\n", line)
			}
		}
		if c.Stats.Bad > 0 {
			fmt.Fprintf(cmd.ErrOrStderr(), "arcfence learn report: %d lines could not be parsed and were skipped\n", c.Stats.Bad)
		}
		return nil
	}
	for _, name := range names {
		if rep := reps[name]; rep != nil {
			fmt.Fprintf(out, "== profile %s ==\n", name)
			if err := rep.WriteText(out); err != nil {
				return err
			}
		}
	}
	return nil
}

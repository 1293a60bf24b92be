package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/arcfence/arcfence/internal/learn"
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
not parse are counted and reported, never fatal.`,
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

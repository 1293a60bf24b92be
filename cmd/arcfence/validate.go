package main

import (
	"github.com/spf13/cobra"
	"go.yaml.in/yaml/v3"

	"github.com/arcfence/arcfence/internal/config"
)

func newConfigCmd() *cobra.Command {
	c := &cobra.Command{Use: "config", Short: "Configuration commands"}
	validate := &cobra.Command{
		Use:   "validate",
		Short: "Validate the configuration and print the effective config",
		Long: `Run exactly the start-up load and compile path of 'arcfence serve', then print
the effective configuration as YAML. Exit non-zero with every problem listed
when the configuration is invalid.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, p, err := loadPolicy(cmd)
			if err != nil {
				return err
			}
			out := effective{Config: cfg, Rules: len(p.Rules()), Offerings: p.Selected(), Regions: p.Regions(),
				Connection: p.Connection(), StaysDirect: p.StaysDirect()}
			enc := yaml.NewEncoder(cmd.OutOrStdout())
			enc.SetIndent(2)
			defer enc.Close()
			return enc.Encode(out)
		},
	}
	config.AddServeFlags(validate.Flags())
	c.AddCommand(validate)
	return c
}

// effective is what `config validate` prints.
type effective struct {
	Config    *config.Config `yaml:"config"`
	Offerings []string       `yaml:"effective_offerings"`
	Regions   []string       `yaml:"effective_regions"`
	Rules     int            `yaml:"effective_rules"`
	// Connection is direct, gateway or both.
	Connection string `yaml:"effective_connection"`
	// StaysDirect names, with connection gateway, the selected offerings
	// and features the Arc gateway does not front: their rows stay direct.
	StaysDirect []string `yaml:"stays_direct,omitempty"`
}

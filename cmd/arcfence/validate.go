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
			rt, err := config.FromFlags(cmd.Flags()).Runtime()
			if err != nil {
				return err
			}
			p := rt.Policy()
			out := effective{Config: rt.Config, Rules: len(p.Rules()), Offerings: p.Selected(), Regions: p.Regions(),
				Connection: p.Connection(), StaysDirect: p.StaysDirect()}
			for _, pc := range rt.Profiles.List() {
				ep := effectiveProfile{Name: pc.Profile.Name, Clients: []string{}, Mode: pc.Profile.Mode.String(),
					Offerings: pc.Profile.Policy.Selected(), Regions: pc.Profile.Policy.Regions(), Rules: len(pc.Profile.Policy.Rules()),
					Connection: pc.Profile.Policy.Connection(), StaysDirect: pc.Profile.Policy.StaysDirect()}
				for _, c := range pc.Clients {
					ep.Clients = append(ep.Clients, c.String())
				}
				out.Profiles = append(out.Profiles, ep)
			}
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
	// Profiles are every profile's effective selection, in the order a
	// source address is matched (the named ones in file order, then the
	// default; a default without clients serves no one).
	Profiles []effectiveProfile `yaml:"effective_profiles"`
}

// effectiveProfile is one profile's effective selection.
type effectiveProfile struct {
	Name      string   `yaml:"name"`
	Clients   []string `yaml:"clients"`
	Mode      string   `yaml:"mode"`
	Offerings []string `yaml:"offerings"`
	Regions   []string `yaml:"regions"`
	Rules     int      `yaml:"rules"`
	// Connection and StaysDirect are the profile's, as for the top level.
	Connection  string   `yaml:"connection"`
	StaysDirect []string `yaml:"stays_direct,omitempty"`
}

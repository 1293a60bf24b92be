package main

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/arcfence/arcfence/internal/config"
	"github.com/arcfence/arcfence/policy"
)

// loadConfig loads cmd's configuration (file, environment, flags); the
// keys are decoded, not yet validated (config.Build does that).
func loadConfig(cmd *cobra.Command) (*config.Config, error) {
	return config.FromFlags(cmd.Flags()).Load()
}

// addProfileFlag adds --profile to the commands that work on one profile.
func addProfileFlag(f *pflag.FlagSet, what string) {
	f.String("profile", "", "the profile whose selection "+what+" (default: "+policy.DefaultProfile+", the top-level keys)")
}

// profileFlag returns cmd's --profile ("" when the command has none or it
// is not set).
func profileFlag(cmd *cobra.Command) string {
	if f := cmd.Flags().Lookup("profile"); f != nil {
		return f.Value.String()
	}
	return ""
}

// loadPolicy loads and builds cmd's configuration, the start-up path of
// serve, for the commands that decide or print with the policy: the
// policy of the profile --profile names (the default profile without it).
func loadPolicy(cmd *cobra.Command) (*config.Config, *policy.Policy, error) {
	rt, p, err := loadProfile(cmd)
	if err != nil {
		return nil, nil, err
	}
	return rt.Config, p.Policy, nil
}

// loadProfile is loadPolicy returning the Runtime and the profile.
func loadProfile(cmd *cobra.Command) (*config.Runtime, *policy.Profile, error) {
	rt, err := config.FromFlags(cmd.Flags()).Runtime()
	if err != nil {
		return nil, nil, err
	}
	name := profileFlag(cmd)
	if name == "" {
		name = policy.DefaultProfile
	}
	p, err := profileNamed(rt.Profiles, name)
	if err != nil {
		return nil, nil, err
	}
	return rt, p, nil
}

// profileNamed returns the profile called name, or an error listing the
// profiles of the configuration.
func profileNamed(ps *policy.Profiles, name string) (*policy.Profile, error) {
	if p, ok := ps.Named(name); ok {
		return p, nil
	}
	var names []string
	for _, pc := range ps.List() {
		names = append(names, pc.Profile.Name)
	}
	return nil, fmt.Errorf("--profile: unknown profile %q; the configuration has %s", name, strings.Join(names, ", "))
}

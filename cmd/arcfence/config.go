package main

import (
	"github.com/spf13/cobra"

	"github.com/arcfence/arcfence/internal/config"
	"github.com/arcfence/arcfence/policy"
)

// loadConfig loads cmd's configuration (file, environment, flags); the
// keys are decoded, not yet validated (config.Build does that).
func loadConfig(cmd *cobra.Command) (*config.Config, error) {
	return config.FromFlags(cmd.Flags()).Load()
}

// loadPolicy loads and builds cmd's configuration, the start-up path of
// serve, for the commands that decide or print with the policy.
func loadPolicy(cmd *cobra.Command) (*config.Config, *policy.Policy, error) {
	rt, err := config.FromFlags(cmd.Flags()).Runtime()
	if err != nil {
		return nil, nil, err
	}
	return rt.Config, rt.Policy(), nil
}

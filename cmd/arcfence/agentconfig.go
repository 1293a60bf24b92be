package main

import (
	"strings"

	"github.com/spf13/cobra"

	"github.com/arcfence/arcfence/internal/agentconfig"
)

func newAgentConfigCmd() *cobra.Command {
	var proxyURL, serviceCIDR string
	c := &cobra.Command{
		Use:   "agent-config --proxy-url URL [flags]",
		Short: "Print the commands that point the Arc agents of the configured offerings at arcfence",
		Long: `Print, for the configured offerings, the commands that point the Arc agents
at arcfence: azcmagent config set proxy.url (and proxy.bypass with a private link)
and the systemd-wide alternative for Arc-enabled servers, az connectedk8s connect
--proxy-https/--proxy-http/--proxy-skip-range for Arc-enabled Kubernetes, and the
resource bridge's proxy settings. --proxy-url is arcfence as the agents reach it.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			rt, prof, err := loadProfile(cmd)
			if err != nil {
				return err
			}
			p := prof.Policy
			pc, _ := rt.Config.PolicyOf(prof.Name)
			feats := make([]string, 0, len(pc.Features))
			for _, f := range pc.Features {
				feats = append(feats, strings.ToLower(strings.TrimSpace(f)))
			}
			return agentconfig.Write(cmd.OutOrStdout(), agentconfig.Options{
				ProxyURL:          proxyURL,
				Offerings:         p.Selected(),
				Features:          feats,
				Regions:           p.Regions(),
				DataServicesMode:  pc.DataServicesMode,
				ServiceCIDR:       serviceCIDR,
				Cloud:             p.Cloud(),
				Connection:        p.Connection(),
				GatewayEndpoint:   p.GatewayEndpoint(),
				GatewayResourceID: pc.GatewayResourceID,
			})
		},
	}
	c.Flags().StringVar(&proxyURL, "proxy-url", "", "arcfence as the agents reach it, e.g. http://arcfence.corp.example:3128 (required)")
	c.Flags().StringVar(&serviceCIDR, "service-cidr", "", "the Kubernetes service CIDR for --proxy-skip-range (default: a placeholder)")
	addProfileFlag(c.Flags(), "the commands are for")
	_ = c.MarkFlagRequired("proxy-url")
	return c
}

package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"time"

	"github.com/spf13/cobra"

	"github.com/arcfence/arcfence/internal/servicebus"
	"github.com/arcfence/arcfence/policy"
)

func newServicebusCmd() *cobra.Command {
	c := &cobra.Command{
		Use:   "servicebus",
		Short: "Narrow the *.servicebus.windows.net rows to the names Azure publishes for a region",
	}
	c.AddCommand(newServicebusFetchCmd())
	return c
}

func newServicebusFetchCmd() *cobra.Command {
	var (
		proxy   string
		direct  bool
		out     string
		timeout time.Duration
		caFile  string
		baseURL string
	)
	c := &cobra.Command{
		Use:   "fetch --region R [--proxy URL] [-o FILE]",
		Short: "Fetch the region's servicebus allowlist (the guestnotificationservice call) and write it",
		Long: `Call GET ` + servicebus.DefaultBaseURL + `?api-version=` + servicebus.APIVersion + `&location=<region>
for each configured region (--region), through arcfence (the configured listen, or
--proxy URL; --direct for none), check the answer and write the merged list as a JSON
array to -o FILE (atomically) or stdout. Point servicebus.allowlist_file at the file:
its names then replace the wide *.servicebus.windows.net rows (the azgn* row stays).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := loadConfig(cmd)
			if err != nil {
				return err
			}
			if len(cfg.Regions) == 0 {
				return fmt.Errorf("--region is required (e.g. --region eastus2)")
			}
			tr := &http.Transport{Proxy: nil, TLSClientConfig: &tls.Config{MinVersion: tls.VersionTLS12},
				ForceAttemptHTTP2: true, TLSHandshakeTimeout: timeout}
			defer tr.CloseIdleConnections()
			if !direct {
				if proxy == "" {
					proxy = cfg.Listen
				}
				u, err := proxyURL(proxy)
				if err != nil {
					return err
				}
				tr.Proxy = http.ProxyURL(u)
				tr.OnProxyConnectResponse = func(_ context.Context, pu *url.URL, req *http.Request, resp *http.Response) error {
					if resp.StatusCode == http.StatusOK {
						return nil
					}
					msg := fmt.Sprintf("proxy %s answered CONNECT %s with %s", pu.Redacted(), req.URL.Host, resp.Status)
					if r := resp.Header.Get("X-Arcfence-Reason"); r != "" {
						msg += " (" + r + "): the proxy's config must admit guestnotificationservice.azure.com " +
							"(offering servers, or kubernetes with cluster-connect or custom-locations), or use --direct"
					}
					return errors.New(msg)
				}
			}
			if caFile != "" {
				pool, err := loadRoots(caFile)
				if err != nil {
					return err
				}
				tr.TLSClientConfig.RootCAs = pool
			}
			client := &http.Client{Transport: tr, Timeout: timeout}
			var names []string
			for _, r := range cfg.Regions {
				region := policy.NormalizeRegion(r)
				got, err := servicebus.FetchURL(cmd.Context(), client, servicebus.URL(baseURL, region))
				if err != nil {
					return fmt.Errorf("region %s: %w", region, err)
				}
				names = append(names, got...)
			}
			slices.Sort(names)
			names = slices.Compact(names)
			if out == "" || out == "-" {
				_, err := cmd.OutOrStdout().Write(servicebus.Marshal(names))
				return err
			}
			if err := servicebus.WriteFile(out, names); err != nil {
				return err
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "wrote %d servicebus names to %s; set servicebus.allowlist_file: %s\n", len(names), out, out)
			return nil
		},
	}
	f := c.Flags()
	f.StringVar(&proxy, "proxy", "", "fetch through this proxy (http://host:port); default: the configured listen")
	f.BoolVar(&direct, "direct", false, "fetch without a proxy")
	f.StringVarP(&out, "output", "o", "", "write the list to FILE (default: stdout)")
	f.DurationVar(&timeout, "timeout", 30*time.Second, "overall timeout of each call")
	f.StringVar(&caFile, "ca-file", "", "PEM roots that verify the answer's certificate; default: the system's")
	f.StringVar(&baseURL, "base-url", "", "allowlist URL without query (a mirror); default: "+servicebus.DefaultBaseURL)
	_ = f.MarkHidden("base-url")
	return c
}

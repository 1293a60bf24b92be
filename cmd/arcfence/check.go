package main

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/arcfence/arcfence/internal/check"
)

// proxyFromListen is the --proxy value meaning "the configured listen".
const proxyFromListen = "listen"

func newCheckCmd() *cobra.Command {
	var (
		proxy    string
		asJSON   bool
		samples  []string
		timeout  time.Duration
		parallel int
		caFile   string
	)
	c := &cobra.Command{
		Use:   "check [flags]",
		Short: "Open a TLS connection to every effective endpoint and print which ones work",
		Long: `Open TCP and a TLS handshake (with SNI, verifying the certificate) to every
effective endpoint that has no wildcard, with regions filled in; plain-HTTP rows
get a HEAD request. Directly by default; through a proxy with --proxy URL, or
through the configured listen with a bare --proxy. Wildcard rows are listed as
"not checkable" unless --sample names one of their hosts.
Exit 1 when a required (not optional) endpoint fails.`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 1 {
				// "--proxy URL": a bare --proxy took its default, the URL landed in args.
				if proxy != proxyFromListen {
					return fmt.Errorf("unexpected argument %q", args[0])
				}
				proxy = args[0]
			}
			cfg, p, err := loadPolicy(cmd)
			if err != nil {
				return err
			}
			targets, unchecked, err := check.Targets(p.Rules(), samples)
			if err != nil {
				return err
			}
			ch := &check.Checker{Timeout: timeout, Parallel: parallel}
			if proxy == proxyFromListen {
				proxy = cfg.Listen
			}
			if proxy != "" {
				u, err := proxyURL(proxy)
				if err != nil {
					return err
				}
				ch.Proxy = u
			}
			if caFile != "" {
				pool, err := loadRoots(caFile)
				if err != nil {
					return err
				}
				ch.RootCAs = pool
				ch.ProxyTLS = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
			}
			results := append(ch.Run(cmd.Context(), targets), unchecked...)
			out := cmd.OutOrStdout()
			if asJSON {
				err = check.WriteJSON(out, results)
			} else {
				err = check.WriteTable(out, results)
			}
			if err != nil {
				return err
			}
			if check.Failed(results) {
				return exitError{code: 1}
			}
			return nil
		},
	}
	f := c.Flags()
	f.StringVar(&proxy, "proxy", "", "check through this proxy (http://host:port); a bare --proxy uses the configured listen")
	f.Lookup("proxy").NoOptDefVal = proxyFromListen
	f.BoolVar(&asJSON, "json", false, "one JSON object per endpoint and line")
	f.StringSliceVar(&samples, "sample", nil, "a host name to check in place of a wildcard row it matches (repeatable)")
	f.DurationVar(&timeout, "timeout", 10*time.Second, "per-endpoint timeout")
	f.IntVar(&parallel, "parallel", 8, "endpoints checked at once")
	addProfileFlag(f, "is checked")
	f.StringVar(&caFile, "ca-file", "", "PEM file of the roots that verify the endpoints (and an https:// proxy); default: the system's")
	return c
}

// proxyURL parses a proxy given as a URL or host:port; an unspecified
// listen address (0.0.0.0, ::, empty host) is dialed on loopback.
func proxyURL(s string) (*url.URL, error) {
	if !strings.Contains(s, "://") {
		s = "http://" + s
	}
	u, err := url.Parse(s)
	if err != nil {
		return nil, fmt.Errorf("--proxy %q: %w", s, err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, fmt.Errorf("--proxy %q: scheme %q; expected http or https", s, u.Scheme)
	}
	host := u.Hostname()
	switch host {
	case "", "0.0.0.0":
		host = "127.0.0.1"
	case "::":
		host = "::1"
	}
	if u.Port() == "" {
		return nil, fmt.Errorf("--proxy %q: expected host:port", s)
	}
	u.Host = net.JoinHostPort(host, u.Port())
	return u, nil
}

// loadRoots reads a PEM bundle into a pool.
func loadRoots(path string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("--ca-file: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("--ca-file %s: no PEM certificate in it", path)
	}
	return pool, nil
}

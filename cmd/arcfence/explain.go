package main

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"net/url"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/arcfence/arcfence/policy"
)

func newExplainCmd() *cobra.Command {
	var client string
	c := &cobra.Command{
		Use:   "explain [flags] DEST...",
		Short: "Print the decision for each destination as one JSON line (no network)",
		Long: `Print one JSON line per DEST with host, port, verdict, rule, offering, feature
and reason. DEST is host (port 443), host:port, [IPv6]:port, or an http:// URL
(port 80 unless given; its path is checked). --client ADDR decides as the proxy
would for that source address (its profile; deny client-not-allowed when it is
in none); --profile NAME decides with that profile; with neither, the default
profile. Each line names its profile. Exit 0 for any verdict; non-zero only
when the config is invalid or the profile unknown.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if client != "" && profileFlag(cmd) != "" {
				return fmt.Errorf("--client and --profile: give one (the client's address picks its profile)")
			}
			rt, p, err := loadProfile(cmd)
			if err != nil {
				return err
			}
			if client != "" {
				a, err := netip.ParseAddr(client)
				if err != nil {
					return fmt.Errorf("--client: %q is not an IP address", client)
				}
				p, _ = rt.Profiles.For(a) // nil: in no profile
			}
			enc := json.NewEncoder(cmd.OutOrStdout())
			for _, a := range args {
				if err := enc.Encode(explain(p, a)); err != nil {
					return err
				}
			}
			return nil
		},
	}
	c.Flags().StringVar(&client, "client", "", "decide as the proxy would for this source address (its profile)")
	addProfileFlag(c.Flags(), "decides")
	return c
}

// explainLine is the JSON shape of `arcfence explain`.
type explainLine struct {
	Host     string `json:"host"`
	Port     int    `json:"port"`
	Verdict  string `json:"verdict"`
	Rule     string `json:"rule"`
	Offering string `json:"offering"`
	Feature  string `json:"feature"`
	Reason   string `json:"reason"`
	Profile  string `json:"profile"`
}

// explain decides on one DEST argument with profile p; nil p is a client
// in no profile (client-not-allowed, profile "").
func explain(p *policy.Profile, arg string) explainLine {
	d, r := parseDest(arg)
	var dec policy.Decision
	name := ""
	switch {
	case r != policy.ReasonNone:
		dec = policy.Decision{Reason: r, Host: d.Host, Port: d.Port}
	case p == nil:
		dec = policy.Decision{Reason: policy.ClientNotAllowed, Host: d.Host, Port: d.Port}
		if h, ok := policy.NormalizeHost(d.Host); ok {
			dec.Host = h
		}
	default:
		dec = p.Policy.Decide(d)
	}
	if p != nil {
		name = p.Name
	}
	return explainLine{
		Host: dec.Host, Port: dec.Port, Verdict: dec.Verdict.String(), Rule: dec.Rule,
		Offering: dec.Offering, Feature: dec.Feature, Reason: dec.Reason.String(), Profile: name,
	}
}

// parseDest parses an explain argument: host (443), host:port, [v6]:port,
// a bare IPv6 address (443), or an http:// or https:// URL.
func parseDest(arg string) (policy.Dest, policy.Reason) {
	if strings.HasPrefix(arg, "http://") || strings.HasPrefix(arg, "https://") {
		u, err := url.Parse(arg)
		if err != nil || u.Host == "" {
			return policy.Dest{Host: arg}, policy.InvalidHost
		}
		d := policy.Dest{Host: u.Hostname(), Port: 443}
		if u.Scheme == "http" {
			d.Port, d.Plain = 80, true
			d.Path = u.EscapedPath()
			if d.Path == "" {
				d.Path = "/"
			}
		}
		if ps := u.Port(); ps != "" {
			n, err := strconv.Atoi(ps)
			if err != nil {
				return d, policy.InvalidPort
			}
			d.Port = n
		}
		return d, policy.ReasonNone
	}
	if strings.Count(arg, ":") > 1 && !strings.HasPrefix(arg, "[") {
		return policy.Dest{Host: arg, Port: 443}, policy.ReasonNone
	}
	if !strings.Contains(arg, ":") || strings.HasPrefix(arg, "[") && strings.HasSuffix(arg, "]") {
		return policy.Dest{Host: arg, Port: 443}, policy.ReasonNone
	}
	h, port, r := policy.SplitHostPort(arg)
	return policy.Dest{Host: h, Port: port}, r
}

func newVersionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print version, commit, commit date and Go version",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			v, c, d, g := buildInfo()
			_, err := fmt.Fprintf(cmd.OutOrStdout(), "arcfence %s (commit %s, date %s, %s)\n", v, c, d, g)
			return err
		},
	}
}

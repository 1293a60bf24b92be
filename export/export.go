// Package export renders an effective allowlist (policy.Rules) in the formats
// that `arcfence catalog --format` offers: a table for people, JSON for
// scripts, a host list, a Squid configuration fragment, an Azure Firewall
// rule collection group and a proxy auto-config (PAC) file.
//
// The package only formats: it does no I/O besides writing to the given
// writer, keeps no state, and its functions are safe for concurrent use.
package export

import (
	"bufio"
	"fmt"
	"io"
	"net/netip"
	"slices"
	"strings"

	"github.com/arcfence/arcfence/policy"
)

// Format names, as `arcfence catalog --format` accepts them.
const (
	FormatTable         = "table"
	FormatJSON          = "json"
	FormatHosts         = "hosts"
	FormatSquid         = "squid"
	FormatAzureFirewall = "azure-firewall"
	FormatPAC           = "pac"
)

// DefaultProxyAddr is the proxy address a PAC file names when Options.ProxyAddr
// is empty: the default `listen` of arcfence.
const DefaultProxyAddr = "127.0.0.1:3128"

// Formats returns every format name, in the order the help text lists them.
func Formats() []string {
	return []string{FormatTable, FormatJSON, FormatHosts, FormatSquid, FormatAzureFirewall, FormatPAC}
}

// Options tune the exports. The zero value is valid.
type Options struct {
	// ProxyAddr is arcfence's host:port as the PAC file's clients reach it;
	// "" means DefaultProxyAddr.
	ProxyAddr string
	// Priority is the Azure Firewall rule collection group's priority
	// (100..65000); 0 means 300.
	Priority int
	// Deny are the configuration's deny entries as written (host,
	// host:port, IP, IP:port, [IPv6]:port; <region> expanded with Regions).
	// Deny wins over every rule in arcfence, so the Squid and Azure Firewall
	// exports refuse them before their allow rules. The allowlist views
	// (table, json, hosts) and the PAC file (which routes names to arcfence,
	// where the deny applies) do not use them.
	Deny []string
	// Regions expand <region> in Deny entries (normalized region names).
	Regions []string
}

// Write renders rules in format to w with the default Options. An unknown
// format is an error naming the known ones; nothing is written then.
func Write(w io.Writer, format string, rules []policy.Rule) error {
	return WriteWith(w, format, rules, Options{})
}

// WriteWith is Write with Options. The proxy formats (squid,
// azure-firewall, pac) leave out UDP rows (scheme "udp": time.windows.com:123
// of the 2026-08 resource bridge table), which no HTTP proxy carries; the
// allowlist views keep them.
func WriteWith(w io.Writer, format string, rules []policy.Rule, opts Options) error {
	var f func(*bufio.Writer, []policy.Rule, Options) error
	if format == FormatSquid || format == FormatAzureFirewall || format == FormatPAC {
		rules = slices.DeleteFunc(slices.Clone(rules), func(r policy.Rule) bool { return r.Scheme == "udp" })
	}
	switch format {
	case FormatTable:
		f = writeTable
	case FormatJSON:
		f = writeJSON
	case FormatHosts:
		f = writeHosts
	case FormatSquid:
		f = writeSquid
	case FormatAzureFirewall:
		f = writeAzureFirewall
	case FormatPAC:
		f = writePAC
	default:
		return fmt.Errorf("unknown format %q; expected one of %s", format, strings.Join(Formats(), ", "))
	}
	bw := bufio.NewWriter(w)
	if err := f(bw, rules, opts); err != nil {
		return err
	}
	return bw.Flush()
}

// patKind classifies a host pattern by how it matches.
type patKind uint8

const (
	kindExact       patKind = iota // host.example.com
	kindSubdomains                 // *.example.com: one or more labels before, never the apex
	kindFirstGlob                  // azgn*.servicebus.windows.net: a glob inside the first label
	kindAddress                    // an IP address (address entries)
	kindPlaceholder                // <vmware.vcenter>, <region> left unfilled, or no pattern form at all
)

// pattern is a parsed host pattern.
type pattern struct {
	kind patKind
	// host is the exact name, the address, or the suffix after "*." (for
	// kindSubdomains) or after the first label (for kindFirstGlob, without its dot).
	host string
	// prefix is the part of the first label before '*' (kindFirstGlob).
	prefix string
	addr   netip.Addr
}

func parsePattern(p string) pattern {
	p = strings.ToLower(strings.TrimSuffix(p, "."))
	if strings.ContainsAny(p, "<>") {
		return pattern{kind: kindPlaceholder, host: p}
	}
	if a, err := netip.ParseAddr(strings.Trim(p, "[]")); err == nil {
		return pattern{kind: kindAddress, host: a.String(), addr: a}
	}
	if rest, ok := strings.CutPrefix(p, "*."); ok {
		return pattern{kind: kindSubdomains, host: rest}
	}
	if strings.IndexByte(p, '*') >= 0 {
		first, rest, _ := strings.Cut(p, ".")
		i := strings.IndexByte(first, '*')
		if i < 0 || i != len(first)-1 || rest == "" || strings.IndexByte(rest, '*') >= 0 {
			// not a form arcfence compiles: never expressed as a rule
			return pattern{kind: kindPlaceholder, host: p}
		}
		return pattern{kind: kindFirstGlob, prefix: first[:i], host: rest}
	}
	return pattern{kind: kindExact, host: p}
}

// offerings splits a rule's Offering ("kubernetes,servers" for --all rows).
func offerings(r policy.Rule) []string {
	out := []string{}
	for _, o := range strings.Split(r.Offering, ",") {
		if o = strings.TrimSpace(o); o != "" && !slices.Contains(out, o) {
			out = append(out, o)
		}
	}
	return out
}

// isServicebus reports whether a pattern is one of the servicebus rows, whose
// connections are long-lived websockets.
func isServicebus(p string) bool {
	p = strings.ToLower(strings.TrimSuffix(p, "."))
	return p == "servicebus.windows.net" || strings.HasSuffix(p, ".servicebus.windows.net")
}

// plainHTTP reports whether a rule on port is used with plain HTTP (absolute
// form requests) rather than CONNECT tunnels: port 80, or an http-only row.
func plainHTTP(r policy.Rule, port int) bool {
	return port == 80 || r.Scheme == "http"
}

// uniq appends s to list unless it is already there.
func uniq(list []string, s string) []string {
	if slices.Contains(list, s) {
		return list
	}
	return append(list, s)
}

// OptionsFor returns the Options for a compiled policy: its deny entries and
// regions, and proxyAddr for the PAC file ("" = DefaultProxyAddr).
func OptionsFor(p *policy.Policy, proxyAddr string) Options {
	return Options{ProxyAddr: proxyAddr, Deny: p.Config().Deny, Regions: p.Regions()}
}

// Profile is one profile's allowlist for WriteProfiles.
type Profile struct {
	// Name is the profile's name ([a-z0-9-]).
	Name string
	// Clients are the profile's client CIDRs.
	Clients []string
	// Rules are its effective allowlist.
	Rules []policy.Rule
	// Options are its export options (Deny, Regions; Priority of the first
	// profile is the group's).
	Options Options
}

// ProfileFormats are the formats WriteProfiles renders.
func ProfileFormats() []string { return []string{FormatSquid, FormatAzureFirewall} }

// WriteProfiles renders several profiles' allowlists, each bound to its
// clients, in format (squid or azure-firewall), in the order a source picks
// its profile (the first whose clients contain it). Squid: a src ACL per
// profile, its deny and allow lines, a deny of its clients, and "deny all"
// last. Azure Firewall: rules per profile with its sourceAddresses (Azure
// Firewall admits the union of the rules that match a source, so a client
// in two profiles' ranges gets both).
func WriteProfiles(w io.Writer, format string, profiles []Profile) error {
	if len(profiles) == 0 {
		return fmt.Errorf("no profiles to render")
	}
	noUDP := func(rules []policy.Rule) []policy.Rule {
		return slices.DeleteFunc(slices.Clone(rules), func(r policy.Rule) bool { return r.Scheme == "udp" })
	}
	bw := bufio.NewWriter(w)
	var err error
	switch format {
	case FormatSquid:
		scopes := make([]*squidScope, 0, len(profiles))
		for _, p := range profiles {
			id := strings.ReplaceAll(p.Name, "-", "_")
			scopes = append(scopes, &squidScope{name: p.Name, prefix: "arcfence_" + id, src: "arcfence_" + id + "_src",
				clients: p.Clients, rules: noUDP(p.Rules), opts: p.Options})
		}
		err = writeSquidScopes(bw, scopes)
	case FormatAzureFirewall:
		scopes := make([]afwScope, 0, len(profiles))
		for _, p := range profiles {
			scopes = append(scopes, afwScope{name: p.Name, clients: p.Clients, rules: noUDP(p.Rules), opts: p.Options})
		}
		err = writeAzureFirewallScopes(bw, scopes, profiles[0].Options.Priority)
	default:
		return fmt.Errorf("format %q renders one profile; the formats that render every profile are %s", format, strings.Join(ProfileFormats(), ", "))
	}
	if err != nil {
		return err
	}
	return bw.Flush()
}

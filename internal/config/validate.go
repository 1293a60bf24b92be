package config

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"

	"github.com/arcfence/arcfence/policy"
)

// Validate checks every key that the policy compiler does not, and returns
// all problems joined, each naming its key and what is allowed.
func (c *Config) Validate() error {
	var errs []error
	bad := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }
	oneOf := func(key, val string, allowed ...string) {
		for _, a := range allowed {
			if val == a {
				return
			}
		}
		bad("%s: unknown value %q; expected one of %s", key, val, strings.Join(allowed, ", "))
	}
	hostPort := func(key, val string, optional bool) {
		if val == "" {
			if !optional {
				bad("%s: required (host:port)", key)
			}
			return
		}
		h, p, err := net.SplitHostPort(val)
		if err != nil {
			bad("%s: %q is not host:port (e.g. 127.0.0.1:3128)", key, val)
			return
		}
		if _, err := netip.ParseAddr(h); err != nil && h != "" && h != "localhost" {
			if _, ok := policy.NormalizeHost(h); !ok {
				bad("%s: %q: bad host %q", key, val, h)
			}
		}
		if !validPort(p, true) {
			bad("%s: %q: port %q is not a number from 0 to 65535", key, val, p)
		}
	}
	cidrs := func(key string, vals []string) {
		for _, v := range vals {
			if _, err := ParsePrefix(v); err != nil {
				bad("%s: %v", key, err)
			}
		}
	}

	hostPort("listen", c.Listen, false)
	oneOf("mode", c.Mode, ModeEnforce, ModeLearn)
	oneOf("sni", c.SNI, SNIEnforce, SNILog, SNIOff)
	cidrs("clients", c.Clients)
	if len(c.Clients) == 0 {
		bad("clients: empty: no client could use the proxy; list the CIDRs of the Arc machines (default: loopback and private ranges)")
	}
	cidrs("allow_ranges", c.AllowRanges)
	hostPort("resolver", c.Resolver, true)
	if c.Servicebus.Refresh < 0 {
		bad("servicebus.refresh: %s is negative; use 0 (never) or a period such as 24h", c.Servicebus.Refresh)
	}
	if c.Servicebus.Refresh > 0 && c.Servicebus.AllowlistFile == "" {
		bad("servicebus.refresh: set without servicebus.allowlist_file (the file the fetched list is written to)")
	}
	l := c.Limits
	if l.HeaderTimeout <= 0 {
		bad("limits.header_timeout: must be positive (e.g. 10s)")
	}
	if l.MaxHeaderBytes < 1024 {
		bad("limits.max_header_bytes: %d is too small; at least 1024", l.MaxHeaderBytes)
	}
	if l.DialTimeout <= 0 {
		bad("limits.dial_timeout: must be positive (e.g. 10s)")
	}
	if l.MaxTunnels < 1 {
		bad("limits.max_tunnels: must be at least 1")
	}
	if l.MaxTunnelsPerClient < 1 {
		bad("limits.max_tunnels_per_client: must be at least 1")
	}
	if l.TunnelIdleTimeout < 0 {
		bad("limits.tunnel_idle_timeout: negative; use 0 for none")
	}
	if l.ShutdownGrace < 0 {
		bad("limits.shutdown_grace: negative; use 0 to close tunnels at once")
	}
	hostPort("tls.listen", c.TLS.Listen, true)
	if c.TLS.Listen != "" && (c.TLS.Cert == "" || c.TLS.Key == "") {
		bad("tls.listen: set without tls.cert and tls.key (arcfence certs init DIR writes a pair)")
	}
	if c.TLS.Listen == "" && (c.TLS.Cert != "" || c.TLS.Key != "") {
		bad("tls.cert/tls.key: set without tls.listen")
	}
	hostPort("dns.listen", c.DNS.Listen, true)
	for _, u := range c.DNS.Upstream {
		if ap, err := netip.ParseAddrPort(u); err != nil || ap.Port() == 0 {
			bad("dns.upstream: %q is not IP:port (e.g. 10.0.0.2:53 or [fd00::53]:53); upstreams are addresses so the filter never needs DNS to find DNS", u)
		}
	}
	oneOf("dns.deny_rcode", c.DNS.DenyRcode, "nxdomain", "refused")
	if c.DNS.CacheSize < 0 {
		bad("dns.cache_size: negative; use 0 for no cache")
	}
	if c.DNS.AdmitLearnedAddresses && c.DNS.Listen == "" {
		bad("dns.admit_learned_addresses: needs the DNS filter on (dns.listen)")
	}
	hostPort("admin.listen", c.Admin.Listen, true)
	cidrs("admin.clients", c.Admin.Clients)
	for _, h := range c.Admin.Hosts {
		if _, _, ok := ParseHost(h); !ok {
			bad("admin.hosts: %q is not a host name or an IP address, optionally with :port (e.g. arcfence.example.com or 10.0.0.5:9090)", h)
		}
	}
	oneOf("log.level", c.Log.Level, "trace", "debug", "info", "warn", "error")
	oneOf("log.format", c.Log.Format, "json", "console")
	oneOf("log.tunnels", c.Log.Tunnels, "debug", "info")
	if c.Log.FoldWindow < 0 {
		bad("log.fold_window: negative; use 0 to log every refusal")
	}
	return errors.Join(errs...)
}

func validPort(p string, zeroOK bool) bool {
	if p == "" || len(p) > 5 {
		return false
	}
	n := 0
	for _, c := range p {
		if c < '0' || c > '9' {
			return false
		}
		n = n*10 + int(c-'0')
	}
	return n <= 65535 && (zeroOK || n > 0)
}

// ParsePrefix parses a CIDR, or a single address as a /32 or /128.
func ParsePrefix(s string) (netip.Prefix, error) {
	s = strings.TrimSpace(s)
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("%q is not a CIDR (e.g. 10.0.0.0/8 or fc00::/7)", s)
		}
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("%q is not an address or CIDR", s)
	}
	return netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()), nil
}

// ParseHost parses an admin.hosts entry or an HTTP Host header: a DNS name
// or an IP address, optionally with ":port" ("[IPv6]:port"), the host
// normalized by policy.NormalizeHost. port is 0 when none is given.
func ParseHost(s string) (host string, port int, ok bool) {
	h, port, r := policy.SplitHostPort(s)
	if r != policy.ReasonNone {
		h, port = s, 0
		if strings.HasSuffix(s, ":") {
			return "", 0, false
		}
	}
	host, ok = policy.NormalizeHost(h)
	return host, port, ok
}

// ParsePrefixes parses a list with ParsePrefix.
func ParsePrefixes(list []string) ([]netip.Prefix, error) {
	out := make([]netip.Prefix, 0, len(list))
	for _, s := range list {
		p, err := ParsePrefix(s)
		if err != nil {
			return nil, err
		}
		out = append(out, p)
	}
	return out, nil
}

// Compile validates the configuration and compiles its policy: the one path
// that `serve`, reloads and `config validate` share.
func Compile(c *Config) (*policy.Policy, error) {
	verr := c.Validate()
	pc := c.Policy()
	if c.Servicebus.AllowlistFile != "" {
		names, err := readServicebus(c.Servicebus.AllowlistFile)
		if err != nil {
			verr = errors.Join(verr, fmt.Errorf("servicebus.allowlist_file: %w", err))
		}
		pc.ServicebusNames = names
	}
	p, perr := policy.Compile(pc, nil)
	if err := errors.Join(verr, perr); err != nil {
		return nil, err
	}
	return p, nil
}

package config

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"regexp"
	"strings"
	"time"

	"github.com/rs/zerolog"

	"github.com/arcfence/arcfence/dnsfilter"
	"github.com/arcfence/arcfence/internal/admin"
	"github.com/arcfence/arcfence/internal/servicebus"
	"github.com/arcfence/arcfence/policy"
	"github.com/arcfence/arcfence/proxy"
)

// Runtime is a configuration turned into what runs: typed, defaulted and
// validated once, so the components trust it. It is immutable; a reload
// builds a new one.
type Runtime struct {
	// Config is the configuration as loaded (the keys, for printing).
	Config *Config
	// Profiles is the compiled policy, looked up by client address.
	Profiles *policy.Profiles
	// Proxy is the proxy's settings (Profiles included).
	Proxy proxy.Settings
	// Listen is the proxy listener; TLSListen, TLSCert and TLSKey the
	// optional HTTPS listener ("" = off).
	Listen, TLSListen, TLSCert, TLSKey string
	// ShutdownGrace is how long tunnels may drain at shutdown.
	ShutdownGrace time.Duration
	// DNS is the DNS filter's options without its Policy, Logger, Audit
	// and Metrics (the daemon adds them); DNS.Listen "" = filter off.
	DNS dnsfilter.Options
	// Admin is the admin listener's options without its Metrics, Ready,
	// Learned, Logger and CurrentMode; Admin.Listen "" = off.
	Admin admin.Options
	// Log is the log keys.
	Log LogSettings
	// ServicebusFile and ServicebusRefresh are servicebus.*.
	ServicebusFile    string
	ServicebusRefresh time.Duration
	// ServicebusNames are the names read from ServicebusFile (nil = none).
	ServicebusNames []string
	// Hash identifies what the configuration compiles to: equal hashes,
	// equal Runtimes (the keys as decoded and the servicebus names).
	Hash string
}

// LogSettings are the log keys, parsed.
type LogSettings struct {
	// Level is log.level.
	Level zerolog.Level
	// Console is log.format console (else JSON lines).
	Console bool
	// FoldWindow is log.fold_window: 0 = every refusal logged at once.
	FoldWindow time.Duration
}

// Policy returns the default profile's compiled policy.
func (r *Runtime) Policy() *policy.Policy { return r.Profiles.Default().Policy }

// Mode returns the default profile's mode.
func (r *Runtime) Mode() policy.Mode { return r.Profiles.Default().Mode }

// Compile builds c and returns its default profile's policy (for the
// commands that only decide).
func Compile(c *Config) (*policy.Policy, error) {
	r, err := Build(c)
	if err != nil {
		return nil, err
	}
	return r.Policy(), nil
}

// builder collects the problems of one Build, each naming its key.
type builder struct{ errs []error }

func (b *builder) bad(format string, a ...any) { b.errs = append(b.errs, fmt.Errorf(format, a...)) }

// parse records a key whose value did not parse.
func (b *builder) parse(key string, err error) {
	if err != nil {
		b.bad("%s: %v", key, err)
	}
}

// hostPort checks a listen-style address (host may be empty, an IP,
// localhost or a DNS name; port 0-65535).
func (b *builder) hostPort(key, val string, optional bool) {
	if val == "" {
		if !optional {
			b.bad("%s: required (host:port)", key)
		}
		return
	}
	h, p, err := net.SplitHostPort(val)
	if err != nil {
		b.bad("%s: %q is not host:port (e.g. 127.0.0.1:3128)", key, val)
		return
	}
	if _, err := netip.ParseAddr(h); err != nil && h != "" && h != "localhost" {
		if _, ok := policy.NormalizeHost(h); !ok {
			b.bad("%s: %q: bad host %q", key, val, h)
		}
	}
	if !validPort(p) {
		b.bad("%s: %q: port %q is not a number from 0 to 65535", key, val, p)
	}
}

// prefixes parses a list of CIDRs or bare addresses.
func (b *builder) prefixes(key string, vals []string) []netip.Prefix {
	out := make([]netip.Prefix, 0, len(vals))
	for _, v := range vals {
		p, err := ParsePrefix(v)
		if err != nil {
			b.bad("%s: %v", key, err)
			continue
		}
		out = append(out, p)
	}
	return out
}

// nonNegative reports a negative duration, saying what 0 means.
func (b *builder) nonNegative(key string, d time.Duration, zero string) {
	if d < 0 {
		b.bad("%s: %s is negative; use 0 (%s) or a positive duration such as 10s", key, d, zero)
	}
}

// Build validates c and turns it into a Runtime, compiling the policy.
// Every problem is reported, joined, each naming its key and what is
// allowed.
func Build(c *Config) (*Runtime, error) {
	b := &builder{}
	r := &Runtime{Config: c}
	mode, err := policy.ParseMode(c.Mode)
	b.parse("mode", err)
	b.hostPort("listen", c.Listen, false)
	r.Proxy = b.proxyKeys(c)
	b.nonNegative("servicebus.refresh", c.Servicebus.Refresh, "never")
	if c.Servicebus.Refresh > 0 && c.Servicebus.AllowlistFile == "" {
		b.bad("servicebus.refresh: set without servicebus.allowlist_file (the file the fetched list is written to)")
	}
	b.hostPort("tls.listen", c.TLS.Listen, true)
	if c.TLS.Listen != "" && (c.TLS.Cert == "" || c.TLS.Key == "") {
		b.bad("tls.listen: set without tls.cert and tls.key (arcfence certs init DIR writes a pair)")
	}
	if c.TLS.Listen == "" && (c.TLS.Cert != "" || c.TLS.Key != "") {
		b.bad("tls.cert/tls.key: set without tls.listen")
	}
	r.DNS = b.dnsKeys(c, mode)
	r.Admin = b.adminKeys(c, mode)
	r.Log = b.logKeys(c)
	r.Profiles, r.ServicebusNames = b.policies(c, mode)
	if err := errors.Join(b.errs...); err != nil {
		return nil, err
	}
	r.Proxy.Profiles, r.DNS.Profiles = r.Profiles, r.Profiles
	r.Listen, r.TLSListen, r.TLSCert, r.TLSKey = c.Listen, c.TLS.Listen, c.TLS.Cert, c.TLS.Key
	r.ShutdownGrace = c.Limits.ShutdownGrace
	r.ServicebusFile, r.ServicebusRefresh = c.Servicebus.AllowlistFile, c.Servicebus.Refresh
	r.Hash = hash(c, r.ServicebusNames)
	return r, nil
}

// proxyKeys checks the keys of the proxy and returns its settings (without
// Profiles).
func (b *builder) proxyKeys(c *Config) proxy.Settings {
	sni, err := proxy.ParseSNIMode(c.SNI)
	b.parse("sni", err)
	allowRanges := b.prefixes("allow_ranges", c.AllowRanges)
	b.hostPort("resolver", c.Resolver, true)
	if c.Resolver != "" {
		if _, p, err := net.SplitHostPort(c.Resolver); err == nil && p == "0" {
			b.bad("resolver: %q: port 0; write the DNS server's port, e.g. 127.0.0.1:53", c.Resolver)
		}
	}
	l := c.Limits
	if l.HeaderTimeout <= 0 {
		b.bad("limits.header_timeout: must be positive (e.g. 10s)")
	}
	if l.MaxHeaderBytes < 1024 {
		b.bad("limits.max_header_bytes: %d is too small; at least 1024", l.MaxHeaderBytes)
	}
	if l.DialTimeout <= 0 {
		b.bad("limits.dial_timeout: must be positive (e.g. 10s)")
	}
	if l.MaxTunnels < 0 {
		b.bad("limits.max_tunnels: negative; use 0 for no limit of its own, or a positive number")
	}
	if l.MaxTunnelsPerClient < 0 {
		b.bad("limits.max_tunnels_per_client: negative; use 0 for no limit, or a positive number")
	}
	b.nonNegative("limits.tunnel_idle_timeout", l.TunnelIdleTimeout, "none")
	b.nonNegative("limits.shutdown_grace", l.ShutdownGrace, "close tunnels at once")
	return proxy.Settings{
		SNI:         sni,
		AllowRanges: allowRanges,
		Resolver:    c.Resolver,
		Limits: proxy.Limits{
			HeaderTimeout:       l.HeaderTimeout,
			MaxHeaderBytes:      l.MaxHeaderBytes,
			DialTimeout:         l.DialTimeout,
			MaxTunnels:          l.MaxTunnels,
			MaxTunnelsPerClient: l.MaxTunnelsPerClient,
			TunnelIdleTimeout:   l.TunnelIdleTimeout,
		},
		TunnelsInfo:  c.Log.Tunnels == "info",
		AdmitLearned: c.DNS.AdmitLearnedAddresses,
	}
}

// dnsKeys checks dns.* and returns the DNS filter's options (without
// Policy, Profiles, Logger, Audit and Metrics).
func (b *builder) dnsKeys(c *Config, mode policy.Mode) dnsfilter.Options {
	b.hostPort("dns.listen", c.DNS.Listen, true)
	for _, u := range c.DNS.Upstream {
		if ap, err := netip.ParseAddrPort(u); err != nil || ap.Port() == 0 {
			b.bad("dns.upstream: %q is not IP:port (e.g. 10.0.0.2:53 or [fd00::53]:53); upstreams are addresses so the filter never needs DNS to find DNS", u)
		}
	}
	rcode, err := dnsfilter.ParseDenyRcode(c.DNS.DenyRcode)
	b.parse("dns.deny_rcode", err)
	if c.DNS.CacheSize < 0 {
		b.bad("dns.cache_size: negative; use 0 for no cache")
	}
	switch c.DNS.Profiles {
	case "union", "client":
	default:
		b.bad("dns.profiles: unknown value %q; expected one of union, client", c.DNS.Profiles)
	}
	if c.DNS.AdmitLearnedAddresses && c.DNS.Listen == "" {
		b.bad("dns.admit_learned_addresses: needs the DNS filter on (dns.listen)")
	}
	return dnsfilter.Options{
		Listen:    c.DNS.Listen,
		Upstreams: c.DNS.Upstream,
		DenyRcode: rcode,
		CacheSize: c.DNS.CacheSize,
		Mode:      mode,
		ByClient:  c.DNS.Profiles == "client",
	}
}

// adminKeys checks admin.* and returns the admin listener's options
// (without Metrics, Ready, Learned, Logger and CurrentMode).
func (b *builder) adminKeys(c *Config, mode policy.Mode) admin.Options {
	b.hostPort("admin.listen", c.Admin.Listen, true)
	clients := b.prefixes("admin.clients", c.Admin.Clients)
	for _, h := range c.Admin.Hosts {
		if _, _, ok := admin.ParseHost(h); !ok {
			b.bad("admin.hosts: %q is not a host name or an IP address, optionally with :port (e.g. arcfence.example.com or 10.0.0.5:9090)", h)
		}
	}
	return admin.Options{Listen: c.Admin.Listen, Clients: clients, Hosts: c.Admin.Hosts, Pprof: c.Admin.Pprof, Mode: mode.String()}
}

// logKeys checks log.* and returns them parsed.
func (b *builder) logKeys(c *Config) LogSettings {
	level, err := parseLevel(c.Log.Level)
	b.parse("log.level", err)
	switch c.Log.Format {
	case "json", "console":
	default:
		b.bad("log.format: unknown value %q; expected one of json, console", c.Log.Format)
	}
	switch c.Log.Tunnels {
	case "debug", "info":
	default:
		b.bad("log.tunnels: unknown value %q; expected one of debug, info", c.Log.Tunnels)
	}
	b.nonNegative("log.fold_window", c.Log.FoldWindow, "log every refusal at once")
	return LogSettings{Level: level, Console: c.Log.Format == "console", FoldWindow: c.Log.FoldWindow}
}

// policies compiles the top-level policy (its keys are validated by
// policy.Compile) and every profile's, and returns them with the
// servicebus names read from servicebus.allowlist_file (nil = none).
func (b *builder) policies(c *Config, mode policy.Mode) (*policy.Profiles, []string) {
	clients := b.prefixes("clients", c.Clients)
	if len(c.Clients) == 0 && len(c.Profiles) == 0 {
		b.bad("clients: empty and no profiles: no client could use the proxy; list the CIDRs of the Arc machines (default: loopback and private ranges), or define profiles")
	}
	pc := c.Policy()
	if c.Servicebus.AllowlistFile != "" {
		names, err := servicebus.ReadFile(c.Servicebus.AllowlistFile)
		if err != nil {
			b.bad("servicebus.allowlist_file: %v", err)
		}
		pc.ServicebusNames = names
	}
	if gatewayForProfiles(c) {
		// The top level connects directly but names the gateway its
		// profiles inherit: the endpoint is theirs, not a mistake.
		pc.GatewayEndpoint, pc.GatewayResourceID = "", ""
	}
	pol, err := policy.Compile(pc, nil)
	topErrs := map[string]bool{}
	if err != nil {
		b.errs = append(b.errs, err)
		for _, line := range strings.Split(err.Error(), "\n") {
			topErrs[line] = true
		}
	}
	profiles := b.profiles(c, mode, pc.ServicebusNames, topErrs)
	if len(b.errs) > 0 {
		return nil, nil
	}
	return policy.NewProfiles(&policy.Profile{Name: policy.DefaultProfile, Policy: pol, Mode: mode}, clients, profiles...), pc.ServicebusNames
}

// gatewayForProfiles reports whether the top level, connecting directly,
// sets a gateway that a profile with connection gateway or both inherits.
func gatewayForProfiles(c *Config) bool {
	if c.Gateway == (Gateway{}) || (c.Connection != "" && c.Connection != policy.ConnectionDirect) {
		return false
	}
	for i := range c.Profiles {
		p := &c.Profiles[i]
		if p.Connection != "" && p.Connection != policy.ConnectionDirect && p.Gateway == (Gateway{}) {
			return true
		}
	}
	return false
}

// hash is the first 12 hex digits of the SHA-256 of the configuration's
// JSON encoding and the servicebus names (what a compile reads besides the
// keys).
func hash(c *Config, names []string) string {
	b, err := json.Marshal(struct {
		C *Config  `json:"c"`
		N []string `json:"n"`
	}{c, names})
	if err != nil {
		return "unhashable"
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:6])
}

// profileName is what a profile's name may be.
var profileName = regexp.MustCompile(`^[a-z0-9-]{1,32}$`)

// profiles validates and compiles c.Profiles, in file order. Every problem
// names the profile: profiles[NAME].KEY: ...
// Problems of inherited keys already in topErrs (the top-level compile's)
// are not repeated per profile.
func (b *builder) profiles(c *Config, mode policy.Mode, sbNames []string, topErrs map[string]bool) []policy.ProfileClients {
	out := make([]policy.ProfileClients, 0, len(c.Profiles))
	seen := map[string]bool{}
	for i := range c.Profiles {
		p := &c.Profiles[i]
		id := p.Name
		if id == "" {
			id = fmt.Sprint(i)
		}
		key := "profiles[" + id + "]"
		switch {
		case p.Name == "":
			b.bad("%s.name: required ([a-z0-9-], 1-32 characters)", key)
		case p.Name == policy.DefaultProfile:
			b.bad("%s.name: %q is the top-level keys' profile; choose another name", key, p.Name)
		case !profileName.MatchString(p.Name):
			b.bad("%s.name: %q: use 1-32 of a-z, 0-9 and -", key, p.Name)
		case seen[p.Name]:
			b.bad("%s.name: %q is used by an earlier profile; names are unique", key, p.Name)
		}
		seen[p.Name] = true
		pm := mode
		if p.Mode != "" {
			m, err := policy.ParseMode(p.Mode)
			b.parse(key+".mode", err)
			pm = m
		}
		if len(p.Clients) == 0 {
			b.bad("%s.clients: required: list the CIDRs or addresses of this profile's machines", key)
		}
		cl := b.prefixes(key+".clients", p.Clients)
		pc := c.ProfilePolicy(p)
		pc.ServicebusNames = sbNames
		pol, err := policy.Compile(pc, nil)
		if err != nil {
			for _, line := range strings.Split(err.Error(), "\n") {
				if !topErrs[line] {
					b.bad("%s.%s", key, line)
				}
			}
			continue
		}
		out = append(out, policy.ProfileClients{Profile: &policy.Profile{Name: p.Name, Policy: pol, Mode: pm}, Clients: cl})
	}
	return out
}

// parseLevel parses log.level.
func parseLevel(s string) (zerolog.Level, error) {
	for _, l := range []zerolog.Level{zerolog.TraceLevel, zerolog.DebugLevel, zerolog.InfoLevel, zerolog.WarnLevel, zerolog.ErrorLevel} {
		if s == l.String() {
			return l, nil
		}
	}
	return zerolog.InfoLevel, fmt.Errorf("unknown value %q; expected one of trace, debug, info, warn, error", s)
}

func validPort(p string) bool {
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
	return n <= 65535
}

// ParsePrefix parses a CIDR (masked), or a single address as a /32 or
// /128; IPv4-mapped IPv6 addresses become IPv4.
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

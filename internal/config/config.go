// Package config is the one home of arcfence's configuration: the keys and
// their defaults (Config, Default), the flags that set them (AddFlags),
// reading file + ARCFENCE_* environment + flags through viper (Source.Load),
// and turning the keys into a typed, validated Runtime (Build): the compiled
// policy and each component's settings value. Each key is parsed, defaulted
// and validated here and nowhere else; the packages that run (proxy,
// dnsfilter, admin, audit) take their settings typed and trust them.
//
// A field's `reload` tag says whether a reload applies it: "restart" means
// the key is read only at start-up (RestartKeys names such keys when a
// reload changes them); "restart:KEY" means it is read only at start-up
// when KEY is set in the running configuration. No tag: applied at reload.
package config

import (
	"time"

	"github.com/arcfence/arcfence/dnsfilter"
	"github.com/arcfence/arcfence/policy"
	"github.com/arcfence/arcfence/proxy"
)

// Config is the whole configuration. Field tags are the config keys of the
// design; nested keys are joined with "." in files and "_" in ARCFENCE_*
// environment variables.
type Config struct {
	// Listen is the proxy listener (plain HTTP proxy protocol), host:port.
	Listen string `mapstructure:"listen" yaml:"listen" json:"listen" reload:"restart"`
	// Mode is "enforce" or "learn".
	Mode string `mapstructure:"mode" yaml:"mode" json:"mode"`
	// Regions are Azure region names.
	Regions []string `mapstructure:"regions" yaml:"regions" json:"regions" reload:"restart:servicebus.refresh"`
	// Offerings are the Arc offerings to admit.
	Offerings []string `mapstructure:"offerings" yaml:"offerings" json:"offerings"`
	// Features switch on conditional catalog rows.
	Features []string `mapstructure:"features" yaml:"features" json:"features"`
	// Phase is "onboarding" or "steady".
	Phase string `mapstructure:"phase" yaml:"phase" json:"phase"`
	// Allow are extra allowed entries (see policy.Config.Allow).
	Allow []string `mapstructure:"allow" yaml:"allow" json:"allow"`
	// Deny are refused entries (see policy.Config.Deny).
	Deny []string `mapstructure:"deny" yaml:"deny" json:"deny"`
	// Clients are the CIDRs allowed to use the proxy.
	Clients []string `mapstructure:"clients" yaml:"clients" json:"clients"`
	// AllowRanges are destination CIDRs exempt from the private-address guard.
	AllowRanges []string `mapstructure:"allow_ranges" yaml:"allow_ranges" json:"allow_ranges"`
	// Resolver is host:port of the DNS server for the proxy's own lookups; "" = system.
	Resolver string `mapstructure:"resolver" yaml:"resolver" json:"resolver"`
	// SNI is "enforce", "log" or "off": the ClientHello check on TLS tunnels.
	SNI string `mapstructure:"sni" yaml:"sni" json:"sni"`
	// DataServices holds data_services.*.
	DataServices DataServices `mapstructure:"data_services" yaml:"data_services" json:"data_services"`
	// VMware holds vmware.*.
	VMware VMware `mapstructure:"vmware" yaml:"vmware" json:"vmware"`
	// SCVMM holds scvmm.*.
	SCVMM SCVMM `mapstructure:"scvmm" yaml:"scvmm" json:"scvmm"`
	// Servicebus holds servicebus.*.
	Servicebus Servicebus `mapstructure:"servicebus" yaml:"servicebus" json:"servicebus"`
	// Catalog holds catalog.*: which catalog revision.
	Catalog Catalog `mapstructure:"catalog" yaml:"catalog" json:"catalog"`
	// Cloud is public, usgov or china: whose tables and region names.
	Cloud string `mapstructure:"cloud" yaml:"cloud" json:"cloud"`
	// Connection is direct, gateway or both: whether the Arc agents reach
	// Azure through the Arc gateway (see policy.ConnectionGateway).
	Connection string `mapstructure:"connection" yaml:"connection" json:"connection"`
	// Gateway holds gateway.*: the Arc gateway resource.
	Gateway Gateway `mapstructure:"gateway" yaml:"gateway" json:"gateway"`
	// Limits holds limits.*.
	Limits Limits `mapstructure:"limits" yaml:"limits" json:"limits"`
	// TLS holds tls.*: the optional HTTPS listener of the proxy itself.
	TLS TLS `mapstructure:"tls" yaml:"tls" json:"tls"`
	// DNS holds dns.*: the DNS filter.
	DNS DNS `mapstructure:"dns" yaml:"dns" json:"dns"`
	// Admin holds admin.*: the metrics and health listener.
	Admin Admin `mapstructure:"admin" yaml:"admin" json:"admin"`
	// Log holds log.*.
	Log Log `mapstructure:"log" yaml:"log" json:"log"`
	// Profiles are per-client selections, in file order (the first whose
	// clients contain a source address decides for it).
	Profiles []Profile `mapstructure:"profiles" yaml:"profiles" json:"profiles"`
}

// Profile is one entry of profiles: a group of clients with its own
// selection. Offerings, Features and Allow are the profile's own (not
// inherited); Deny is added to the top-level deny; the other policy keys
// are inherited from the top level when unset (nil list, "" string).
type Profile struct {
	// Name is [a-z0-9-], 1-32 characters, unique, not "default".
	Name string `mapstructure:"name" yaml:"name" json:"name"`
	// Clients are the profile's CIDRs (a bare address is a /32 or /128); required.
	Clients []string `mapstructure:"clients" yaml:"clients" json:"clients"`
	// Mode is "enforce" or "learn"; "" = the top-level mode.
	Mode string `mapstructure:"mode" yaml:"mode,omitempty" json:"mode,omitempty"`
	// Regions replace the top-level regions when set.
	Regions []string `mapstructure:"regions" yaml:"regions,omitempty" json:"regions,omitempty"`
	// Offerings are the profile's offerings (not inherited).
	Offerings []string `mapstructure:"offerings" yaml:"offerings" json:"offerings"`
	// Features are the profile's features (not inherited).
	Features []string `mapstructure:"features" yaml:"features" json:"features"`
	// Phase replaces the top-level phase when set.
	Phase string `mapstructure:"phase" yaml:"phase,omitempty" json:"phase,omitempty"`
	// Allow are the profile's extra entries (not inherited).
	Allow []string `mapstructure:"allow" yaml:"allow" json:"allow"`
	// Deny are refused in this profile in addition to the top-level deny.
	Deny []string `mapstructure:"deny" yaml:"deny" json:"deny"`
	// DataServices replaces data_services when its mode is set.
	DataServices DataServices `mapstructure:"data_services" yaml:"data_services,omitempty" json:"data_services,omitempty"`
	// VMware replaces vmware when its vcenter is set.
	VMware VMware `mapstructure:"vmware" yaml:"vmware,omitempty" json:"vmware,omitempty"`
	// SCVMM replaces scvmm when its server is set.
	SCVMM SCVMM `mapstructure:"scvmm" yaml:"scvmm,omitempty" json:"scvmm,omitempty"`
	// Connection replaces connection when set.
	Connection string `mapstructure:"connection" yaml:"connection,omitempty" json:"connection,omitempty"`
	// Gateway replaces gateway when its endpoint or resource_id is set.
	Gateway Gateway `mapstructure:"gateway" yaml:"gateway,omitempty" json:"gateway,omitempty"`
}

// GlobalOnlyKeys are the top-level keys a profile may not set.
func GlobalOnlyKeys() []string {
	return []string{"listen", "tls", "allow_ranges", "resolver", "sni", "limits", "dns", "admin",
		"log", "servicebus", "catalog", "cloud", "profiles"}
}

// DataServices is data_services.*.
type DataServices struct {
	// Mode is "direct" or "indirect".
	Mode string `mapstructure:"mode" yaml:"mode" json:"mode"`
}

// VMware is vmware.*.
type VMware struct {
	// VCenter is the vCenter server: host, IP, host:port, IP:port or [IPv6]:port.
	VCenter string `mapstructure:"vcenter" yaml:"vcenter" json:"vcenter"`
}

// SCVMM is scvmm.*.
type SCVMM struct {
	// Server is the SCVMM management server, in the same forms as VMware.VCenter.
	Server string `mapstructure:"server" yaml:"server" json:"server"`
}

// Catalog is catalog.*.
type Catalog struct {
	// Revision is the catalog revision (policy.Revisions), e.g. "2026-08".
	Revision string `mapstructure:"revision" yaml:"revision" json:"revision"`
}

// Gateway is gateway.*.
type Gateway struct {
	// Endpoint is the gateway endpoint, <prefix>.gw.arc.azure.com:
	// required with connection gateway or both.
	Endpoint string `mapstructure:"endpoint" yaml:"endpoint" json:"endpoint"`
	// ResourceID is the gateway resource's ARM id, filled into the
	// commands of agent-config.
	ResourceID string `mapstructure:"resource_id" yaml:"resource_id" json:"resource_id"`
}

// Servicebus is servicebus.*.
type Servicebus struct {
	// AllowlistFile is a saved answer of the guestnotificationservice
	// allowlist call; its names replace the wide *.servicebus.windows.net rows.
	AllowlistFile string `mapstructure:"allowlist_file" yaml:"allowlist_file" json:"allowlist_file" reload:"restart"`
	// Refresh is the re-fetch period while serving; 0 = never.
	Refresh time.Duration `mapstructure:"refresh" yaml:"refresh" json:"refresh" reload:"restart"`
}

// Limits is limits.*.
type Limits struct {
	// HeaderTimeout is the time to read a request's headers.
	HeaderTimeout time.Duration `mapstructure:"header_timeout" yaml:"header_timeout" json:"header_timeout" reload:"restart"`
	// MaxHeaderBytes bounds a request's headers.
	MaxHeaderBytes int `mapstructure:"max_header_bytes" yaml:"max_header_bytes" json:"max_header_bytes" reload:"restart"`
	// DialTimeout bounds a dial to an origin.
	DialTimeout time.Duration `mapstructure:"dial_timeout" yaml:"dial_timeout" json:"dial_timeout"`
	// MaxTunnels bounds open tunnels in total; 0 = no limit of its own (the
	// open-files limit still bounds it).
	MaxTunnels int `mapstructure:"max_tunnels" yaml:"max_tunnels" json:"max_tunnels"`
	// MaxTunnelsPerClient bounds open tunnels per client address; 0 = no limit.
	MaxTunnelsPerClient int `mapstructure:"max_tunnels_per_client" yaml:"max_tunnels_per_client" json:"max_tunnels_per_client"`
	// TunnelIdleTimeout closes a tunnel idle that long; 0 = never.
	TunnelIdleTimeout time.Duration `mapstructure:"tunnel_idle_timeout" yaml:"tunnel_idle_timeout" json:"tunnel_idle_timeout"`
	// ShutdownGrace is how long open tunnels may drain at shutdown.
	ShutdownGrace time.Duration `mapstructure:"shutdown_grace" yaml:"shutdown_grace" json:"shutdown_grace"`
}

// TLS is tls.*.
type TLS struct {
	// Listen is the HTTPS proxy listener; "" = off.
	Listen string `mapstructure:"listen" yaml:"listen" json:"listen" reload:"restart"`
	// Cert is the PEM certificate file (chain) of that listener.
	Cert string `mapstructure:"cert" yaml:"cert" json:"cert" reload:"restart"`
	// Key is the PEM private key file of that listener.
	Key string `mapstructure:"key" yaml:"key" json:"key" reload:"restart"`
}

// DNS is dns.*.
type DNS struct {
	// Listen is the DNS filter's UDP and TCP address; "" = filter off.
	Listen string `mapstructure:"listen" yaml:"listen" json:"listen" reload:"restart"`
	// Upstream are host:port resolvers; empty = the system resolvers.
	Upstream []string `mapstructure:"upstream" yaml:"upstream" json:"upstream" reload:"restart"`
	// DenyRcode is "nxdomain" or "refused".
	DenyRcode string `mapstructure:"deny_rcode" yaml:"deny_rcode" json:"deny_rcode"`
	// CacheSize is the number of answers kept; 0 = no cache.
	CacheSize int `mapstructure:"cache_size" yaml:"cache_size" json:"cache_size" reload:"restart"`
	// AdmitLearnedAddresses lets the proxy admit IP-literal CONNECTs to
	// addresses the filter handed out for allowed names.
	AdmitLearnedAddresses bool `mapstructure:"admit_learned_addresses" yaml:"admit_learned_addresses" json:"admit_learned_addresses"`
	// Profiles is "union" (a name any profile admits is answered) or
	// "client" (the query's source picks the profile; a source in no
	// profile is refused).
	Profiles string `mapstructure:"profiles" yaml:"profiles" json:"profiles"`
}

// Admin is admin.*.
type Admin struct {
	// Listen is the admin listener (/metrics /healthz /readyz /learned); "" = off.
	Listen string `mapstructure:"listen" yaml:"listen" json:"listen" reload:"restart"`
	// Pprof serves /debug/pprof on the admin listener.
	Pprof bool `mapstructure:"pprof" yaml:"pprof" json:"pprof" reload:"restart"`
	// Clients are the CIDRs allowed on the admin listener; empty = loopback only.
	Clients []string `mapstructure:"clients" yaml:"clients" json:"clients" reload:"restart"`
	// Hosts are the names and addresses (each optionally with :port) a
	// request's Host may name besides localhost, loopback addresses and the
	// listen address, which are always accepted; others get 421 (DNS
	// rebinding). Empty = only those.
	Hosts []string `mapstructure:"hosts" yaml:"hosts" json:"hosts" reload:"restart"`
}

// Log is log.*.
type Log struct {
	// Level is trace, debug, info, warn or error.
	Level string `mapstructure:"level" yaml:"level" json:"level" reload:"restart"`
	// Format is "json" or "console".
	Format string `mapstructure:"format" yaml:"format" json:"format" reload:"restart"`
	// FoldWindow is the window in which repeated refusals are folded;
	// 0 = every refusal is logged at once.
	FoldWindow time.Duration `mapstructure:"fold_window" yaml:"fold_window" json:"fold_window" reload:"restart"`
	// Tunnels is the level of tunnel close lines: "debug" or "info".
	Tunnels string `mapstructure:"tunnels" yaml:"tunnels" json:"tunnels"`
}

// Default returns the configuration used when nothing is set.
func Default() Config {
	return Config{
		Listen:       "127.0.0.1:3128",
		Mode:         policy.ModeEnforce.String(),
		Regions:      []string{"eastus2"},
		Offerings:    []string{policy.OfferingServers},
		Features:     []string{},
		Phase:        policy.PhaseOnboarding,
		Allow:        []string{},
		Deny:         []string{},
		Clients:      []string{"127.0.0.0/8", "::1/128", "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7"},
		AllowRanges:  []string{},
		SNI:          proxy.SNIEnforce.String(),
		DataServices: DataServices{Mode: policy.DataServicesDirect},
		Catalog:      Catalog{Revision: policy.LatestRevision},
		Cloud:        policy.CloudPublic,
		Connection:   policy.ConnectionDirect,
		Limits: Limits{
			HeaderTimeout:       10 * time.Second,
			MaxHeaderBytes:      32768,
			DialTimeout:         10 * time.Second,
			MaxTunnels:          50000,
			MaxTunnelsPerClient: 5000,
			ShutdownGrace:       30 * time.Second,
		},
		DNS:      DNS{Upstream: []string{}, DenyRcode: dnsfilter.DenyNXDomain.String(), CacheSize: 10000, Profiles: "union"},
		Admin:    Admin{Listen: "127.0.0.1:9090", Clients: []string{}, Hosts: []string{}},
		Log:      Log{Level: "info", Format: "json", FoldWindow: 60 * time.Second, Tunnels: "debug"},
		Profiles: []Profile{},
	}
}

// ProfilePolicy returns the policy part of profile p (Flatten's).
func (c *Config) ProfilePolicy(p *Profile) policy.Config {
	f := c.flatten(p)
	return f.Policy()
}

// Flatten returns the configuration whose top-level keys are the profile
// called name (policy.DefaultProfile: the top-level keys) and that has no
// profiles, and false when there is no such profile.
func (c *Config) Flatten(name string) (Config, bool) {
	if name == policy.DefaultProfile {
		f := *c
		f.Profiles = nil
		return f, true
	}
	for i := range c.Profiles {
		if c.Profiles[i].Name == name {
			return c.flatten(&c.Profiles[i]), true
		}
	}
	return Config{}, false
}

// flatten applies the inheritance of profiles (the one home of it): the
// top-level keys (so every key added there is inherited), with p's own
// selection (offerings, features, allow) and clients, p's deny added to
// the top-level deny, and the inherited keys p sets replaced.
func (c *Config) flatten(p *Profile) Config {
	f := *c
	f.Profiles = nil
	f.Clients = p.Clients
	f.Offerings, f.Features, f.Allow = p.Offerings, p.Features, p.Allow
	f.Deny = append(append([]string{}, c.Deny...), p.Deny...)
	if p.Mode != "" {
		f.Mode = p.Mode
	}
	if p.Regions != nil {
		f.Regions = p.Regions
	}
	if p.Phase != "" {
		f.Phase = p.Phase
	}
	if p.DataServices.Mode != "" {
		f.DataServices = p.DataServices
	}
	if p.VMware.VCenter != "" {
		f.VMware = p.VMware
	}
	if p.SCVMM.Server != "" {
		f.SCVMM = p.SCVMM
	}
	if p.Connection != "" {
		f.Connection = p.Connection
	}
	if p.Gateway != (Gateway{}) {
		f.Gateway = p.Gateway
	}
	return f
}

// PolicyOf returns the policy part of the profile called name
// (policy.DefaultProfile: the top-level keys), and false when there is
// no such profile.
func (c *Config) PolicyOf(name string) (policy.Config, bool) {
	f, ok := c.Flatten(name)
	if !ok {
		return policy.Config{}, false
	}
	return f.Policy(), true
}

// Policy returns the policy part of the configuration.
func (c *Config) Policy() policy.Config {
	return policy.Config{
		Regions:           c.Regions,
		Offerings:         c.Offerings,
		Features:          c.Features,
		Phase:             c.Phase,
		DataServicesMode:  c.DataServices.Mode,
		Allow:             c.Allow,
		Deny:              c.Deny,
		VCenter:           c.VMware.VCenter,
		SCVMMServer:       c.SCVMM.Server,
		Revision:          c.Catalog.Revision,
		Cloud:             c.Cloud,
		Connection:        c.Connection,
		GatewayEndpoint:   c.Gateway.Endpoint,
		GatewayResourceID: c.Gateway.ResourceID,
	}
}

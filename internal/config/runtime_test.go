package config

import (
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/arcfence/arcfence/dnsfilter"
	"github.com/arcfence/arcfence/policy"
	"github.com/arcfence/arcfence/proxy"
)

// TestBuildDefaults: the defaults build, and each key lands typed in the
// settings of the component that reads it.
func TestBuildDefaults(t *testing.T) {
	c := Default()
	r, err := Build(&c)
	if err != nil {
		t.Fatal(err)
	}
	if r.Mode() != policy.ModeEnforce || r.Proxy.SNI != proxy.SNIEnforce || r.DNS.DenyRcode != dnsfilter.DenyNXDomain {
		t.Errorf("modes: %v %v %v", r.Mode(), r.Proxy.SNI, r.DNS.DenyRcode)
	}
	want := proxy.Limits{HeaderTimeout: 10 * time.Second, MaxHeaderBytes: 32768, DialTimeout: 10 * time.Second,
		MaxTunnels: 50000, MaxTunnelsPerClient: 5000}
	if r.Proxy.Limits != want {
		t.Errorf("limits = %+v, want %+v", r.Proxy.Limits, want)
	}
	if r.Log.FoldWindow != time.Minute || r.Log.Level != zerolog.InfoLevel || r.Log.Console {
		t.Errorf("log = %+v", r.Log)
	}
	if r.Proxy.Profiles != r.Profiles || r.Policy() == nil || r.Profiles.Default().Name != policy.DefaultProfile {
		t.Error("the proxy's profiles are not the runtime's")
	}
	for _, a := range []string{"127.0.0.1", "::1", "10.1.2.3", "::ffff:192.168.1.1", "fd00::1"} {
		if _, ok := r.Profiles.For(netip.MustParseAddr(a)); !ok {
			t.Errorf("default clients do not hold %s", a)
		}
	}
	if _, ok := r.Profiles.For(netip.MustParseAddr("198.51.100.1")); ok {
		t.Error("a public address is a client by default")
	}
	if r.Hash == "" || r.Listen != "127.0.0.1:3128" || r.Admin.Listen != "127.0.0.1:9090" || r.DNS.Listen != "" {
		t.Errorf("listeners: %q %q %q hash %q", r.Listen, r.Admin.Listen, r.DNS.Listen, r.Hash)
	}
}

// TestZeroMeans: every key whose 0 has a meaning of its own keeps that
// meaning in the typed settings, mapped here and only here.
func TestZeroMeans(t *testing.T) {
	for _, tc := range []struct {
		name  string
		edit  func(*Config)
		check func(*Runtime) bool
	}{
		{"log.fold_window 0 = every refusal at once", func(c *Config) { c.Log.FoldWindow = 0 },
			func(r *Runtime) bool { return r.Log.FoldWindow == 0 }},
		{"limits.max_tunnels 0 = no limit of its own", func(c *Config) { c.Limits.MaxTunnels = 0 },
			func(r *Runtime) bool { return r.Proxy.Limits.MaxTunnels == 0 }},
		{"limits.max_tunnels_per_client 0 = no limit", func(c *Config) { c.Limits.MaxTunnelsPerClient = 0 },
			func(r *Runtime) bool { return r.Proxy.Limits.MaxTunnelsPerClient == 0 }},
		{"limits.tunnel_idle_timeout 0 = none", func(c *Config) { c.Limits.TunnelIdleTimeout = 0 },
			func(r *Runtime) bool { return r.Proxy.Limits.TunnelIdleTimeout == 0 }},
		{"limits.shutdown_grace 0 = close at once", func(c *Config) { c.Limits.ShutdownGrace = 0 },
			func(r *Runtime) bool { return r.ShutdownGrace == 0 }},
		{"dns.cache_size 0 = no cache", func(c *Config) { c.DNS.CacheSize = 0 },
			func(r *Runtime) bool { return r.DNS.CacheSize == 0 }},
		{"servicebus.refresh 0 = never", func(c *Config) { c.Servicebus.Refresh = 0 },
			func(r *Runtime) bool { return r.ServicebusRefresh == 0 }},
		{"resolver empty = the system's", func(c *Config) { c.Resolver = "" },
			func(r *Runtime) bool { return r.Proxy.Resolver == "" }},
		{"admin.listen empty = off", func(c *Config) { c.Admin.Listen = "" },
			func(r *Runtime) bool { return r.Admin.Listen == "" }},
		{"typed values", func(c *Config) {
			c.Mode, c.SNI, c.DNS.DenyRcode, c.Log.Format, c.Log.Level, c.Log.Tunnels = "learn", "log", "refused", "console", "debug", "info"
			c.AllowRanges = []string{"10.9.0.0/16", "192.0.2.7", "::ffff:10.0.0.1"}
		}, func(r *Runtime) bool {
			return r.Mode() == policy.ModeLearn && r.Proxy.SNI == proxy.SNILog && r.DNS.DenyRcode == dnsfilter.DenyRefused &&
				r.DNS.Mode == policy.ModeLearn && r.Admin.Mode == "learn" && r.Log.Console && r.Log.Level == zerolog.DebugLevel &&
				r.Proxy.TunnelsInfo && slices.Equal(r.Proxy.AllowRanges, []netip.Prefix{netip.MustParsePrefix("10.9.0.0/16"),
				netip.MustParsePrefix("192.0.2.7/32"), netip.MustParsePrefix("10.0.0.1/32")})
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := Default()
			tc.edit(&c)
			r, err := Build(&c)
			if err != nil {
				t.Fatal(err)
			}
			if !tc.check(r) {
				t.Errorf("wrong typed value: %+v", r)
			}
		})
	}
}

// TestBuildErrors: each bad value is an error naming its key and what is
// allowed; several problems are all reported.
func TestBuildErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		edit func(*Config)
		want []string
	}{
		{"mode", func(c *Config) { c.Mode = "audit" }, []string{`mode: unknown value "audit"; expected one of enforce, learn`}},
		{"sni", func(c *Config) { c.SNI = "strict" }, []string{`sni: unknown value "strict"; expected one of enforce, log, off`}},
		{"rcode", func(c *Config) { c.DNS.DenyRcode = "servfail" }, []string{`dns.deny_rcode: unknown value "servfail"`}},
		{"level", func(c *Config) { c.Log.Level = "loud" }, []string{`log.level: unknown value "loud"; expected one of trace, debug, info, warn, error`}},
		{"format", func(c *Config) { c.Log.Format = "xml" }, []string{`log.format: unknown value "xml"`}},
		{"tunnels", func(c *Config) { c.Log.Tunnels = "warn" }, []string{`log.tunnels: unknown value "warn"`}},
		{"fold window", func(c *Config) { c.Log.FoldWindow = -time.Second }, []string{`log.fold_window: -1s is negative`}},
		{"header timeout 0", func(c *Config) { c.Limits.HeaderTimeout = 0 }, []string{`limits.header_timeout: must be positive`}},
		{"dial timeout 0", func(c *Config) { c.Limits.DialTimeout = 0 }, []string{`limits.dial_timeout: must be positive`}},
		{"max tunnels", func(c *Config) { c.Limits.MaxTunnels = -1 }, []string{`limits.max_tunnels: negative`}},
		{"per client", func(c *Config) { c.Limits.MaxTunnelsPerClient = -1 }, []string{`limits.max_tunnels_per_client: negative`}},
		{"idle", func(c *Config) { c.Limits.TunnelIdleTimeout = -1 }, []string{`limits.tunnel_idle_timeout: -1ns is negative`}},
		{"header bytes", func(c *Config) { c.Limits.MaxHeaderBytes = 100 }, []string{`limits.max_header_bytes: 100 is too small`}},
		{"clients empty", func(c *Config) { c.Clients = nil }, []string{`clients: empty`}},
		{"client cidr", func(c *Config) { c.Clients = []string{"10.0.0.0/33"} }, []string{`clients: "10.0.0.0/33" is not a CIDR`}},
		{"admin clients", func(c *Config) { c.Admin.Clients = []string{"nope"} }, []string{`admin.clients: "nope" is not an address or CIDR`}},
		{"resolver", func(c *Config) { c.Resolver = "127.0.0.1" }, []string{`resolver: "127.0.0.1" is not host:port`}},
		{"learned without filter", func(c *Config) { c.DNS.AdmitLearnedAddresses = true }, []string{`dns.admit_learned_addresses: needs the DNS filter on`}},
		{"refresh without file", func(c *Config) { c.Servicebus.Refresh = time.Hour }, []string{`servicebus.refresh: set without servicebus.allowlist_file`}},
		{"policy and settings together", func(c *Config) { c.SNI = "x"; c.Offerings = []string{"server"} },
			[]string{`sni: unknown value "x"`, `unknown offering "server"`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := Default()
			tc.edit(&c)
			_, err := Build(&c)
			if err == nil {
				t.Fatal("built")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
		})
	}
}

// TestHash: the hash follows what the configuration compiles to, and only
// that.
func TestHash(t *testing.T) {
	build := func(edit func(*Config)) string {
		c := Default()
		edit(&c)
		r, err := Build(&c)
		if err != nil {
			t.Fatal(err)
		}
		return r.Hash
	}
	base := build(func(*Config) {})
	if again := build(func(*Config) {}); again != base {
		t.Errorf("same config, hashes %s and %s", base, again)
	}
	if other := build(func(c *Config) { c.Allow = []string{"example.org"} }); other == base {
		t.Error("a changed allow list kept the hash")
	}
	if other := build(func(c *Config) { c.Log.FoldWindow = 0 }); other == base {
		t.Error("a changed fold window kept the hash")
	}
}

// TestLoadFoldWindowZero: `log.fold_window: 0s` in a file reaches the
// runtime as 0 (every refusal at once), not the 60 s default.
func TestLoadFoldWindowZero(t *testing.T) {
	file := filepath.Join(t.TempDir(), "c.yaml")
	if err := os.WriteFile(file, []byte("log: {fold_window: 0s}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	r, err := Source{File: file}.Runtime()
	if err != nil {
		t.Fatal(err)
	}
	if r.Log.FoldWindow != 0 {
		t.Fatalf("fold window %v, want 0", r.Log.FoldWindow)
	}
}

// TestReadmeRestartKeys: the README's list of the keys that need a restart
// is the one the struct tags give.
func TestReadmeRestartKeys(t *testing.T) {
	b, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?s)<!-- restart-keys -->(.*?)<!-- /restart-keys -->`).FindSubmatch(b)
	if m == nil {
		t.Fatal("README has no <!-- restart-keys --> block")
	}
	var want []string
	for _, k := range RestartKeysList() {
		if k.When != "" {
			want = append(want, "`"+k.Key+"` (when `"+k.When+"` is set)")
		} else {
			want = append(want, "`"+k.Key+"`")
		}
	}
	if got := strings.TrimSpace(string(m[1])); got != strings.Join(want, ", ") {
		t.Errorf("README restart keys:\n got: %s\nwant: %s", got, strings.Join(want, ", "))
	}
}

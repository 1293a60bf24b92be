package config

import (
	"slices"
	"testing"
	"time"

	"github.com/arcfence/arcfence/policy"
)

// TestRestartKeys: a reload names every changed setting that is read only at
// start-up (by the fields' reload tags), and nothing that a reload applies.
func TestRestartKeys(t *testing.T) {
	for _, tc := range []struct {
		name string
		edit func(*Config)
		want []string
	}{
		{"nothing changed", func(*Config) {}, nil},
		{"policy, mode and proxy limits apply at reload", func(c *Config) {
			c.Allow = []string{"example.org"}
			c.Mode = policy.ModeLearn.String()
			c.Regions = []string{"westeurope"} // no servicebus refresh running
			c.Clients = []string{"10.0.0.0/8"}
			c.Resolver = "127.0.0.1:53"
			c.Limits.DialTimeout = time.Second
			c.Limits.MaxTunnels = 7
			c.DNS.DenyRcode = "refused"
			c.DNS.AdmitLearnedAddresses = true
			c.Log.Tunnels = "info"
		}, nil},
		{"listen", func(c *Config) { c.Listen = "127.0.0.1:3129" }, []string{"listen"}},
		{"tls paths", func(c *Config) { c.TLS.Cert, c.TLS.Key = "a.pem", "b.pem" }, []string{"tls.cert", "tls.key"}},
		{"header limits", func(c *Config) {
			c.Limits.HeaderTimeout = time.Second
			c.Limits.MaxHeaderBytes = 4096
		}, []string{"limits.header_timeout", "limits.max_header_bytes"}},
		{"dns start-up settings", func(c *Config) {
			c.DNS.Listen = "127.0.0.1:5353"
			c.DNS.Upstream = []string{"127.0.0.1:53"}
			c.DNS.CacheSize = 10
		}, []string{"dns.listen", "dns.upstream", "dns.cache_size"}},
		{"admin", func(c *Config) {
			c.Admin.Listen = ""
			c.Admin.Pprof = true
			c.Admin.Clients = []string{"10.0.0.0/8"}
		}, []string{"admin.listen", "admin.pprof", "admin.clients"}},
		{"log", func(c *Config) {
			c.Log.Level = "debug"
			c.Log.Format = "console"
			c.Log.FoldWindow = time.Second
		}, []string{"log.level", "log.format", "log.fold_window"}},
		{"servicebus", func(c *Config) {
			c.Servicebus.AllowlistFile = "/var/lib/arcfence/sb.json"
			c.Servicebus.Refresh = time.Hour
		}, []string{"servicebus.allowlist_file", "servicebus.refresh"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			old := Default()
			c := Default()
			tc.edit(&c)
			if got := RestartKeys(&old, &c); !slices.Equal(got, tc.want) {
				t.Errorf("RestartKeys = %q, want %q", got, tc.want)
			}
		})
	}
	t.Run("regions while the servicebus refresher runs", func(t *testing.T) {
		old := Default()
		old.Servicebus.AllowlistFile, old.Servicebus.Refresh = "sb.json", time.Hour
		c := old
		c.Regions = []string{"eastus2", "westeurope"}
		if got, want := RestartKeys(&old, &c), []string{"regions (servicebus.refresh)"}; !slices.Equal(got, want) {
			t.Errorf("RestartKeys = %q, want %q", got, want)
		}
	})
}

package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spf13/cobra"

	"github.com/arcfence/arcfence/internal/config"
)

// run executes the arcfence command tree with args and returns stdout and the error.
func run(t *testing.T, args ...string) (string, error) {
	t.Helper()
	cmd := newRootCmd()
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&out)
	cmd.SetArgs(args)
	err := cmd.Execute()
	return out.String(), err
}

// TestExampleConfigsValidate runs `config validate` on every file in configs/:
// each example must pass the start-up load and compile path.
func TestExampleConfigsValidate(t *testing.T) {
	files, err := filepath.Glob("../../configs/*.yaml")
	if err != nil || len(files) < 4 {
		t.Fatalf("expected example configs, got %v (%v)", files, err)
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			out, err := run(t, "config", "validate", "--config", f)
			if err != nil {
				t.Fatalf("config validate %s: %v\n%s", f, err, out)
			}
			if !strings.Contains(out, "effective_rules:") {
				t.Fatalf("no effective config printed:\n%s", out)
			}
		})
	}
}

// TestConfigErrors loads one bad fixture per failure mode and asserts the message.
func TestConfigErrors(t *testing.T) {
	cases := []struct {
		file string
		want string
	}{
		{"unknown-key.yaml", `unknown key "lisen"; did you mean "listen"?`},
		{"unknown-nested-key.yaml", `unknown key "limits.dial_timout"; did you mean "limits.dial_timeout"?`},
		{"unknown-offering.yaml", `unknown offering "server"; expected one of kubernetes, data-services, servers,`},
		{"unknown-region.yaml", `regions: unknown Azure region "eastus22"; did you mean eastus2`},
		{"unknown-feature.yaml", `features: unknown feature "cluster_connect"`},
		{"bad-phase.yaml", `phase: unknown phase "steady-state"; expected onboarding or steady`},
		{"bad-mode.yaml", `mode: unknown value "permissive"; expected one of enforce, learn`},
		{"bad-sni.yaml", `sni: unknown value "strict"; expected one of enforce, log, off`},
		{"duration-no-unit.yaml", `limits.header_timeout duration 10 has no unit; write it with one, e.g. 10s`},
		{"bad-duration.yaml", `"ten seconds" is not a duration`},
		{"bad-int.yaml", `limits.max_tunnels`},
		{"bad-cidr.yaml", `clients: "10.0.0.0/33" is not a CIDR`},
		{"bad-admin-host.yaml", `admin.hosts: "http://arcfence.corp/" is not a host name or an IP address`},
		{"bad-listen.yaml", `listen: "3128" is not host:port`},
		{"vmware-no-vcenter.yaml", `vmware.vcenter: required with offering vmware`},
		{"vcenter-no-vmware.yaml", `vmware.vcenter: set without offering vmware`},
		{"scvmm-no-server.yaml", `scvmm.server: required with offering scvmm`},
		{"deny-path.yaml", `deny: "example.com/x": a deny entry cannot have a path`},
		{"allow-bad-port.yaml", `allow: "example.com:99999": port "99999" is not a number from 1 to 65535`},
		{"allow-scheme.yaml", `allow: "https://example.com": write the host without a scheme`},
		{"bad-rcode.yaml", `dns.deny_rcode: unknown value "servfail"; expected one of nxdomain, refused`},
		{"tls-no-cert.yaml", `tls.listen: set without tls.cert and tls.key`},
		{"no-offerings.yaml", `offerings: none selected and no allow entries`},
		{"bad-data-mode.yaml", `data_services.mode: unknown mode "hybrid"; expected direct or indirect`},
		{"not-yaml.yaml", `config file testdata/config/not-yaml.yaml`},
		{"dns-upstream-name.yaml", `dns.upstream: "dns.corp.example:53" is not IP:port`},
		{"no-clients-no-profiles.yaml", `clients: empty and no profiles`},
		{"bad-dns-profiles.yaml", `dns.profiles: unknown value "per-client"; expected one of union, client`},
		{"profile-no-name.yaml", `profiles[0].name: required`},
		{"profile-bad-name.yaml", `profiles[Appliance_VM].name: "Appliance_VM": use 1-32 of a-z, 0-9 and -`},
		{"profile-default-name.yaml", `profiles[default].name: "default" is the top-level keys' profile`},
		{"profile-dup-name.yaml", `profiles[appliance].name: "appliance" is used by an earlier profile`},
		{"profile-no-clients.yaml", `profiles[appliance].clients: required`},
		{"profile-bad-cidr.yaml", `profiles[appliance].clients: "10.0.5.0/33" is not a CIDR`},
		{"profile-global-key.yaml", `profiles[appliance].limits: global only`},
		{"profile-unknown-key.yaml", `profiles[appliance].oferings: unknown key; did you mean "offerings"?`},
		{"profile-unknown-nested-key.yaml", `profiles[appliance].vmware.vcentre: unknown key; did you mean "vmware.vcenter"?`},
		{"profile-not-mapping.yaml", `profiles[0]: not a mapping`},
		{"profile-unknown-offering.yaml", `profiles[appliance].offerings: unknown offering "server"`},
		{"profile-no-offerings.yaml", `profiles[appliance].offerings: none selected and no allow entries`},
		{"profile-vmware-no-vcenter.yaml", `profiles[appliance].vmware.vcenter: required with offering vmware`},
		{"profile-bad-mode.yaml", `profiles[appliance].mode: unknown value "permissive"`},
		{"profile-bad-region.yaml", `profiles[appliance].regions: unknown Azure region "eastus22"`},
		{"profile-bad-phase.yaml", `profiles[appliance].phase: unknown phase "steady-state"`},
		{"profile-deny-path.yaml", `profiles[appliance].deny: "example.com/x": a deny entry cannot have a path`},
	}
	for _, c := range cases {
		t.Run(c.file, func(t *testing.T) {
			path := filepath.Join("testdata", "config", c.file)
			if _, err := os.Stat(path); err != nil {
				t.Fatalf("fixture missing: %v", err)
			}
			_, err := run(t, "config", "validate", "--config", path)
			if err == nil {
				t.Fatalf("%s: validated, want error containing %q", c.file, c.want)
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Fatalf("%s:\n got: %v\nwant: %s", c.file, err, c.want)
			}
		})
	}
}

// TestMissingConfigFile names the file and the cause.
func TestMissingConfigFile(t *testing.T) {
	_, err := run(t, "config", "validate", "--config", "testdata/config/does-not-exist.yaml")
	if err == nil || !strings.Contains(err.Error(), "does-not-exist.yaml: no such file or directory") {
		t.Fatalf("got %v", err)
	}
}

// TestPrecedence: flags over environment over file over defaults.
func TestPrecedence(t *testing.T) {
	dir := t.TempDir()
	f := filepath.Join(dir, "c.yaml")
	if err := os.WriteFile(f, []byte("regions: [westeurope]\nofferings: [kubernetes]\nlimits: {dial_timeout: 3s}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("ARCFENCE_LIMITS_DIAL_TIMEOUT", "7s")
	t.Setenv("ARCFENCE_FEATURES", "cluster-connect,azure-rbac")
	cmd := newRootCmd()
	cmd.SetArgs([]string{"config", "validate", "--config", f, "--region", "eastus,westus2"})
	var cfg *config.Config
	var lerr error
	cmd.SetOut(&bytes.Buffer{})
	sub, _, _ := cmd.Find([]string{"config", "validate"})
	sub.RunE = func(c *cobra.Command, _ []string) error {
		cfg, lerr = loadConfig(c)
		return lerr
	}
	if err := cmd.Execute(); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(cfg.Regions, ","); got != "eastus,westus2" {
		t.Errorf("regions = %s, want the flag's eastus,westus2", got)
	}
	if got := strings.Join(cfg.Offerings, ","); got != "kubernetes" {
		t.Errorf("offerings = %s, want the file's kubernetes", got)
	}
	if cfg.Limits.DialTimeout.String() != "7s" {
		t.Errorf("dial_timeout = %s, want the environment's 7s", cfg.Limits.DialTimeout)
	}
	if got := strings.Join(cfg.Features, ","); got != "cluster-connect,azure-rbac" {
		t.Errorf("features = %s, want the environment's list", got)
	}
	if cfg.Limits.MaxTunnels != 50000 || cfg.Listen != "127.0.0.1:3128" {
		t.Errorf("defaults lost: %+v", cfg.Limits)
	}
}

// TestExplainDoneWhen is issue 2's acceptance check, on the catalog
// revision it was written for (2024-01).
func TestExplainDoneWhen(t *testing.T) {
	t.Setenv("ARCFENCE_CATALOG_REVISION", "2024-01")
	out, err := run(t, "explain", "--offerings", "servers", "--region", "eastus2",
		"eastus2.dp.kubernetesconfiguration.azure.com:443", "x.his.arc.azure.com:443", "management.azure.com:22",
		"http://microsoft.com/pkiops/certs/x.crt", "http://microsoft.com/other", "management.azure.com", "host:abc")
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	want := []explainLine{
		{Host: "eastus2.dp.kubernetesconfiguration.azure.com", Port: 443, Verdict: "deny", Reason: "not-in-allowlist", Profile: "default"},
		{Host: "x.his.arc.azure.com", Port: 443, Verdict: "allow", Rule: "*.his.arc.azure.com:443", Offering: "servers", Profile: "default"},
		{Host: "management.azure.com", Port: 22, Verdict: "deny", Reason: "port-not-allowed", Profile: "default"},
		{Host: "microsoft.com", Port: 80, Verdict: "deny", Reason: "not-in-allowlist", Profile: "default"},
		{Host: "microsoft.com", Port: 80, Verdict: "deny", Reason: "not-in-allowlist", Profile: "default"},
		{Host: "management.azure.com", Port: 443, Verdict: "allow", Rule: "management.azure.com:443", Offering: "servers", Profile: "default"},
		{Host: "host", Port: 0, Verdict: "deny", Reason: "invalid-port", Profile: "default"},
	}
	if len(lines) != len(want) {
		t.Fatalf("got %d lines:\n%s", len(lines), out)
	}
	for i, l := range lines {
		var got explainLine
		if err := json.Unmarshal([]byte(l), &got); err != nil {
			t.Fatal(err)
		}
		if got != want[i] {
			t.Errorf("line %d:\n got %+v\nwant %+v", i, got, want[i])
		}
	}
	out, err = run(t, "explain", "--offerings", "kubernetes", "--region", "eastus2", "eastus2.dp.kubernetesconfiguration.azure.com:443")
	if err != nil || !strings.Contains(out, `"verdict":"allow"`) || !strings.Contains(out, `"offering":"kubernetes"`) {
		t.Fatalf("kubernetes: %v %s", err, out)
	}
	out, err = run(t, "explain", "--offerings", "servers", "--features", "esu", "http://microsoft.com/pkiops/certs/x.crt", "http://microsoft.com/other")
	if err != nil || !strings.Contains(out, `"rule":"microsoft.com/pkiops/certs:80"`) || !strings.Contains(out, `"reason":"path-not-allowed"`) {
		t.Fatalf("pkiops: %v %s", err, out)
	}
	if _, err := run(t, "explain", "--offerings", "server", "x"); err == nil {
		t.Fatal("explain with an invalid config must fail")
	}
}

// TestServicebusAllowlistFile: the saved allowlist replaces the wide
// *.servicebus.windows.net rows; the azgn* row stays; a bad file is a config error.
func TestServicebusAllowlistFile(t *testing.T) {
	dir := t.TempDir()
	list := filepath.Join(dir, "sb.json")
	if err := os.WriteFile(list, []byte(`["g1-prod-eus2-010-sb.servicebus.windows.net","g2-prod-eus2-011-sb.servicebus.windows.net"]`), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(dir, "c.yaml")
	body := "offerings: [kubernetes, servers]\nfeatures: [cluster-connect]\nservicebus: {allowlist_file: " + list + "}\n"
	if err := os.WriteFile(cfg, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := run(t, "explain", "--config", cfg, "g1-prod-eus2-010-sb.servicebus.windows.net", "other.servicebus.windows.net", "azgn123.servicebus.windows.net")
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 3 || !strings.Contains(lines[0], `"rule":"g1-prod-eus2-010-sb.servicebus.windows.net:443"`) ||
		!strings.Contains(lines[1], `"reason":"not-in-allowlist"`) || !strings.Contains(lines[2], `"rule":"azgn*.servicebus.windows.net:443"`) {
		t.Fatalf("narrowing not applied:\n%s", out)
	}
	if err := os.WriteFile(list, []byte(`[]`), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := run(t, "explain", "--config", cfg, "x.his.arc.azure.com"); err == nil || !strings.Contains(err.Error(), "servicebus.allowlist_file") {
		t.Fatalf("empty allowlist file: got %v", err)
	}
}

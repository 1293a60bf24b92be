package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

const siteProfiles = "../../configs/site-profiles.yaml"

// TestExplainProfiles: --client picks the profile as the proxy would,
// --profile by name; every line names its profile.
func TestExplainProfiles(t *testing.T) {
	cases := []struct {
		args             []string
		dest             string
		verdict, profile string
		reason, offering string
	}{
		{[]string{"--client", "10.0.5.10"}, "mcr.microsoft.com", "allow", "appliance", "", "resource-bridge"},
		{[]string{"--client", "10.0.1.1"}, "mcr.microsoft.com", "deny", "default", "not-in-allowlist", ""},
		{[]string{"--client", "10.0.1.1"}, "gbl.his.arc.azure.com", "allow", "default", "", "servers"},
		{[]string{"--client", "::ffff:10.1.0.7"}, "eastus2.dp.kubernetesconfiguration.azure.com", "allow", "cluster", "", "kubernetes"},
		{[]string{"--client", "192.0.2.1"}, "gbl.his.arc.azure.com", "deny", "", "client-not-allowed", ""},
		{[]string{"--profile", "cluster"}, "mcr.microsoft.com", "allow", "cluster", "", "kubernetes"},
		{nil, "mcr.microsoft.com", "deny", "default", "not-in-allowlist", ""},
	}
	for _, c := range cases {
		args := append([]string{"explain", "--config", siteProfiles}, c.args...)
		out, err := run(t, append(args, c.dest)...)
		if err != nil {
			t.Fatalf("%v: %v\n%s", args, err, out)
		}
		var l explainLine
		if err := json.Unmarshal([]byte(out), &l); err != nil {
			t.Fatalf("%v: %v: %q", args, err, out)
		}
		if l.Verdict != c.verdict || l.Profile != c.profile || l.Reason != c.reason || l.Offering != c.offering {
			t.Errorf("explain %v %s = %+v; want %s profile %q reason %q offering %q", c.args, c.dest, l, c.verdict, c.profile, c.reason, c.offering)
		}
	}
	if out, err := run(t, "explain", "--config", siteProfiles, "--profile", "nosuch", "x.example"); err == nil || !strings.Contains(err.Error(), `unknown profile "nosuch"`) {
		t.Errorf("unknown profile: %v %s", err, out)
	}
	if _, err := run(t, "explain", "--config", siteProfiles, "--profile", "cluster", "--client", "10.0.0.1", "x.example"); err == nil {
		t.Error("--client with --profile: no error")
	}
}

// TestCatalogProfiles: --profile prints one profile's allowlist; squid and
// azure-firewall without it render every profile bound to its clients.
func TestCatalogProfiles(t *testing.T) {
	out, err := run(t, "catalog", "--config", siteProfiles, "--profile", "cluster", "--format", "hosts")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "mcr.microsoft.com\n") || strings.Contains(out, "guestconfiguration") {
		t.Errorf("catalog --profile cluster: want kubernetes rows only:\n%s", out)
	}
	sq, err := run(t, "catalog", "--config", siteProfiles, "--format", "squid")
	if err != nil {
		t.Fatal(err)
	}
	// Every profile's src ACL, then its allow lines and a deny of its
	// clients, in file order, the default last; deny all at the end.
	var order []int
	for _, want := range []string{
		"acl arcfence_appliance_src src 10.0.5.10/32\n", "http_access deny arcfence_appliance_src\n",
		"acl arcfence_management_src src 10.0.9.20/32\n", "http_access deny arcfence_management_src\n",
		"acl arcfence_cluster_src src 10.1.0.0/24\n", "http_access allow arcfence_cluster_src arcfence_CONNECT arcfence_port_443 arcfence_cluster_443_names\n",
		"http_access deny arcfence_cluster_src\n",
		"acl arcfence_default_src src 10.0.0.0/16\n", "http_access deny arcfence_default_src\n",
		"http_access deny all\n",
	} {
		i := strings.Index(sq, want)
		if i < 0 {
			t.Fatalf("squid: no %q in:\n%s", want, sq)
		}
		order = append(order, i)
	}
	for i := 1; i < len(order); i++ {
		if order[i] < order[i-1] {
			t.Errorf("squid: lines out of order at %d", i)
		}
	}
	afw, err := run(t, "catalog", "--config", siteProfiles, "--format", "azure-firewall")
	if err != nil {
		t.Fatal(err)
	}
	var g afwDoc
	if err := json.Unmarshal([]byte(afw), &g); err != nil {
		t.Fatal(err)
	}
	sources := map[string]string{}
	for _, c := range g.Properties.RuleCollections {
		for _, r := range c.Rules {
			sources[r.Name] = strings.Join(r.SourceAddresses, ",")
		}
	}
	for name, want := range map[string]string{
		"arcfence-appliance-https-443": "10.0.5.10/32,10.0.5.11/32",
		"arcfence-cluster-https-443":   "10.1.0.0/24",
		"arcfence-default-https-443":   "10.0.0.0/16",
	} {
		if sources[name] != want {
			t.Errorf("azure-firewall rule %s: sourceAddresses %q, want %q (rules: %v)", name, sources[name], want, sources)
		}
	}
}

// afwDoc is the part of an Azure Firewall rule collection group the tests read.
type afwDoc struct {
	Properties struct {
		RuleCollections []struct {
			Rules []struct {
				Name            string   `json:"name"`
				SourceAddresses []string `json:"sourceAddresses"`
			} `json:"rules"`
		} `json:"ruleCollections"`
	} `json:"properties"`
}

// TestValidateProfiles: config validate prints each profile's effective
// selection.
func TestValidateProfiles(t *testing.T) {
	out, err := run(t, "config", "validate", "--config", siteProfiles)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"effective_profiles:", "  - name: appliance\n    clients:\n      - 10.0.5.10/32", "  - name: cluster\n    clients:\n      - 10.1.0.0/24\n    mode: learn\n    offerings:\n      - kubernetes", "  - name: default\n"} {
		if !strings.Contains(out, want) {
			t.Errorf("validate: no %q in:\n%s", want, out)
		}
	}
}

// TestLearnReportProfiles: learn report groups refusals by profile; its
// yaml, merged into the config by profile name, admits every destination
// for the client that was refused.
func TestLearnReportProfiles(t *testing.T) {
	dir := t.TempDir()
	cfgFile := filepath.Join(dir, "site.yaml")
	base := `regions: [eastus2]
clients: [10.0.0.0/16]
offerings: [servers]
profiles:
  - name: appliance
    clients: [10.0.5.10/32]
    offerings: [resource-bridge]
  - name: cluster
    clients: [10.1.0.0/24]
    offerings: [servers]
    mode: learn
`
	if err := os.WriteFile(cfgFile, []byte(base), 0o600); err != nil {
		t.Fatal(err)
	}
	refused := []struct{ client, profile, dest string }{
		{"10.1.0.5", "cluster", "mcr.microsoft.com:443"},
		{"10.1.0.5", "cluster", "eastus2.dp.kubernetesconfiguration.azure.com:443"},
		{"10.0.5.10", "appliance", "api.example.net:443"},
		{"10.0.1.5", "default", "files.example.org:443"},
	}
	var logs strings.Builder
	for _, r := range refused {
		host, port, _ := strings.Cut(r.dest, ":")
		fmt.Fprintf(&logs, `{"level":"warn","host":%q,"port":%s,"client":%q,"reason":"not-in-allowlist","component":"proxy","mode":"enforce","profile":%q,"msg":"denied"}`+"\n",
			host, port, r.client, r.profile)
	}
	logFile := filepath.Join(dir, "arcfence.log")
	if err := os.WriteFile(logFile, []byte(logs.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, r := range refused {
		if v := explainVerdict(t, cfgFile, r.client, r.dest); v != "deny" {
			t.Fatalf("before: %s from %s is %s", r.dest, r.client, v)
		}
	}
	out, err := run(t, "learn", "report", "--config", cfgFile, "--format", "yaml", logFile)
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	type keys struct {
		Name      string   `yaml:"name"`
		Offerings []string `yaml:"offerings"`
		Features  []string `yaml:"features"`
		Regions   []string `yaml:"regions"`
		Allow     []string `yaml:"allow"`
	}
	var sug struct {
		keys     `yaml:",inline"`
		Profiles []keys `yaml:"profiles"`
	}
	if err := yaml.Unmarshal([]byte(out), &sug); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if len(sug.Profiles) != 2 {
		t.Fatalf("want suggestions for appliance and cluster:\n%s", out)
	}
	// Merge by name.
	var cfg map[string]any
	if err := yaml.Unmarshal([]byte(base), &cfg); err != nil {
		t.Fatal(err)
	}
	apply := func(m map[string]any, k keys) {
		for key, v := range map[string][]string{"offerings": k.Offerings, "features": k.Features, "regions": k.Regions, "allow": k.Allow} {
			if v != nil {
				m[key] = v
			}
		}
	}
	apply(cfg, sug.keys)
	for _, sp := range sug.Profiles {
		found := false
		for _, p := range cfg["profiles"].([]any) {
			if pm := p.(map[string]any); pm["name"] == sp.Name {
				apply(pm, sp)
				found = true
			}
		}
		if !found {
			t.Fatalf("suggestion for unknown profile %q", sp.Name)
		}
	}
	merged, err := yaml.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(cfgFile, merged, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, r := range refused {
		if v := explainVerdict(t, cfgFile, r.client, r.dest); v != "allow" {
			t.Errorf("after merging: %s from %s is %s\n%s", r.dest, r.client, v, merged)
		}
	}
	// The cluster's rows were not widened to the default profile.
	if v := explainVerdict(t, cfgFile, "10.0.1.5", "mcr.microsoft.com:443"); v != "deny" {
		t.Errorf("mcr.microsoft.com from a server: %s, want deny (the suggestion belongs to the cluster profile)", v)
	}
}

// explainVerdict is explain --client's verdict for dest.
func explainVerdict(t *testing.T, cfg, client, dest string) string {
	t.Helper()
	out, err := run(t, "explain", "--config", cfg, "--client", client, dest)
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	var l explainLine
	if err := json.Unmarshal([]byte(out), &l); err != nil {
		t.Fatal(err)
	}
	return l.Verdict
}

// TestProfileFlag: check and agent-config take --profile; an unknown name
// is an error naming the profiles.
func TestProfileFlag(t *testing.T) {
	out, err := run(t, "agent-config", "--config", siteProfiles, "--profile", "cluster", "--proxy-url", "http://127.0.0.1:3128")
	if err != nil || !strings.Contains(out, "az connectedk8s connect") || strings.Contains(out, "azcmagent config set") {
		t.Errorf("agent-config --profile cluster: %v\n%s", err, out)
	}
	out, err = run(t, "agent-config", "--config", siteProfiles, "--proxy-url", "http://127.0.0.1:3128")
	if err != nil || !strings.Contains(out, "azcmagent config set") || strings.Contains(out, "az connectedk8s connect") {
		t.Errorf("agent-config (default profile): %v\n%s", err, out)
	}
	for _, cmd := range [][]string{
		{"check", "--config", siteProfiles, "--profile", "nosuch"},
		{"agent-config", "--config", siteProfiles, "--profile", "nosuch", "--proxy-url", "http://127.0.0.1:3128"},
		{"catalog", "--config", siteProfiles, "--profile", "nosuch"},
	} {
		if _, err := run(t, cmd...); err == nil || !strings.Contains(err.Error(), `unknown profile "nosuch"; the configuration has appliance, management, cluster, default`) {
			t.Errorf("%v: %v", cmd, err)
		}
	}
}

// TestLearnReportSuggestsProfile: in a profile whose clients mostly need
// its own offering, the one client that reaches Kubernetes rows gets a
// profile of its own (its address, offering kubernetes) instead of
// kubernetes for every client of the profile; merged, the suggestion
// admits the cluster node's destinations for it alone.
func TestLearnReportSuggestsProfile(t *testing.T) {
	dir := t.TempDir()
	cfgFile := filepath.Join(dir, "site.yaml")
	base := "regions: [eastus2]\nclients: []\nprofiles:\n  - name: servers\n    clients: [10.2.0.0/24]\n    offerings: [servers]\n"
	if err := os.WriteFile(cfgFile, []byte(base), 0o600); err != nil {
		t.Fatal(err)
	}
	line := func(client, host string) string {
		return fmt.Sprintf(`{"level":"warn","host":%q,"port":443,"client":%q,"reason":"not-in-allowlist","component":"proxy","mode":"enforce","profile":"servers","msg":"denied"}`+"\n", host, client)
	}
	logs := line("10.2.0.9", "mcr.microsoft.com") + line("10.2.0.9", "eastus2.dp.kubernetesconfiguration.azure.com") +
		line("10.2.0.5", "files.example.org") + line("10.2.0.6", "files.example.org")
	logFile := filepath.Join(dir, "arcfence.log")
	if err := os.WriteFile(logFile, []byte(logs), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := run(t, "learn", "report", "--config", cfgFile, "--format", "yaml", logFile)
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	var sug struct {
		Profiles []struct {
			Name      string   `yaml:"name"`
			Clients   []string `yaml:"clients"`
			Offerings []string `yaml:"offerings"`
			Allow     []string `yaml:"allow"`
		} `yaml:"profiles"`
	}
	if err := yaml.Unmarshal([]byte(out), &sug); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	var names []string
	for _, p := range sug.Profiles {
		names = append(names, p.Name)
		if p.Name == "servers" && slices.Contains(p.Offerings, "kubernetes") {
			t.Errorf("the servers profile widened to kubernetes:\n%s", out)
		}
	}
	if len(sug.Profiles) != 2 || sug.Profiles[0].Name != "kubernetes" || sug.Profiles[1].Name != "servers" ||
		!slices.Equal(sug.Profiles[0].Clients, []string{"10.2.0.9/32"}) || !slices.Equal(sug.Profiles[0].Offerings, []string{"kubernetes"}) {
		t.Fatalf("want a kubernetes profile for 10.2.0.9/32, then the servers entry, got %v:\n%s", names, out)
	}
	if !strings.Contains(out, "put it before profile servers") {
		t.Errorf("the new profile does not say where it goes:\n%s", out)
	}
	text, err := run(t, "learn", "report", "--config", cfgFile, logFile)
	if err != nil || !strings.Contains(text, `suggested profile "kubernetes"`) || !strings.Contains(text, "new profile kubernetes: clients [10.2.0.9/32]") {
		t.Fatalf("text report does not say why: %v\n%s", err, text)
	}
	// Merge: the new entry before servers, the servers entry's allow
	// merged by name.
	merged := "regions: [eastus2]\nclients: []\nprofiles:\n" +
		"  - name: kubernetes\n    clients: [10.2.0.9/32]\n    offerings: [kubernetes]\n" +
		"  - name: servers\n    clients: [10.2.0.0/24]\n    offerings: [servers]\n" +
		"    allow: [" + strings.Join(sug.Profiles[1].Allow, ", ") + "]\n"
	if err := os.WriteFile(cfgFile, []byte(merged), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ client, dest, want string }{
		{"10.2.0.9", "mcr.microsoft.com:443", "allow"},
		{"10.2.0.9", "eastus2.dp.kubernetesconfiguration.azure.com:443", "allow"},
		{"10.2.0.5", "mcr.microsoft.com:443", "deny"},
		{"10.2.0.5", "files.example.org:443", "allow"},
	} {
		if v := explainVerdict(t, cfgFile, c.client, c.dest); v != c.want {
			t.Errorf("after the merge: %s from %s is %s, want %s", c.dest, c.client, v, c.want)
		}
	}
}

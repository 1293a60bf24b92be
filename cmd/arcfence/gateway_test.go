package main

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/arcfence/arcfence/internal/check"
	"github.com/arcfence/arcfence/internal/config"
)

// TestGatewayCommands: with configs/servers-gateway.yaml switched to
// connection gateway, explain admits the gateway endpoint and refuses a
// replaced direct row, every catalog format carries the endpoint, check
// targets it, and config validate names what stays direct.
func TestGatewayCommands(t *testing.T) {
	const cfgFile = "../../configs/servers-gateway.yaml"
	gw := []string{"--config", cfgFile, "--connection", "gateway"}
	out, err := run(t, append([]string{"explain"}, append(gw, "contoso.gw.arc.azure.com", "a1.guestnotificationservice.azure.com")...)...)
	if err != nil {
		t.Fatalf("explain: %v\n%s", err, out)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 2 {
		t.Fatalf("explain printed %d lines:\n%s", len(lines), out)
	}
	want := []map[string]any{
		{"verdict": "allow", "rule": "contoso.gw.arc.azure.com:443", "offering": "servers", "reason": ""},
		{"verdict": "deny", "rule": "", "offering": "", "reason": "not-in-allowlist"},
	}
	for i, ln := range lines {
		var got map[string]any
		if err := json.Unmarshal([]byte(ln), &got); err != nil {
			t.Fatal(err)
		}
		for k, v := range want[i] {
			if got[k] != v {
				t.Errorf("explain line %d: %s = %v, want %v", i, k, got[k], v)
			}
		}
	}
	formats := map[string]string{
		"table":          "contoso.gw.arc.azure.com",
		"json":           `"pattern": "contoso.gw.arc.azure.com"`,
		"hosts":          "contoso.gw.arc.azure.com\n",
		"squid":          "contoso.gw.arc.azure.com",
		"azure-firewall": `"contoso.gw.arc.azure.com"`,
		"pac":            `"contoso.gw.arc.azure.com": true`,
	}
	for f, w := range formats {
		out, err := run(t, append([]string{"catalog", "--format", f}, gw...)...)
		if err != nil || !strings.Contains(out, w) {
			t.Errorf("catalog --format %s: %v, lacks %q:\n%.600s", f, err, w, out)
		}
		if strings.Contains(out, "guestnotificationservice") {
			t.Errorf("catalog --format %s lists a replaced direct row", f)
		}
	}
	cfg, err := config.Source{File: cfgFile}.Load()
	if err != nil {
		t.Fatal(err)
	}
	cfg.Connection = "gateway"
	p, err := config.Compile(cfg)
	if err != nil {
		t.Fatal(err)
	}
	targets, _, err := check.Targets(p.Rules(), nil)
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, tg := range targets {
		found = found || tg.Host == "contoso.gw.arc.azure.com" && tg.Port == 443 && tg.Scheme == "https"
	}
	if !found {
		t.Errorf("check targets lack the gateway endpoint: %+v", targets)
	}
	out, err = run(t, "config", "validate", "--config", cfgFile, "--connection", "gateway", "--features", "windows-admin-center")
	if err != nil || !strings.Contains(out, "effective_connection: gateway") || !strings.Contains(out, "stays_direct:\n  - feature windows-admin-center") {
		t.Errorf("config validate: %v\n%s", err, out)
	}
	if _, err := run(t, "config", "validate", "--config", cfgFile, "--gateway-endpoint", "a.b.gw.arc.azure.com"); err == nil ||
		!strings.Contains(err.Error(), "gateway.endpoint: ") {
		t.Errorf("--gateway-endpoint with two labels: %v", err)
	}
}

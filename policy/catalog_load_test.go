package policy_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/arcfence/arcfence/policy"
)

// TestParseCatalogErrors feeds ParseCatalog (the loader of the embedded
// catalog) one bad catalog per failure under testdata/catalog.
func TestParseCatalogErrors(t *testing.T) {
	tests := map[string]string{
		"duplicate-pattern":      "duplicate pattern",
		"empty-pattern":          "empty pattern",
		"bad-pattern":            "only one * is allowed",
		"no-ports":               "no ports",
		"port-out-of-range":      "port 70000 out of range",
		"bad-scheme":             `scheme "ftp"; expected https, http or udp`,
		"path-without-slash":     `path "pkiops" must start with /`,
		"no-sources":             "no sources",
		"source-without-section": "a source without section",
		"unknown-offering":       `unknown offering "server"`,
		"unknown-feature":        `unknown feature "telepathy"`,
		"unknown-when":           `unknown when "sometimes"`,
		"unknown-private-link":   `unknown private_link "maybe"`,
		"unknown-field":          "prots",
	}
	files, err := filepath.Glob(filepath.Join("testdata", "catalog", "*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no fixtures: %v", err)
	}
	seen := map[string]bool{}
	for _, f := range files {
		name := strings.TrimSuffix(filepath.Base(f), ".yaml")
		seen[name] = true
		t.Run(name, func(t *testing.T) {
			data, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			cat, err := policy.ParseCatalog(data)
			if strings.HasPrefix(name, "ok-") {
				if err != nil {
					t.Fatalf("valid catalog: %v", err)
				}
				if len(cat.Entries) == 0 {
					t.Fatal("no entries")
				}
				return
			}
			want, ok := tests[name]
			if !ok {
				t.Fatalf("fixture %s has no expected message", f)
			}
			if err == nil {
				t.Fatalf("parsed without error; want %q", want)
			}
			if !strings.Contains(err.Error(), want) {
				t.Errorf("error %q\ndoes not contain %q", err, want)
			}
		})
	}
	for name := range tests {
		if !seen[name] {
			t.Errorf("table case %q has no fixture", name)
		}
	}
}

// TestCompileWithCatalog: Compile uses the catalog it is given.
func TestCompileWithCatalog(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("testdata", "catalog", "ok-tiny.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	cat, err := policy.ParseCatalog(data)
	if err != nil {
		t.Fatal(err)
	}
	p, err := compilePinned(policy.Config{Regions: []string{"eastus2"}, Offerings: []string{"servers", "kubernetes"}, Features: []string{"portal"}}, cat)
	if err != nil {
		t.Fatal(err)
	}
	runDecide(t, p, []decideCase{
		{"regional row", dest("eastus2.tiny.example.com", 8443), allowRule("eastus2.tiny.example.com:8443", "servers", "")},
		{"featured row", dest("a.wild.example.com", 443), allowRule("*.wild.example.com:443", "kubernetes", "portal")},
		{"not in this catalog", dest("management.azure.com", 443), denied(policy.NotInAllowlist)},
	})
	if n := len(p.Rules()); n != 2 {
		t.Errorf("%d rules, want 2", n)
	}
}

// TestAllRules checks Catalog.AllRules (`arcfence catalog --all`): every
// entry, <region> filled per region or kept when none is given.
func TestAllRules(t *testing.T) {
	cat := embedded(t)
	regional := 0
	for _, e := range cat.Entries {
		if strings.Contains(e.Pattern, "<region>") {
			regional++
		}
	}
	none := cat.AllRules(nil)
	if len(none) != len(cat.Entries) {
		t.Errorf("AllRules(nil): %d rules, want %d", len(none), len(cat.Entries))
	}
	two := cat.AllRules([]string{"eastus2", "West Europe"})
	if want := len(cat.Entries) + regional; len(two) != want {
		t.Errorf("AllRules(2 regions): %d rules, want %d", len(two), want)
	}
	var names []string
	for _, r := range two {
		if strings.Contains(r.Pattern, "<region>") {
			t.Errorf("placeholder left: %q", r.Pattern)
		}
		names = append(names, r.Pattern)
	}
	for _, want := range []string{"eastus2.obo.arc.azure.com", "westeurope.obo.arc.azure.com", "san-af-westeurope-prod.azurewebsites.net"} {
		found := false
		for _, n := range names {
			found = found || n == want
		}
		if !found {
			t.Errorf("AllRules lacks %q", want)
		}
	}
	for _, r := range none {
		if r.Pattern == "*.his.arc.azure.com" && r.Offering != "kubernetes,servers,esu,resource-bridge" {
			t.Errorf("*.his.arc.azure.com offerings %q", r.Offering)
		}
		if r.Pattern == "*.servicebus.windows.net" && r.Feature != "cluster-connect,custom-locations,ssh,windows-admin-center" {
			t.Errorf("*.servicebus.windows.net features %q", r.Feature)
		}
	}
}

package policy_test

import (
	"slices"
	"strings"
	"testing"

	"github.com/arcfence/arcfence/policy"
)

// TestDiff checks the rows the 2024-01 -> 2026-08 diff must report, with
// what it must say about them, and that filters narrow it.
func TestDiff(t *testing.T) {
	cat, err := parsedCatalog()
	if err != nil {
		t.Fatal(err)
	}
	all, err := cat.Diff("2024-01", "2026-08", policy.DiffFilter{})
	if err != nil {
		t.Fatal(err)
	}
	find := func(rows []policy.DiffRow, change, offering, cloud, pattern string) *policy.DiffRow {
		for i := range rows {
			r := &rows[i]
			if r.Change == change && r.Offering == offering && r.Cloud == cloud && r.Pattern == pattern {
				return r
			}
		}
		return nil
	}
	tests := []struct {
		change, offering, cloud, pattern string
		changes                          []string // for changed rows
	}{
		{policy.DiffChanged, "esu", "public", "www.microsoft.com/pkiops/certs", []string{"pattern microsoft.com/pkiops/certs -> www.microsoft.com/pkiops/certs"}},
		{policy.DiffChanged, "servers", "public", "www.microsoft.com/pkiops/certs", []string{"pattern microsoft.com/pkiops/certs -> www.microsoft.com/pkiops/certs"}},
		{policy.DiffAdded, "servers", "public", "*.login.microsoft.com", nil},
		{policy.DiffAdded, "servers", "public", "dls.microsoft.com", nil},
		{policy.DiffRemoved, "servers", "public", "login.windows.net", nil},
		{policy.DiffRemoved, "servers", "public", "*.blob.core.windows.net", nil},
		{policy.DiffRemoved, "esu", "public", "aka.ms", nil},
		{policy.DiffRemoved, "kubernetes", "public", "k8connecthelm.azureedge.net", nil},
		{policy.DiffAdded, "kubernetes", "public", "linuxgeneva-microsoft.azurecr.io", nil},
		{policy.DiffChanged, "kubernetes", "public", "dl.k8s.io", []string{"feature auto-upgrade -> -", "when conditional -> install"}},
		{policy.DiffChanged, "kubernetes", "public", "<region>.obo.arc.azure.com", []string{"feature cluster-connect -> cluster-connect+azure-rbac"}},
		{policy.DiffChanged, "sql-server", "public", "*.<region>.arcdataservices.com", []string{"pattern san-af-<region>-prod.azurewebsites.net -> *.<region>.arcdataservices.com"}},
		{policy.DiffRemoved, "resource-bridge", "public", "msk8s.b.tlu.dl.delivery.mp.microsoft.com", nil},
		{policy.DiffAdded, "resource-bridge", "public", "time.windows.com", nil},
		{policy.DiffAdded, "servers", "usgov", "*.his.arc.azure.us", nil},
		{policy.DiffAdded, "kubernetes", "china", "mcr.azk8s.cn", nil},
	}
	for _, tc := range tests {
		r := find(all, tc.change, tc.offering, tc.cloud, tc.pattern)
		if r == nil {
			t.Errorf("no %s row for %s %s %s", tc.change, tc.offering, tc.cloud, tc.pattern)
			continue
		}
		if tc.changes != nil && !slices.Equal(r.Changes, tc.changes) {
			t.Errorf("%s %s: changes %q, want %q", tc.offering, tc.pattern, r.Changes, tc.changes)
		}
		if (r.From == nil) != (tc.change == policy.DiffAdded) || (r.To == nil) != (tc.change == policy.DiffRemoved) {
			t.Errorf("%s %s: from %v to %v for a %s row", tc.offering, tc.pattern, r.From, r.To, tc.change)
		}
	}
	// rows both revisions list unchanged are not reported
	for _, p := range []string{"management.azure.com", "*.his.arc.azure.com", "pas.windows.net"} {
		if r := find(all, policy.DiffChanged, "servers", "public", p); r != nil {
			t.Errorf("unchanged %s reported: %+v", p, r)
		}
		if r := find(all, policy.DiffAdded, "servers", "public", p); r != nil {
			t.Errorf("unchanged %s reported as added", p)
		}
	}
	same, err := cat.Diff("2026-08", "2026-08", policy.DiffFilter{})
	if err != nil || len(same) != 0 {
		t.Errorf("a revision against itself: %d rows, %v", len(same), err)
	}
	back, err := cat.Diff("2026-08", "2024-01", policy.DiffFilter{Cloud: "public"})
	if err != nil || find(back, policy.DiffAdded, "servers", "public", "login.windows.net") == nil {
		t.Errorf("the reverse diff does not add back login.windows.net for servers: %v", err)
	}
}

// TestDiffFilter: --offerings, --features and --cloud narrow the rows.
func TestDiffFilter(t *testing.T) {
	cat, err := parsedCatalog()
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		f    policy.DiffFilter
		ok   func(policy.DiffRow) bool
	}{
		{"offerings", policy.DiffFilter{Offerings: []string{"esu", "app-services"}}, func(r policy.DiffRow) bool {
			return r.Offering == "esu" || r.Offering == "kubernetes"
		}},
		{"cloud", policy.DiffFilter{Cloud: "usgov"}, func(r policy.DiffRow) bool { return r.Cloud == "usgov" }},
		{"features", policy.DiffFilter{Features: []string{"ssh"}}, func(r policy.DiffRow) bool {
			return r.Feature == "" || strings.Contains(r.Feature, "ssh")
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rows, err := cat.Diff("2024-01", "2026-08", tc.f)
			if err != nil {
				t.Fatal(err)
			}
			if len(rows) == 0 {
				t.Fatal("no rows")
			}
			for _, r := range rows {
				if !tc.ok(r) {
					t.Errorf("row outside the filter: %+v", r)
				}
			}
		})
	}
	errs := []struct {
		from, to string
		f        policy.DiffFilter
		want     string
	}{
		{"2023-01", "2026-08", policy.DiffFilter{}, `--from: unknown revision "2023-01"; expected one of 2024-01, 2026-08`},
		{"2024-01", "next", policy.DiffFilter{}, `--to: unknown revision "next"`},
		{"2024-01", "2026-08", policy.DiffFilter{Offerings: []string{"server"}}, `--offerings: unknown offering "server"`},
		{"2024-01", "2026-08", policy.DiffFilter{Features: []string{"nope"}}, `--features: unknown feature "nope"`},
		{"2024-01", "2026-08", policy.DiffFilter{Cloud: "mars"}, `--cloud: unknown cloud "mars"; expected one of public, usgov, china`},
	}
	for _, tc := range errs {
		if _, err := cat.Diff(tc.from, tc.to, tc.f); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Diff(%s, %s, %+v) error %v, want %q", tc.from, tc.to, tc.f, err, tc.want)
		}
	}
}

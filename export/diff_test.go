package export

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"github.com/arcfence/arcfence/policy"
)

// TestDiffGolden: `arcfence catalog diff --from 2024-01 --to 2026-08`
// output, table and JSON, against golden files (go test ./export -update
// rewrites them).
func TestDiffGolden(t *testing.T) {
	cat, err := policy.EmbeddedCatalog()
	if err != nil {
		t.Fatal(err)
	}
	rows, err := cat.Diff("2024-01", "2026-08", policy.DiffFilter{})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ format, file string }{
		{FormatTable, "diff-2024-01-2026-08.txt"},
		{FormatJSON, "diff-2024-01-2026-08.json"},
	} {
		var buf bytes.Buffer
		if err := WriteDiff(&buf, tc.format, "2024-01", "2026-08", rows); err != nil {
			t.Fatal(err)
		}
		golden(t, tc.file, buf.Bytes())
	}
	var buf bytes.Buffer
	if err := WriteDiff(&buf, FormatJSON, "2024-01", "2026-08", rows); err != nil {
		t.Fatal(err)
	}
	var doc struct {
		From, To string
		Rows     []policy.DiffRow
	}
	if err := json.Unmarshal(buf.Bytes(), &doc); err != nil || doc.From != "2024-01" || len(doc.Rows) != len(rows) {
		t.Errorf("JSON round trip: %v, from %q, %d rows of %d", err, doc.From, len(doc.Rows), len(rows))
	}
	if err := WriteDiff(&buf, "squid", "2024-01", "2026-08", rows); err == nil || !strings.Contains(err.Error(), "expected table or json") {
		t.Errorf("unknown format: %v", err)
	}
}

// TestProxyFormatsLeaveOutUDPRows: time.windows.com:123 (a UDP row) is in
// the allowlist views but not in the Squid, Azure Firewall or PAC output.
func TestProxyFormatsLeaveOutUDPRows(t *testing.T) {
	rules := append(fixtureRules(), policy.Rule{Pattern: "time.windows.com", Ports: []int{123}, Scheme: "udp",
		Offering: "resource-bridge", Feature: "windows-ntp", When: "conditional", Source: policy.SourceCatalog})
	for _, f := range Formats() {
		var buf bytes.Buffer
		if err := Write(&buf, f, rules); err != nil {
			t.Fatal(err)
		}
		proxyFormat := f == FormatSquid || f == FormatAzureFirewall || f == FormatPAC
		if got := strings.Contains(buf.String(), "time.windows.com"); got == proxyFormat {
			t.Errorf("%s: time.windows.com present = %v", f, got)
		}
	}
}

package policy_test

import (
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/arcfence/arcfence/policy"
)

// TestParseDeny: the deny parser that Compile and the exports share.
func TestParseDeny(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []policy.DenyEntry
		err  string
	}{
		{"Login.Windows.NET", []policy.DenyEntry{{Entry: "Login.Windows.NET", Host: "login.windows.net"}}, ""},
		{"*.his.arc.azure.com:443", []policy.DenyEntry{{Entry: "*.his.arc.azure.com:443", Host: "*.his.arc.azure.com", Port: 443}}, ""},
		{"<region>.obo.arc.azure.com:8084", []policy.DenyEntry{
			{Entry: "eastus2.obo.arc.azure.com:8084", Host: "eastus2.obo.arc.azure.com", Port: 8084},
			{Entry: "westeurope.obo.arc.azure.com:8084", Host: "westeurope.obo.arc.azure.com", Port: 8084}}, ""},
		{"::ffff:10.1.2.3", []policy.DenyEntry{{Entry: "::ffff:10.1.2.3", Addr: netip.MustParseAddr("10.1.2.3")}}, ""},
		{"[fd00::1]:443", []policy.DenyEntry{{Entry: "[fd00::1]:443", Addr: netip.MustParseAddr("fd00::1"), Port: 443}}, ""},
		{"::%\n0", nil, "zone"},
		{"fe80::1%eth0", nil, "zone"},
		{"example.org/path", nil, "cannot have a path"},
		{"example.org:http", nil, "port"},
	} {
		got, err := policy.ParseDeny(tc.in, []string{"eastus2", "westeurope"})
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("ParseDeny(%q) error %v, want one containing %q", tc.in, err, tc.err)
			}
			continue
		}
		if err != nil || !slices.Equal(got, tc.want) {
			t.Errorf("ParseDeny(%q) = %+v, %v; want %+v", tc.in, got, err, tc.want)
		}
	}
	if _, err := policy.ParseDeny("<region>.obo.arc.azure.com", nil); err == nil {
		t.Error("<region> without regions parsed")
	}
}

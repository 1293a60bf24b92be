package export

import (
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/arcfence/arcfence/policy"
)

// FuzzSquidRegex: the regular expression a wildcard row becomes in the
// Squid fragment (and the PAC file) matches exactly the names that
// arcfence's own pattern semantics (policy.MatchPattern) match.
func FuzzSquidRegex(f *testing.F) {
	for _, s := range [][2]string{
		{"*.his.arc.azure.com", "eastus2.his.arc.azure.com"},
		{"*.his.arc.azure.com", "his.arc.azure.com"},
		{"*.his.arc.azure.com", "badhis.arc.azure.com"},
		{"azgn*.servicebus.windows.net", "azgnx.servicebus.windows.net"},
		{"azgn*.servicebus.windows.net", "azgn.servicebus.windows.net"},
		{"azgn*.servicebus.windows.net", "a.azgnx.servicebus.windows.net"},
		{"*.blob.core.windows.net", "A.B.BLOB.core.windows.net."},
	} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, pat, host string) {
		p := parsePattern(pat)
		if p.kind != kindSubdomains && p.kind != kindFirstGlob {
			return
		}
		// only patterns arcfence itself accepts: the probe must be a valid name
		probe := p.host
		if _, ok := policy.NormalizeHost(probe); !ok || (p.kind == kindFirstGlob && !validPrefix(p.prefix)) || numericTLD(probe) {
			return
		}
		h, ok := policy.NormalizeHost(host)
		if !ok {
			return
		}
		re, err := regexp.Compile("(?i)" + squidRegex(p))
		if err != nil {
			t.Fatalf("pattern %q: regex %q: %v", pat, squidRegex(p), err)
		}
		want := policy.MatchPattern(pat, h)
		if got := re.MatchString(h); got != want {
			t.Fatalf("pattern %q, host %q: regex %q says %v, MatchPattern says %v", pat, h, squidRegex(p), got, want)
		}
	})
}

func validPrefix(s string) bool {
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}

// numericTLD: a name whose last label is all digits reads as an address;
// arcfence compiles no pattern ending so (and matches no name so).
func numericTLD(s string) bool {
	last := s[strings.LastIndexByte(s, '.')+1:]
	for _, c := range last {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// FuzzWriteDeny: any deny entry either is refused with an error or renders
// into every format without panicking.
func FuzzWriteDeny(f *testing.F) {
	for _, s := range denyOpts.Deny {
		f.Add(s)
	}
	f.Add("[::1]:80")
	f.Add("*.x:443")
	f.Fuzz(func(t *testing.T, entry string) {
		opts := Options{Deny: []string{entry}, Regions: []string{"eastus2"}}
		for _, format := range Formats() {
			var b strings.Builder
			err := WriteWith(&b, format, fixtureRules(), opts)
			if err != nil && !strings.Contains(err.Error(), "deny entry") {
				t.Fatalf("%s: deny %q: %v", format, entry, err)
			}
			if err != nil || format != FormatSquid {
				continue
			}
			// nothing from an entry may start a directive of its own
			for _, line := range strings.Split(b.String(), "\n") {
				f := strings.Fields(line)
				if len(f) == 0 || strings.HasPrefix(f[0], "#") {
					continue
				}
				switch f[0] {
				case "acl", "http_access", "http_upgrade_request_protocols":
				default:
					t.Fatalf("deny %q: squid line %q", entry, line)
				}
				if f[0] == "http_access" && f[1] == "allow" && slices.Contains(f, "all") {
					t.Fatalf("deny %q: squid line %q", entry, line)
				}
			}
		}
	})
}

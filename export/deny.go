package export

import (
	"fmt"
	"strings"

	"github.com/arcfence/arcfence/policy"
)

// denyEntry is one parsed deny entry of the configuration.
type denyEntry struct {
	pat     pattern
	port    int // 0 = every port
	written string
}

// parseDenies parses the config's deny entries with policy.ParseDeny (the
// parser Compile uses, so an export refuses exactly what the policy
// refuses) and expands <region> with regions. Blank entries are skipped;
// an entry that does not parse is an error naming it.
func parseDenies(entries, regions []string) ([]denyEntry, error) {
	var out []denyEntry
	for _, w := range entries {
		w = strings.TrimSpace(w)
		if w == "" {
			continue
		}
		parsed, err := policy.ParseDeny(w, regions)
		if err != nil {
			return nil, fmt.Errorf("deny entry: %v", err)
		}
		for _, de := range parsed {
			d := denyEntry{port: de.Port, written: w}
			if de.Addr.IsValid() {
				d.pat = pattern{kind: kindAddress, host: de.Addr.String(), addr: de.Addr}
			} else {
				d.pat = parsePattern(de.Host)
			}
			out = append(out, d)
		}
	}
	return out, nil
}

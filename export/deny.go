package export

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// denyEntry is one parsed deny entry of the configuration.
type denyEntry struct {
	pat     pattern
	port    int // 0 = every port
	written string
}

// parseDenies expands <region> in the config's deny entries and parses them
// ("host", "host:port", "IP", "IP:port", "[IPv6]:port"; host may be a
// pattern). An entry that does not parse is an error naming it.
func parseDenies(entries, regions []string) ([]denyEntry, error) {
	var out []denyEntry
	for _, w := range entries {
		w = strings.TrimSpace(w)
		if w == "" {
			continue
		}
		expanded := []string{w}
		if strings.Contains(w, "<region>") {
			expanded = expanded[:0]
			for _, r := range regions {
				expanded = append(expanded, strings.ReplaceAll(w, "<region>", r))
			}
		}
		for _, e := range expanded {
			d, err := parseDeny(e)
			if err != nil {
				return nil, err
			}
			d.written = w
			out = append(out, d)
		}
	}
	return out, nil
}

func parseDeny(s string) (denyEntry, error) {
	if a, err := netip.ParseAddr(s); err == nil {
		if a.Zone() != "" {
			return denyEntry{}, errZone(s)
		}
		return denyEntry{pat: pattern{kind: kindAddress, host: a.String(), addr: a}}, nil
	}
	host, port := s, 0
	if strings.HasPrefix(s, "[") {
		end := strings.IndexByte(s, ']')
		if end < 0 {
			return denyEntry{}, fmt.Errorf("deny entry %q: missing ]", s)
		}
		host = s[1:end]
		if rest := s[end+1:]; rest != "" {
			p, err := strconv.Atoi(strings.TrimPrefix(rest, ":"))
			if err != nil || !strings.HasPrefix(rest, ":") || p < 1 || p > 65535 {
				return denyEntry{}, fmt.Errorf("deny entry %q: bad port", s)
			}
			port = p
		}
	} else if i := strings.LastIndexByte(s, ':'); i >= 0 {
		p, err := strconv.Atoi(s[i+1:])
		if err != nil || p < 1 || p > 65535 {
			return denyEntry{}, fmt.Errorf("deny entry %q: bad port", s)
		}
		host, port = s[:i], p
	}
	if a, err := netip.ParseAddr(host); err == nil {
		if a.Zone() != "" {
			return denyEntry{}, errZone(s)
		}
		return denyEntry{pat: pattern{kind: kindAddress, host: a.String(), addr: a}, port: port}, nil
	}
	if host == "" || strings.Trim(strings.ToLower(host), "abcdefghijklmnopqrstuvwxyz0123456789.-*") != "" {
		return denyEntry{}, fmt.Errorf("deny entry %q: expected host, host:port, IP or IP:port", s)
	}
	return denyEntry{pat: parsePattern(host), port: port}, nil
}

// errZone refuses an IPv6 address with a zone, as the policy does: a zone
// names a local interface, not a destination, and it may hold any byte
// (a newline would start a directive of its own in Squid's file).
func errZone(s string) error {
	return fmt.Errorf("deny entry %q: an address with a zone cannot be matched", s)
}

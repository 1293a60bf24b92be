package policy

import (
	"net/netip"
	"strconv"
	"strings"
)

// maxName is the longest DNS name in presentation form, without the trailing dot.
const maxName = 253

// NormalizeHost returns the canonical form of a host as the proxy and the DNS
// filter both see it: ASCII lower case, one trailing dot dropped, IPv6
// brackets removed. ok is false when the result is neither a valid DNS name
// (letters, digits and hyphens; labels of 1 to 63 bytes not starting or
// ending with a hyphen; at most 253 bytes; IDNs only as punycode) nor an IP
// literal. It allocates only when the input is not already canonical.
// NormalizeHost is idempotent: NormalizeHost(NormalizeHost(s)) == NormalizeHost(s).
func NormalizeHost(s string) (host string, ok bool) {
	host, ok, _ = normalize(s)
	return host, ok
}

// Character classes of host names.
const (
	cInvalid = iota
	cLower
	cUpper
	cDigit
	cHyphen
	cDot
	cColon
)

// hostClass classifies every byte in one table lookup.
var hostClass = func() (t [256]uint8) {
	for c := 'a'; c <= 'z'; c++ {
		t[c] = cLower
	}
	for c := 'A'; c <= 'Z'; c++ {
		t[c] = cUpper
	}
	for c := '0'; c <= '9'; c++ {
		t[c] = cDigit
	}
	t['-'], t['.'], t[':'] = cHyphen, cDot, cColon
	return t
}()

// normalize is NormalizeHost in one pass over the name; ipForm reports an
// IP literal or an IPv4 form (a last label that is a number: 2130706433,
// 0x7f.1, 127.1), which only address entries may match.
func normalize(s string) (host string, ok, ipForm bool) {
	if len(s) > 1 && s[0] == '[' && s[len(s)-1] == ']' {
		h, ok := normalizeIPv6(s[1 : len(s)-1])
		if !ok {
			return s, false, false
		}
		return h, true, true
	}
	if n := len(s); n > 0 && s[n-1] == '.' {
		s = s[:n-1]
	}
	n := len(s)
	if n == 0 {
		return s, false, false
	}
	if n > maxName {
		// too long for a name; an IPv6 literal with a long zone is still
		// an address (refused by Decide as zoned), as it is in brackets
		if strings.IndexByte(s, ':') >= 0 {
			h, ok := normalizeIPv6(s)
			return h, ok, ok
		}
		return s, false, false
	}
	upper := false
	label, start := 0, 0
	for i := 0; i < n; i++ {
		switch hostClass[s[i]] {
		case cLower, cDigit:
		case cUpper:
			upper = true
		case cHyphen:
			if label == 0 {
				return s, false, false
			}
		case cDot:
			if label == 0 || s[i-1] == '-' {
				return s, false, false
			}
			label, start = 0, i+1
			continue
		case cColon:
			h, ok := normalizeIPv6(s)
			return h, ok, ok
		default:
			return s, false, false
		}
		label++
		if label > 63 {
			return s, false, false
		}
	}
	if label == 0 || s[n-1] == '-' {
		return s, false, false
	}
	last := s[start:]
	ipForm = len(last) > 2 && last[0] == '0' && (last[1] == 'x' || last[1] == 'X')
	if !ipForm {
		ipForm = true
		for i := 0; i < len(last); i++ {
			if hostClass[last[i]] != cDigit {
				ipForm = false
				break
			}
		}
	}
	if upper {
		return strings.ToLower(s), true, ipForm
	}
	return s, true, ipForm
}

// normalizeIPv6 returns the canonical text of an IPv6 literal (zone
// lower-cased); ok is false for anything else.
func normalizeIPv6(s string) (string, bool) {
	a, err := netip.ParseAddr(s)
	if err != nil || !a.Is6() || !validZone(a.Zone()) {
		return s, false
	}
	return lower(a.String()), true
}

// validZone reports whether an IPv6 zone is empty or an interface-like
// name (letters, digits, '-' and '_'): anything else is refused outright.
func validZone(z string) bool {
	for i := 0; i < len(z); i++ {
		c := z[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// lower returns s in ASCII lower case, allocating only when s has upper case.
func lower(s string) string {
	for i := 0; i < len(s); i++ {
		if c := s[i]; 'A' <= c && c <= 'Z' {
			return strings.ToLower(s)
		}
	}
	return s
}

// validName reports whether s (no trailing dot) is a valid DNS host name.
func validName(s string) bool {
	if len(s) == 0 || len(s) > maxName {
		return false
	}
	label := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '.':
			if label == 0 || s[i-1] == '-' {
				return false
			}
			label = 0
			continue
		case c == '-':
			if label == 0 {
				return false
			}
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		default:
			return false
		}
		label++
		if label > 63 {
			return false
		}
	}
	return label > 0 && s[len(s)-1] != '-'
}

// numericTail reports whether the last label of a valid name looks like an
// IPv4 number (all digits, or 0x hex): such names (2130706433, 0x7f.1,
// 127.1) are IPv4 forms that some resolvers and URL parsers turn into
// addresses, so the policy treats them as IP literals, never as names.
func numericTail(s string) bool {
	i := strings.LastIndexByte(s, '.')
	last := s[i+1:]
	if len(last) > 2 && last[0] == '0' && (last[1] == 'x' || last[1] == 'X') {
		return true
	}
	for j := 0; j < len(last); j++ {
		if last[j] < '0' || last[j] > '9' {
			return false
		}
	}
	return true
}

// SplitHostPort splits a CONNECT authority ("host:port" or "[IPv6]:port")
// into its host (not yet normalized) and port. r is InvalidPort when the
// port is missing, zero, not a decimal number or out of range, and
// InvalidHost when the host part is empty or malformed.
func SplitHostPort(authority string) (host string, port int, r Reason) {
	if authority == "" {
		return "", 0, InvalidHost
	}
	var ps string
	if authority[0] == '[' {
		end := strings.IndexByte(authority, ']')
		if end < 0 {
			return authority, 0, InvalidHost
		}
		host = authority[:end+1]
		rest := authority[end+1:]
		if rest == "" {
			return host, 0, portOrHostReason(host)
		}
		if rest[0] != ':' {
			return authority, 0, InvalidHost
		}
		ps = rest[1:]
	} else {
		i := strings.LastIndexByte(authority, ':')
		if i < 0 {
			return authority, 0, portOrHostReason(authority)
		}
		host, ps = authority[:i], authority[i+1:]
		if strings.IndexByte(host, ':') >= 0 {
			// an unbracketed IPv6 literal: its port is ambiguous
			return authority, 0, InvalidHost
		}
	}
	if host == "" || host == "[]" {
		return host, 0, InvalidHost
	}
	port, ok := parsePort(ps)
	if !ok {
		return host, 0, portOrHostReason(host)
	}
	return host, port, ReasonNone
}

// portOrHostReason returns InvalidHost when host is invalid too (the host
// is checked first), InvalidPort otherwise.
func portOrHostReason(host string) Reason {
	if _, ok := NormalizeHost(host); !ok {
		return InvalidHost
	}
	return InvalidPort
}

// parsePort parses a decimal port in 1..65535 (no sign, no spaces, at most 5 digits).
func parsePort(s string) (int, bool) {
	if len(s) == 0 || len(s) > 5 {
		return 0, false
	}
	n := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int(c-'0')
	}
	if n < 1 || n > 65535 {
		return 0, false
	}
	return n, true
}

// FormatHostPort joins a normalized host and a port, bracketing IPv6.
func FormatHostPort(host string, port int) string {
	if strings.IndexByte(host, ':') >= 0 {
		return "[" + host + "]:" + strconv.Itoa(port)
	}
	return host + ":" + strconv.Itoa(port)
}

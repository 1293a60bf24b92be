package policy

import (
	"fmt"
	"strings"
)

// patternKind is how a host pattern matches.
type patternKind uint8

const (
	// kindExact matches exactly one name.
	kindExact patternKind = iota
	// kindGlob is a first-label glob "prefix*.rest": the first label is
	// prefix followed by one or more characters, the rest matches exactly.
	kindGlob
	// kindSuffix is "*.zone": one or more labels before zone.
	kindSuffix
)

// hostPattern is a compiled host pattern.
type hostPattern struct {
	kind patternKind
	// key is the exact name (kindExact), the zone (kindSuffix) or the part
	// after the first label (kindGlob).
	key string
	// prefix is the first label's fixed prefix (kindGlob only).
	prefix string
}

// compileHostPattern parses a host pattern as written in the catalog or a
// config entry: case-insensitive, one trailing dot ignored, "https://" and a
// trailing "/" stripped.
func compileHostPattern(p string) (hostPattern, error) {
	orig := p
	p = strings.TrimPrefix(strings.TrimPrefix(p, "https://"), "http://")
	p = strings.TrimSuffix(p, "/")
	p = strings.TrimSuffix(p, ".")
	p = strings.ToLower(p)
	star := strings.IndexByte(p, '*')
	if star < 0 {
		if !validName(p) {
			return hostPattern{}, fmt.Errorf("invalid host %q: expected a DNS name such as example.com", orig)
		}
		if numericTail(p) {
			return hostPattern{}, fmt.Errorf("invalid host %q: it is an IPv4 form, not a name", orig)
		}
		return hostPattern{kind: kindExact, key: p}, nil
	}
	if strings.Count(p, "*") > 1 {
		return hostPattern{}, fmt.Errorf("invalid pattern %q: only one * is allowed", orig)
	}
	dot := strings.IndexByte(p, '.')
	if dot < 0 || star > dot {
		return hostPattern{}, fmt.Errorf("invalid pattern %q: * may only stand in the first label (*.example.com or prefix*.example.com)", orig)
	}
	rest := p[dot+1:]
	if !validName(rest) {
		return hostPattern{}, fmt.Errorf("invalid pattern %q: %q is not a DNS name", orig, rest)
	}
	if numericTail(rest) {
		return hostPattern{}, fmt.Errorf("invalid pattern %q: the names under it end in a number, which is an IPv4 form, not a name", orig)
	}
	first := p[:dot]
	if first == "*" {
		return hostPattern{kind: kindSuffix, key: rest}, nil
	}
	if star != len(first)-1 {
		return hostPattern{}, fmt.Errorf("invalid pattern %q: a glob must end its label (prefix*.example.com)", orig)
	}
	prefix := first[:star]
	if !validName(prefix) {
		return hostPattern{}, fmt.Errorf("invalid pattern %q: bad label prefix %q", orig, prefix)
	}
	return hostPattern{kind: kindGlob, key: rest, prefix: prefix}, nil
}

// String returns the pattern in canonical form.
func (hp hostPattern) String() string {
	switch hp.kind {
	case kindSuffix:
		return "*." + hp.key
	case kindGlob:
		return hp.prefix + "*." + hp.key
	}
	return hp.key
}

// match reports whether the normalized name host matches.
func (hp hostPattern) match(host string) bool {
	switch hp.kind {
	case kindExact:
		return host == hp.key
	case kindSuffix:
		return len(host) > len(hp.key)+1 && host[len(host)-len(hp.key)-1] == '.' && strings.HasSuffix(host, hp.key)
	case kindGlob:
		dot := strings.IndexByte(host, '.')
		if dot < 0 || host[dot+1:] != hp.key {
			return false
		}
		return globLabel(host[:dot], hp.prefix)
	}
	return false
}

// globLabel reports whether a first label matches prefix followed by one or more characters.
func globLabel(label, prefix string) bool {
	return len(label) > len(prefix) && strings.HasPrefix(label, prefix)
}

// MatchPattern reports whether host matches pattern with the design's
// semantics: exact names, "*.zone" (one or more labels, never the apex),
// and first-label globs "prefix*.zone". Both are normalized first; an
// invalid pattern or host, or an IP literal, never matches.
func MatchPattern(pattern, host string) bool {
	hp, err := compileHostPattern(pattern)
	if err != nil {
		return false
	}
	h, ok := NormalizeHost(host)
	if !ok || isIPForm(h) {
		return false
	}
	return hp.match(h)
}

// isIPForm reports whether a normalized host is an IP literal or an IPv4 form.
func isIPForm(h string) bool {
	return strings.IndexByte(h, ':') >= 0 || numericTail(h)
}

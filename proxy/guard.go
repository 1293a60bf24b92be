package proxy

import (
	"net/netip"
)

// addrClass classifies a destination address for the address guard.
type addrClass uint8

const (
	// classPublic: a globally routable address.
	classPublic addrClass = iota
	// classPrivate: RFC 1918, CGNAT (RFC 6598), ULA (RFC 4193), site-local.
	// User-named destinations and private-link rows may use these.
	classPrivate
	// classSpecial: loopback, link-local (the metadata address
	// 169.254.169.254 included), unspecified, "this network", multicast,
	// broadcast, reserved, documentation and benchmarking ranges. Only
	// allow_ranges admits these.
	classSpecial
)

var (
	privatePrefixes = []netip.Prefix{
		netip.MustParsePrefix("10.0.0.0/8"),
		netip.MustParsePrefix("172.16.0.0/12"),
		netip.MustParsePrefix("192.168.0.0/16"),
		netip.MustParsePrefix("100.64.0.0/10"),  // CGNAT, RFC 6598
		netip.MustParsePrefix("fc00::/7"),       // ULA, RFC 4193
		netip.MustParsePrefix("fec0::/10"),      // site-local, deprecated (RFC 3879)
		netip.MustParsePrefix("64:ff9b:1::/48"), // local-use NAT64, RFC 8215
	}
	specialPrefixes = []netip.Prefix{
		netip.MustParsePrefix("0.0.0.0/8"),       // this network
		netip.MustParsePrefix("127.0.0.0/8"),     // loopback
		netip.MustParsePrefix("169.254.0.0/16"),  // link-local, metadata 169.254.169.254
		netip.MustParsePrefix("192.0.0.0/24"),    // IETF protocol assignments
		netip.MustParsePrefix("192.0.2.0/24"),    // TEST-NET-1
		netip.MustParsePrefix("198.18.0.0/15"),   // benchmarking
		netip.MustParsePrefix("198.51.100.0/24"), // TEST-NET-2
		netip.MustParsePrefix("203.0.113.0/24"),  // TEST-NET-3
		netip.MustParsePrefix("224.0.0.0/4"),     // multicast
		netip.MustParsePrefix("240.0.0.0/4"),     // reserved, broadcast
		netip.MustParsePrefix("::/128"),          // unspecified
		netip.MustParsePrefix("::1/128"),         // loopback
		netip.MustParsePrefix("fe80::/10"),       // link-local
		netip.MustParsePrefix("ff00::/8"),        // multicast
		netip.MustParsePrefix("2001:db8::/32"),   // documentation
		netip.MustParsePrefix("100::/64"),        // discard-only
	}
	nat64      = netip.MustParsePrefix("64:ff9b::/96")    // RFC 6052 well-known prefix
	sixToFour  = netip.MustParsePrefix("2002::/16")       // RFC 3056
	teredo     = netip.MustParsePrefix("2001::/32")       // RFC 4380
	v4compat   = netip.MustParsePrefix("::/96")           // deprecated IPv4-compatible
	v4translat = netip.MustParsePrefix("::ffff:0:0:0/96") // SIIT, RFC 2765
)

// classify returns the guard class of a. IPv6 forms that embed an IPv4
// address (mapped, compatible, NAT64, 6to4, Teredo) take the most
// restrictive class of the IPv6 address itself and the embedded address.
func classify(a netip.Addr) addrClass {
	a = a.WithZone("")
	if a.Is4In6() {
		a = a.Unmap()
	}
	c := classifyPlain(a)
	if !a.Is6() || c == classSpecial {
		return c
	}
	b := a.As16()
	var emb [2]netip.Addr
	n := 0
	switch {
	case nat64.Contains(a), v4compat.Contains(a), v4translat.Contains(a):
		emb[0], n = netip.AddrFrom4([4]byte{b[12], b[13], b[14], b[15]}), 1
	case sixToFour.Contains(a):
		emb[0], n = netip.AddrFrom4([4]byte{b[2], b[3], b[4], b[5]}), 1
	case teredo.Contains(a):
		emb[0] = netip.AddrFrom4([4]byte{b[4], b[5], b[6], b[7]})         // server
		emb[1] = netip.AddrFrom4([4]byte{^b[12], ^b[13], ^b[14], ^b[15]}) // client, obfuscated
		n = 2
	}
	for _, e := range emb[:n] {
		if ec := classifyPlain(e); ec > c {
			c = ec
		}
	}
	return c
}

func classifyPlain(a netip.Addr) addrClass {
	for _, p := range specialPrefixes {
		if p.Contains(a) {
			return classSpecial
		}
	}
	for _, p := range privatePrefixes {
		if p.Contains(a) {
			return classPrivate
		}
	}
	return classPublic
}

// addrAllowed reports whether the guard lets a dial go to a: public
// addresses always, private ones when privateOK, and anything inside one of
// allowRanges.
func addrAllowed(a netip.Addr, privateOK bool, allowRanges []netip.Prefix) bool {
	switch classify(a) {
	case classPublic:
		return true
	case classPrivate:
		if privateOK {
			return true
		}
	}
	u := a.Unmap().WithZone("")
	for _, p := range allowRanges {
		if p.Contains(u) {
			return true
		}
	}
	return false
}

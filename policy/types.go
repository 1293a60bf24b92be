// Package policy holds the Azure Arc endpoint catalog and compiles a
// configuration into an immutable Policy whose Decide method says whether a
// destination may be reached, and why not.
//
// The package does no I/O and no logging and keeps no mutable package state:
// a *Policy is safe for concurrent use by any number of goroutines.
package policy

import "net/netip"

// Verdict is the outcome of a decision.
type Verdict uint8

// Verdicts.
const (
	// Deny refuses the destination; Decision.Reason says why.
	Deny Verdict = iota
	// Allow admits the destination; Decision.Rule names the row that admitted it.
	Allow
)

// String returns "allow" or "deny".
func (v Verdict) String() string {
	if v == Allow {
		return "allow"
	}
	return "deny"
}

// Reason is the machine-readable cause of a refusal. Its String form is the
// value of the X-Arcfence-Reason header and of the "reason" log field.
type Reason uint8

// Reasons, in the order Decide checks the policy ones.
const (
	// ReasonNone is the reason of an allowed destination.
	ReasonNone Reason = iota
	// InvalidHost: the name is not a valid DNS name (nor an IP literal).
	InvalidHost
	// InvalidPort: the port is missing, zero, not a number or out of range.
	InvalidPort
	// ExplicitDeny: a deny entry of the configuration matches.
	ExplicitDeny
	// IPLiteral: the destination is an IP address that no address entry names.
	IPLiteral
	// NotInAllowlist: no row matches the name.
	NotInAllowlist
	// PortNotAllowed: a row matches the name, none on this port.
	PortNotAllowed
	// PathNotAllowed: the row restricts paths and the request's path (or a
	// tunnel on port 80, which would carry plain HTTP past the check) is outside them.
	PathNotAllowed
	// PrivateAddress: the name resolved to an address the guard refuses (proxy).
	PrivateAddress
	// SNIMismatch: the TLS ClientHello names another host than the CONNECT target (proxy).
	SNIMismatch
	// NotTLS: the first bytes of a tunnel to a TLS catalog row are not a TLS handshake (proxy).
	NotTLS
	// ClientNotAllowed: the client address is outside the configured clients (proxy).
	ClientNotAllowed
	// LimitExceeded: a tunnel limit was hit (proxy).
	LimitExceeded
	numReasons
)

var reasonNames = [numReasons]string{
	ReasonNone:       "",
	InvalidHost:      "invalid-host",
	InvalidPort:      "invalid-port",
	ExplicitDeny:     "explicit-deny",
	IPLiteral:        "ip-literal",
	NotInAllowlist:   "not-in-allowlist",
	PortNotAllowed:   "port-not-allowed",
	PathNotAllowed:   "path-not-allowed",
	PrivateAddress:   "private-address",
	SNIMismatch:      "sni-mismatch",
	NotTLS:           "not-tls",
	ClientNotAllowed: "client-not-allowed",
	LimitExceeded:    "limit-exceeded",
}

// String returns the reason code as the design names it ("" for ReasonNone).
func (r Reason) String() string {
	if r < numReasons {
		return reasonNames[r]
	}
	return "unknown"
}

// ParseReason returns the Reason whose String is s.
func ParseReason(s string) (Reason, bool) {
	for i, n := range reasonNames {
		if n == s && i != 0 {
			return Reason(i), true
		}
	}
	return ReasonNone, false
}

// Reasons returns every refusal reason, in check order.
func Reasons() []Reason {
	out := make([]Reason, 0, numReasons-1)
	for r := InvalidHost; r < numReasons; r++ {
		out = append(out, r)
	}
	return out
}

// Learnable reports whether learn mode admits a destination refused for r:
// the allowlist's own reasons (not-in-allowlist, port-not-allowed,
// path-not-allowed, ip-literal, sni-mismatch, not-tls). explicit-deny and
// every safety guard stay enforced in learn mode.
func (r Reason) Learnable() bool {
	switch r {
	case NotInAllowlist, PortNotAllowed, PathNotAllowed, IPLiteral, SNIMismatch, NotTLS:
		return true
	}
	return false
}

// Source says which kind of entry admitted (or refused) a destination.
type Source uint8

// Sources.
const (
	// SourceNone: no entry matched.
	SourceNone Source = iota
	// SourceCatalog: a row of the Arc catalog.
	SourceCatalog
	// SourceAllow: an entry of the configuration's allow list.
	SourceAllow
	// SourceVCenter: the configured vmware.vcenter.
	SourceVCenter
	// SourceSCVMM: the configured scvmm.server.
	SourceSCVMM
	// SourceDeny: an entry of the configuration's deny list.
	SourceDeny
)

// String returns the source's name ("catalog", "allow", "vcenter", "scvmm", "deny" or "").
func (s Source) String() string {
	switch s {
	case SourceCatalog:
		return "catalog"
	case SourceAllow:
		return "allow"
	case SourceVCenter:
		return "vcenter"
	case SourceSCVMM:
		return "scvmm"
	case SourceDeny:
		return "deny"
	}
	return ""
}

// UserNamed reports whether the entry was named by the user (allow,
// vCenter, SCVMM): such destinations may resolve to private addresses.
func (s Source) UserNamed() bool {
	return s == SourceAllow || s == SourceVCenter || s == SourceSCVMM
}

// Dest is a destination to decide on.
type Dest struct {
	// Host is the name or IP literal as received (any case, optional
	// trailing dot, IPv6 without brackets). Decide normalizes it.
	Host string
	// Port is the destination port; 0 means missing (invalid-port), as does
	// anything outside 1..65535.
	Port int
	// Path is the URL path of a plain-HTTP request ("" for tunnels).
	Path string
	// Plain is true for a plain-HTTP (absolute-form) request, whose path the
	// policy can check, and false for a CONNECT tunnel.
	Plain bool
}

// Decision is the outcome of Decide. All strings are shared, precomputed
// values: building a Decision does not allocate.
type Decision struct {
	// Verdict is Allow or Deny.
	Verdict Verdict
	// Reason is why a Deny was given (ReasonNone for Allow).
	Reason Reason
	// Rule names the row that decided: for catalog rows the pattern as the
	// spec writes it (path included, region filled) then ":port"; for user
	// entries the entry as written, with ":port" added when it names none.
	// Empty for refusals other than explicit-deny.
	Rule string
	// Offering is the selected offering that brought the row in (canonical
	// name; "" for user entries).
	Offering string
	// Feature is the feature that switched the row on ("" when always needed).
	Feature string
	// Host is the normalized host (lower case, no trailing dot); for an
	// invalid host it is the input as received.
	Host string
	// Port is the port decided on.
	Port int
	// Source is the kind of entry that decided.
	Source Source
	// TLSOnly is true when the admitting row is a catalog row served over
	// TLS on this port: a tunnel's first bytes must be a TLS ClientHello.
	TLSOnly bool
	// PrivateOK is true when the destination may resolve to private
	// (RFC 1918, ULA, CGNAT) addresses: user-named entries and catalog rows
	// marked Private when private link is on. Loopback, link-local,
	// unspecified, multicast and metadata addresses still need allow_ranges.
	PrivateOK bool
	// Addr is the parsed address when Host is an IP literal (zero otherwise).
	Addr netip.Addr
}

// Allowed reports whether the verdict is Allow.
func (d Decision) Allowed() bool { return d.Verdict == Allow }

package proxy

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"

	"github.com/arcfence/arcfence/policy"
)

const (
	// keepAliveIdle closes client keep-alive connections (plain HTTP) idle this long.
	keepAliveIdle = 2 * time.Minute
	// retryAfter is the Retry-After value, in seconds, of 429 answers.
	retryAfter = "5"
)

// SNIMode is what the ClientHello check of TLS tunnels does (the sni key).
type SNIMode uint8

// SNI check modes.
const (
	// SNIEnforce closes tunnels whose ClientHello names another host. The zero value.
	SNIEnforce SNIMode = iota
	// SNILog logs a mismatch and lets the tunnel proceed.
	SNILog
	// SNIOff does not inspect the first bytes.
	SNIOff
)

// String returns the mode as the configuration spells it.
func (m SNIMode) String() string {
	switch m {
	case SNILog:
		return "log"
	case SNIOff:
		return "off"
	}
	return "enforce"
}

// ParseSNIMode parses the configuration's spelling of an SNI mode.
func ParseSNIMode(s string) (SNIMode, error) {
	for _, m := range []SNIMode{SNIEnforce, SNILog, SNIOff} {
		if s == m.String() {
			return m, nil
		}
	}
	return SNIEnforce, fmt.Errorf("unknown value %q; expected one of enforce, log, off", s)
}

// Limits bound what clients may hold (the limits keys).
type Limits struct {
	// HeaderTimeout is the time to read a request's headers; positive.
	// It applies at New only.
	HeaderTimeout time.Duration
	// MaxHeaderBytes bounds a request's headers; positive. It applies at
	// New only.
	MaxHeaderBytes int
	// DialTimeout bounds a dial to an origin; positive.
	DialTimeout time.Duration
	// MaxTunnels bounds open tunnels in total; 0 = no limit.
	MaxTunnels int
	// MaxTunnelsPerClient bounds open tunnels per client address; 0 = no limit.
	MaxTunnelsPerClient int
	// TunnelIdleTimeout closes a tunnel idle that long; 0 = never.
	TunnelIdleTimeout time.Duration
}

// Settings are everything the proxy reads per connection, typed and
// validated by the caller (arcfence's config package builds them from the
// keys); the proxy trusts them. Reload swaps a whole Settings.
type Settings struct {
	// Profiles pick the policy and mode of a client address; an address in
	// no profile is refused with client-not-allowed. Required.
	Profiles *policy.Profiles
	// SNI is the ClientHello check of TLS tunnels.
	SNI SNIMode
	// AllowRanges are destination prefixes exempt from the private-address
	// guard (masked, IPv4 as 4-byte addresses).
	AllowRanges []netip.Prefix
	// Resolver is the host:port of the DNS server for the proxy's own
	// lookups; "" means the system's.
	Resolver string
	// Limits are the limits keys.
	Limits Limits
	// TunnelsInfo logs tunnel close lines at info instead of debug.
	TunnelsInfo bool
	// AdmitLearned admits IP-literal CONNECTs to addresses the DNS filter
	// handed out for allowed names (dns.admit_learned_addresses).
	AdmitLearned bool
}

// settings is the immutable, compiled form of Settings. A reload builds a
// new one off the hot path and swaps it in.
//
// The settings the Server holds are the default profile's view; views
// holds one view per profile (in Profiles.List order), each a copy that
// differs only in the profile fields. A connection is decided with the
// view of its client's profile (forClient), chosen once in precheck.
type settings struct {
	profiles     *policy.Profiles
	views        []*settings
	none         *settings      // the view of clients in no profile
	profile      string         // this view's profile name
	pol          *policy.Policy // this view's profile's policy
	mode         string         // its mode, as logged
	learn        bool
	counters     *decisionCounters // arcfence_decisions_total children of this profile
	sni          SNIMode
	allowRanges  []netip.Prefix
	headerTO     time.Duration
	dialTO       time.Duration
	maxTunnels   int // 0 = no limit
	maxPerClient int // 0 = no limit
	idleTO       time.Duration
	resolverAddr string
	resolver     *net.Resolver
	tunnelsInfo  bool // tunnel close lines at info instead of debug
	admitLearned bool
}

// compileSettings builds the per-connection form of in.
func compileSettings(in Settings) (*settings, error) {
	if in.Profiles == nil || in.Profiles.Default() == nil || in.Profiles.Default().Policy == nil {
		return nil, errors.New("proxy: no policy")
	}
	if l := in.Limits; l.HeaderTimeout <= 0 || l.DialTimeout <= 0 || l.MaxHeaderBytes <= 0 {
		// The config package refuses these; a zero here would answer
		// every connection 408 or every dial 504.
		return nil, fmt.Errorf("proxy: limits: header timeout, dial timeout and max header bytes must be positive (got %v, %v, %d)",
			l.HeaderTimeout, l.DialTimeout, l.MaxHeaderBytes)
	}
	def := in.Profiles.Default()
	st := &settings{
		profiles:     in.Profiles,
		sni:          in.SNI,
		allowRanges:  in.AllowRanges,
		headerTO:     in.Limits.HeaderTimeout,
		dialTO:       in.Limits.DialTimeout,
		maxTunnels:   in.Limits.MaxTunnels,
		maxPerClient: in.Limits.MaxTunnelsPerClient,
		idleTO:       in.Limits.TunnelIdleTimeout,
		resolverAddr: in.Resolver,
		resolver:     net.DefaultResolver,
		tunnelsInfo:  in.TunnelsInfo,
		admitLearned: in.AdmitLearned,
	}
	if in.Resolver != "" {
		addr := in.Resolver
		st.resolver = &net.Resolver{
			PreferGo: true,
			Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
				var d net.Dialer
				return d.DialContext(ctx, network, addr)
			},
		}
	}
	list := in.Profiles.List()
	views := make([]*settings, len(list))
	for i, pc := range list {
		v := *st
		v.profile, v.pol, v.mode = pc.Profile.Name, pc.Profile.Policy, pc.Profile.Mode.String()
		v.learn = pc.Profile.Mode == policy.ModeLearn
		v.counters = newDecisionCounters(pc.Profile.Name)
		views[i] = &v
	}
	// none decides nothing: it logs the refusals of clients in no
	// profile, with the top-level mode and no profile name.
	none := *st
	none.pol, none.mode = def.Policy, def.Mode.String()
	none.counters = newDecisionCounters("")
	for _, v := range append(views, &none) {
		v.views, v.none = views, &none
	}
	// The Server holds the default profile's view (listed last).
	return views[len(views)-1], nil
}

// forClient returns the view of a's profile, and false when a is in no
// profile's clients (then a view without a profile, for the refusal
// line).
func (st *settings) forClient(a netip.Addr) (*settings, bool) {
	i := st.profiles.Index(a)
	if i < 0 {
		return st.none, false
	}
	return st.views[i], true
}

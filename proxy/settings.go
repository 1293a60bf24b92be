package proxy

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"time"

	"github.com/arcfence/arcfence/internal/config"
	"github.com/arcfence/arcfence/policy"
)

// Defaults used when a limit is zero in the configuration.
const (
	defaultHeaderTimeout  = 10 * time.Second
	defaultMaxHeaderBytes = 32 << 10
	defaultDialTimeout    = 10 * time.Second
	// keepAliveIdle closes client keep-alive connections (plain HTTP) idle this long.
	keepAliveIdle = 2 * time.Minute
	// retryAfter is the Retry-After value, in seconds, of 429 answers.
	retryAfter = "5"
)

// sniMode is the sni key: what the ClientHello check does.
type sniMode uint8

const (
	sniEnforce sniMode = iota // close mismatching tunnels
	sniLog                    // log, let the tunnel proceed
	sniOff                    // do not inspect
)

// settings is the immutable, compiled form of everything the proxy reads per
// connection. A reload builds a new one off the hot path and swaps it in.
type settings struct {
	pol          *policy.Policy
	mode         string // config.ModeEnforce or config.ModeLearn
	learn        bool
	sni          sniMode
	clients      []netip.Prefix
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

// compileSettings validates the proxy's part of cfg and compiles it with p.
func compileSettings(cfg *config.Config, p *policy.Policy) (*settings, error) {
	if p == nil {
		return nil, fmt.Errorf("proxy: no policy")
	}
	st := &settings{pol: p, admitLearned: cfg.DNS.AdmitLearnedAddresses}
	switch cfg.Mode {
	case config.ModeEnforce, "":
		st.mode = config.ModeEnforce
	case config.ModeLearn:
		st.mode, st.learn = config.ModeLearn, true
	default:
		return nil, fmt.Errorf("mode: %q is not allowed; expect %q or %q", cfg.Mode, config.ModeEnforce, config.ModeLearn)
	}
	switch cfg.SNI {
	case config.SNIEnforce, "":
		st.sni = sniEnforce
	case config.SNILog:
		st.sni = sniLog
	case config.SNIOff:
		st.sni = sniOff
	default:
		return nil, fmt.Errorf("sni: %q is not allowed; expect %q, %q or %q", cfg.SNI, config.SNIEnforce, config.SNILog, config.SNIOff)
	}
	var err error
	if st.clients, err = parsePrefixes("clients", cfg.Clients); err != nil {
		return nil, err
	}
	if st.allowRanges, err = parsePrefixes("allow_ranges", cfg.AllowRanges); err != nil {
		return nil, err
	}
	l := cfg.Limits
	for _, c := range []struct {
		key string
		v   time.Duration
	}{{"limits.header_timeout", l.HeaderTimeout}, {"limits.dial_timeout", l.DialTimeout},
		{"limits.tunnel_idle_timeout", l.TunnelIdleTimeout}, {"limits.shutdown_grace", l.ShutdownGrace}} {
		if c.v < 0 {
			return nil, fmt.Errorf("%s: %v is negative; use 0 or a positive duration such as 10s", c.key, c.v)
		}
	}
	for _, c := range []struct {
		key string
		v   int
	}{{"limits.max_header_bytes", l.MaxHeaderBytes}, {"limits.max_tunnels", l.MaxTunnels},
		{"limits.max_tunnels_per_client", l.MaxTunnelsPerClient}} {
		if c.v < 0 {
			return nil, fmt.Errorf("%s: %d is negative; use 0 (the default or no limit) or a positive number", c.key, c.v)
		}
	}
	st.headerTO = orDuration(l.HeaderTimeout, defaultHeaderTimeout)
	st.dialTO = orDuration(l.DialTimeout, defaultDialTimeout)
	st.maxTunnels, st.maxPerClient, st.idleTO = l.MaxTunnels, l.MaxTunnelsPerClient, l.TunnelIdleTimeout
	switch strings.ToLower(cfg.Log.Tunnels) {
	case "", "debug":
	case "info":
		st.tunnelsInfo = true
	default:
		return nil, fmt.Errorf("log.tunnels: %q is not allowed; expect \"debug\" or \"info\"", cfg.Log.Tunnels)
	}
	st.resolverAddr = cfg.Resolver
	st.resolver = net.DefaultResolver
	if cfg.Resolver != "" {
		h, port, err := net.SplitHostPort(cfg.Resolver)
		if err != nil || port == "" {
			return nil, fmt.Errorf("resolver: %q is not host:port; write e.g. 127.0.0.1:53", cfg.Resolver)
		}
		addr := net.JoinHostPort(h, port)
		st.resolver = &net.Resolver{
			PreferGo: true,
			Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
				var d net.Dialer
				return d.DialContext(ctx, network, addr)
			},
		}
	}
	return st, nil
}

func orDuration(v, def time.Duration) time.Duration {
	if v > 0 {
		return v
	}
	return def
}

// parsePrefixes parses CIDRs or bare addresses (a bare address is a /32 or /128).
func parsePrefixes(key string, list []string) ([]netip.Prefix, error) {
	out := make([]netip.Prefix, 0, len(list))
	for _, s := range list {
		s = strings.TrimSpace(s)
		if strings.IndexByte(s, '/') < 0 {
			a, err := netip.ParseAddr(s)
			if err != nil {
				return nil, fmt.Errorf("%s: %q is not a CIDR or an IP address; write e.g. 10.0.0.0/8", key, s)
			}
			out = append(out, netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()))
			continue
		}
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return nil, fmt.Errorf("%s: %q is not a CIDR or an IP address; write e.g. 10.0.0.0/8", key, s)
		}
		out = append(out, p.Masked())
	}
	return out, nil
}

// clientAllowed reports whether a is inside one of the clients prefixes.
func (st *settings) clientAllowed(a netip.Addr) bool {
	a = a.Unmap()
	for _, p := range st.clients {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

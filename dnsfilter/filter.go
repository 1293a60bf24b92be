// Package dnsfilter is arcfence's DNS filter: a UDP and TCP DNS server (on
// github.com/miekg/dns) that answers only the names the compiled policy
// admits, by forwarding them to upstream resolvers, and refuses every other
// name with the configured rcode and an Extended DNS Error (RFC 8914, code 15
// "Blocked") naming arcfence.
//
// Besides the policy's own names, a CNAME target seen in an allowed answer
// stays answerable for that record's TTL (Azure names answer through traffic
// manager, CDN and cloudapp names), and the A/AAAA addresses of allowed
// answers are remembered for their TTL, with the question names they were
// handed out for, so that the proxy may admit an IP-literal destination
// where the policy admits one of those names (see Filter.LearnedNames).
//
// The package keeps no global state and never uses miekg/dns's default mux:
// every Filter runs its own dns.Server values with itself as handler.
package dnsfilter

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
	"golang.org/x/net/netutil"

	"github.com/arcfence/arcfence/internal/audit"
	"github.com/arcfence/arcfence/internal/metrics"
	"github.com/arcfence/arcfence/policy"
)

// DenyRcode is the answer to a refused name (the dns.deny_rcode key).
type DenyRcode uint8

// Deny rcodes.
const (
	// DenyNXDomain answers refused names with NXDOMAIN. The zero value.
	DenyNXDomain DenyRcode = iota
	// DenyRefused answers refused names with REFUSED.
	DenyRefused
)

// String returns the rcode as the configuration spells it.
func (r DenyRcode) String() string {
	if r == DenyRefused {
		return "refused"
	}
	return "nxdomain"
}

// ParseDenyRcode parses the configuration's spelling of a deny rcode.
func ParseDenyRcode(s string) (DenyRcode, error) {
	switch s {
	case "nxdomain":
		return DenyNXDomain, nil
	case "refused":
		return DenyRefused, nil
	}
	return DenyNXDomain, fmt.Errorf("unknown value %q; expected one of nxdomain, refused", s)
}

// rcode returns r as a DNS rcode.
func (r DenyRcode) rcode() int {
	if r == DenyRefused {
		return dns.RcodeRefused
	}
	return dns.RcodeNameError
}

// Defaults of Options' zero values.
const (
	// DefaultTimeout is the per-attempt upstream timeout.
	DefaultTimeout = 1500 * time.Millisecond
	// DefaultQueryTimeout bounds the whole forwarding of one query, every
	// attempt included.
	DefaultQueryTimeout = 4 * time.Second
	// DefaultMaxCNAMETargets bounds the CNAME-target set.
	DefaultMaxCNAMETargets = 10000
	// DefaultMaxLearned bounds the learned-address set.
	DefaultMaxLearned = 65536
	// DefaultMaxInFlight bounds the queries forwarded at once.
	DefaultMaxInFlight = 2048
	// DefaultResolvConf is read for upstreams when Options.Upstreams is empty.
	DefaultResolvConf = "/etc/resolv.conf"
)

// maxTCPConns bounds the client TCP connections served at once.
const maxTCPConns = 1024

// maxUDPSize is the largest UDP payload the filter sends or advertises
// (DNS flag day 2020: 1232 bytes avoids IP fragmentation).
const maxUDPSize = 1232

// Options configure a Filter. The zero value of each field has the meaning
// its comment gives.
type Options struct {
	// Listen is the host:port the filter serves on, over UDP and TCP. Port
	// 0 picks a free port (the same for both); Addr reports it.
	Listen string
	// Upstreams are the resolvers allowed names are forwarded to, as
	// IP:port (a bare IP means port 53), tried in order with failover.
	// Empty means the nameservers of ResolvConf.
	Upstreams []string
	// ResolvConf is the resolv.conf read when Upstreams is empty;
	// "" means DefaultResolvConf.
	ResolvConf string
	// DenyRcode is the answer to refused names.
	DenyRcode DenyRcode
	// CacheSize is the number of answers cached; 0 disables the cache.
	CacheSize int
	// Policy decides which names are answered. Required.
	Policy *policy.Policy
	// Profiles, when set with more than the default profile, decide
	// instead of Policy (dns.profiles): a name any profile admits is
	// answered (union), or, with ByClient, the query's source address picks
	// the profile as for the proxy and a source in no profile is refused.
	Profiles *policy.Profiles
	// ByClient is dns.profiles client (see Profiles).
	ByClient bool
	// Mode is the filter's mode: learn forwards names the allowlist lacks
	// and logs them as "would deny".
	Mode policy.Mode
	// Logger receives the filter's own lines (start, stop, each upstream
	// failure at debug level); the zero value discards them.
	Logger zerolog.Logger
	// Audit receives refusal lines and upstream failures (warn level,
	// folded); nil means audit.New(Logger).
	Audit *audit.Log
	// Metrics receives counts; nil means none are kept.
	Metrics *metrics.Metrics
	// Timeout is the upstream timeout of one attempt; 0 means DefaultTimeout.
	Timeout time.Duration
	// QueryTimeout bounds the forwarding of one query over all attempts;
	// 0 means DefaultQueryTimeout.
	QueryTimeout time.Duration
	// Attempts is the number of upstream attempts per query; 0 means one
	// per upstream, at least 2. Failover moves to the next upstream after a
	// timeout, an error or SERVFAIL.
	Attempts int
	// MaxCNAMETargets bounds the set of CNAME targets kept answerable;
	// 0 means DefaultMaxCNAMETargets. The oldest entry is evicted first.
	MaxCNAMETargets int
	// MaxLearned bounds the learned (address, name) pairs, at most
	// 8 names per address; 0 means DefaultMaxLearned. The oldest entry is
	// evicted first.
	MaxLearned int
	// MaxInFlight bounds the queries being forwarded at once (a flood of
	// random names under an allowed wildcard must not pile up on the
	// upstreams); beyond it queries get SERVFAIL at once. 0 means
	// DefaultMaxInFlight.
	MaxInFlight int
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// settings are the parts of the configuration that a reload may change,
// swapped as a whole.
type settings struct {
	pol       *policy.Policy
	learn     bool
	denyRcode int
	profiles  *policy.Profiles // nil: pol decides
	byClient  bool
}

// Filter is a running (or ready to run) DNS filter. Its methods are safe for
// concurrent use.
type Filter struct {
	log     zerolog.Logger
	audit   *audit.Log
	metrics *metrics.Metrics
	now     func() time.Time

	set atomic.Pointer[settings]

	ups          []*upstream
	timeout      time.Duration
	queryTimeout time.Duration
	attempts     int
	maxInFlight  int64
	inFlight     atomic.Int64

	cache   *answerCache    // nil when off
	cnames  *ttlSet[string] // CNAME targets of allowed answers
	learned *addrNames      // addresses of allowed answers, by question name

	rcodeCounters [16]prometheus.Counter
	decMu         sync.RWMutex
	decCounters   map[decisionKey]prometheus.Counter // by label set, filled on first use
	tails         *refusalTails
	bufs          sync.Pool // *[]byte packet buffers of 4096 bytes

	pc net.PacketConn
	ln net.Listener

	baseCtx context.Context
	cancel  context.CancelFunc

	ran      atomic.Bool // Run or Shutdown claimed the listeners
	stopOnce sync.Once
	stop     chan struct{}
	done     chan struct{}
}

// New validates opts, binds the UDP and TCP listeners and returns a Filter
// ready to Run. Call Shutdown (or cancel Run's context) to release them.
func New(opts Options) (*Filter, error) {
	if opts.Policy == nil {
		return nil, errors.New("dnsfilter: Options.Policy is nil")
	}
	if opts.Listen == "" {
		return nil, errors.New("dnsfilter: dns.listen is empty")
	}
	st := &settings{pol: opts.Policy, learn: opts.Mode == policy.ModeLearn, denyRcode: opts.DenyRcode.rcode()}
	st.profiles, st.byClient = profilesOf(opts.Profiles, opts.ByClient)
	ups, err := parseUpstreams(opts.Upstreams, opts.ResolvConf)
	if err != nil {
		return nil, err
	}
	f := &Filter{
		log:          opts.Logger,
		audit:        opts.Audit,
		metrics:      opts.Metrics,
		now:          opts.Now,
		ups:          ups,
		timeout:      opts.Timeout,
		queryTimeout: opts.QueryTimeout,
		attempts:     opts.Attempts,
		stop:         make(chan struct{}),
		done:         make(chan struct{}),
	}
	if f.audit == nil {
		f.audit = audit.New(opts.Logger)
	}
	if f.now == nil {
		f.now = time.Now
	}
	if f.timeout <= 0 {
		f.timeout = DefaultTimeout
	}
	if f.queryTimeout <= 0 {
		f.queryTimeout = DefaultQueryTimeout
	}
	if f.attempts <= 0 {
		f.attempts = max(len(ups), 2)
	}
	f.maxInFlight = int64(opts.MaxInFlight)
	if f.maxInFlight <= 0 {
		f.maxInFlight = DefaultMaxInFlight
	}
	f.set.Store(st)
	f.tails = newRefusalTails()
	f.bufs.New = func() any { b := make([]byte, 4096); return &b }
	if opts.CacheSize > 0 {
		f.cache = newAnswerCache(opts.CacheSize)
	}
	nc := opts.MaxCNAMETargets
	if nc <= 0 {
		nc = DefaultMaxCNAMETargets
	}
	nl := opts.MaxLearned
	if nl <= 0 {
		nl = DefaultMaxLearned
	}
	f.cnames = newTTLSet[string](nc)
	f.learned = newAddrNames(nl)
	if f.metrics != nil {
		f.decCounters = make(map[decisionKey]prometheus.Counter)
		for rc := range f.rcodeCounters {
			f.rcodeCounters[rc] = f.metrics.DNSQueries.WithLabelValues(rcodeName(rc))
		}
		f.initUpstreamCounters()
	}
	f.baseCtx, f.cancel = context.WithCancel(context.Background())
	if err := f.bind(opts.Listen); err != nil {
		f.cancel()
		return nil, err
	}
	if u := f.selfUpstream(); u != "" {
		f.pc.Close()
		f.ln.Close()
		f.cancel()
		return nil, fmt.Errorf("dnsfilter: dns.upstream %s is this filter's own address (dns.listen %s): queries would loop", u, opts.Listen)
	}
	return f, nil
}

// selfUpstream returns the first upstream that is the filter itself (the
// listen address, or, on a wildcard listener, a loopback or local address
// on the listen port), "" when none is: forwarding to itself would loop.
func (f *Filter) selfUpstream() string {
	return loopingUpstream(f.pc.LocalAddr().(*net.UDPAddr).AddrPort(), f.ups, localAddrs)
}

func loopingUpstream(listen netip.AddrPort, ups []*upstream, local func() map[netip.Addr]bool) string {
	la := listen.Addr().Unmap()
	var locals map[netip.Addr]bool
	for _, u := range ups {
		ua := u.udpAddr.AddrPort()
		if ua.Port() != listen.Port() {
			continue
		}
		a := ua.Addr().Unmap()
		if a == la {
			return u.addr
		}
		if la.IsUnspecified() {
			if locals == nil {
				locals = local()
			}
			if a.IsLoopback() || a.IsUnspecified() || locals[a] {
				return u.addr
			}
		}
	}
	return ""
}

// localAddrs returns the addresses of the machine's interfaces.
func localAddrs() map[netip.Addr]bool {
	m := map[netip.Addr]bool{}
	if addrs, err := net.InterfaceAddrs(); err == nil {
		for _, a := range addrs {
			if p, err := netip.ParsePrefix(a.String()); err == nil {
				m[p.Addr().Unmap()] = true
			}
		}
	}
	return m
}

// bind opens the UDP socket and a TCP listener on the same port.
func (f *Filter) bind(addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("dnsfilter: dns.listen %q: %w", addr, err)
	}
	// With port 0 the kernel picks the UDP port; the same TCP port may be
	// taken, so try a few times (bounded).
	for try := 0; try < 10; try++ {
		pc, err := net.ListenPacket("udp", addr)
		if err != nil {
			return fmt.Errorf("dnsfilter: listen udp %s: %w", addr, err)
		}
		p := pc.LocalAddr().(*net.UDPAddr).Port
		ln, err := net.Listen("tcp", net.JoinHostPort(host, strconv.Itoa(p)))
		if err != nil {
			pc.Close()
			if port == "0" {
				continue
			}
			return fmt.Errorf("dnsfilter: listen tcp %s: %w", addr, err)
		}
		f.pc, f.ln = pc, ln
		return nil
	}
	return fmt.Errorf("dnsfilter: listen %s: no port free for both udp and tcp", addr)
}

// Addr returns the address the filter listens on (UDP and TCP share it).
func (f *Filter) Addr() string {
	return f.pc.LocalAddr().String()
}

// SetPolicy replaces the policy used for new queries (on reload). Queries
// in flight finish with the policy they started with. A nil p is ignored.
func (f *Filter) SetPolicy(p *policy.Policy) {
	if p == nil {
		return
	}
	for {
		old := f.set.Load()
		n := *old
		n.pol = p
		if f.set.CompareAndSwap(old, &n) {
			return
		}
	}
}

// profilesOf returns the profiles that decide, nil when the default
// profile alone does and every source may ask (Policy decides then); with
// byClient the source must be a client even then.
func profilesOf(ps *policy.Profiles, byClient bool) (*policy.Profiles, bool) {
	if ps == nil || (!byClient && len(ps.List()) < 2) {
		return nil, false
	}
	return ps, byClient
}

// SetProfiles replaces the profiles (and dns.profiles) used for new
// queries (on reload); see Options.Profiles.
func (f *Filter) SetProfiles(ps *policy.Profiles, byClient bool) {
	for {
		old := f.set.Load()
		n := *old
		n.profiles, n.byClient = profilesOf(ps, byClient)
		if f.set.CompareAndSwap(old, &n) {
			return
		}
	}
}

// SetMode switches the mode for new queries (on reload).
func (f *Filter) SetMode(m policy.Mode) {
	for {
		old := f.set.Load()
		n := *old
		n.learn = m == policy.ModeLearn
		if f.set.CompareAndSwap(old, &n) {
			return
		}
	}
}

// SetDenyRcode switches the answer to refused names for new queries.
func (f *Filter) SetDenyRcode(r DenyRcode) {
	for {
		old := f.set.Load()
		n := *old
		n.denyRcode = r.rcode()
		if f.set.CompareAndSwap(old, &n) {
			return
		}
	}
}

// LearnedNames appends to dst the names whose allowed answers handed out
// addr (an IPv4-mapped IPv6 address counts as its IPv4 address) within
// that record's TTL, and returns the extended slice: the question names,
// lower case, at most 8 per address. It implements the proxy's
// LearnedAddrs interface and is safe for concurrent use.
func (f *Filter) LearnedNames(addr netip.Addr, dst []string) []string {
	return f.learned.names(addr.Unmap(), f.now().UnixNano(), dst)
}

// Run serves UDP and TCP until ctx is done or Shutdown is called, then
// stops both servers, letting queries in flight finish (each is bounded by
// the query timeout). It returns nil after a shutdown, or the error that
// stopped a server. Run may be called once.
func (f *Filter) Run(ctx context.Context) error {
	if !f.ran.CompareAndSwap(false, true) {
		return errors.New("dnsfilter: Run called twice or after Shutdown")
	}
	return f.run(ctx)
}

func (f *Filter) run(ctx context.Context) error {
	defer close(f.done)
	defer f.cancel()
	started := make(chan struct{}, 2)
	notify := func() { started <- struct{}{} }
	udp := &dns.Server{
		PacketConn:        f.pc,
		Net:               "udp",
		Handler:           f,
		UDPSize:           4096,
		MsgAcceptFunc:     acceptQuery,
		DecorateReader:    dropGarbage,
		DecorateWriter:    silence,
		NotifyStartedFunc: notify,
	}
	tcp := &dns.Server{
		// Bounded TCP connections: beyond the limit, new ones wait in the
		// kernel's backlog (each open one is closed after 8 s idle).
		Listener:          netutil.LimitListener(f.ln, maxTCPConns),
		Net:               "tcp",
		Handler:           f,
		MsgAcceptFunc:     acceptQuery,
		DecorateReader:    dropGarbage,
		DecorateWriter:    silence,
		NotifyStartedFunc: notify,
	}
	errc := make(chan error, 2)
	go func() { errc <- udp.ActivateAndServe() }()
	go func() { errc <- tcp.ActivateAndServe() }()
	pending := 2
	var runErr error
	for n := 0; n < 2 && runErr == nil; {
		select {
		case <-started:
			n++
		case runErr = <-errc:
			pending--
		}
	}
	if runErr == nil {
		f.log.Info().Str("listen", f.Addr()).Strs("upstream", upstreamAddrs(f.ups)).Msg("dns filter started")
		select {
		case <-ctx.Done():
		case <-f.stop:
		case runErr = <-errc:
			pending--
		}
	}
	f.cancel()
	sctx, cancel := context.WithTimeout(context.Background(), f.queryTimeout+2*time.Second)
	defer cancel()
	// Shutting down a server that stopped on its own returns an error; ignore it.
	_ = udp.ShutdownContext(sctx)
	_ = tcp.ShutdownContext(sctx)
	for ; pending > 0; pending-- {
		select {
		case e := <-errc:
			if runErr == nil && e != nil {
				runErr = e
			}
		case <-sctx.Done():
			pending = 0
		}
	}
	f.pc.Close()
	f.ln.Close()
	f.closeUpstreams()
	if runErr != nil {
		return fmt.Errorf("dnsfilter: %w", runErr)
	}
	f.log.Info().Msg("dns filter stopped")
	return nil
}

// Shutdown stops a running filter and waits (until ctx is done) for Run to
// return; on a filter that never ran it releases the listeners.
func (f *Filter) Shutdown(ctx context.Context) error {
	f.stopOnce.Do(func() { close(f.stop) })
	if f.ran.CompareAndSwap(false, true) {
		// Never ran: nothing serves; close the sockets.
		f.cancel()
		f.pc.Close()
		f.ln.Close()
		f.closeUpstreams()
		close(f.done)
	}
	select {
	case <-f.done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// closeUpstreams closes the upstream sockets once no query is served.
func (f *Filter) closeUpstreams() {
	for _, u := range f.ups {
		u.mux.close()
	}
}

// acceptQuery lets every query through to the handler, which answers
// FORMERR or NOTIMP itself; responses are dropped without an answer.
func acceptQuery(dh dns.Header) dns.MsgAcceptAction {
	const qr = 1 << 15
	if dh.Bits&qr != 0 {
		return dns.MsgIgnore
	}
	return dns.MsgAccept
}

// silence is the servers' DecorateWriter. The handler writes with
// ResponseWriter.Write, which does not pass through it; the only writes that
// do are the miekg server's own FORMERR answers to messages that do not
// parse, and garbage gets no answer (an answer could be used to amplify).
func silence(dns.Writer) dns.Writer { return dropWriter{} }

type dropWriter struct{}

var errNoPacketConnReader = errors.New("dnsfilter: reader cannot read packet conns")

func (dropWriter) Write(p []byte) (int, error) { return len(p), nil }

func rcodeName(rc int) string {
	if s, ok := dns.RcodeToString[rc]; ok {
		return s
	}
	return strconv.Itoa(rc)
}

func (f *Filter) countRcode(rc int) {
	if f.metrics == nil {
		return
	}
	if rc >= 0 && rc < len(f.rcodeCounters) {
		f.rcodeCounters[rc].Inc()
		return
	}
	f.metrics.DNSQueries.WithLabelValues(rcodeName(rc)).Inc()
}

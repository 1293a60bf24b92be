// Package proxy is arcfence's forward proxy: HTTPS CONNECT tunnels passed
// through untouched (spliced between the sockets on Linux), plain-HTTP
// absolute-form forwarding on github.com/elazarl/goproxy, websocket
// upgrades, the TLS ClientHello (SNI) check, the destination-address guard,
// limits, reload without dropping tunnels and graceful shutdown.
//
// Every CONNECT and every request is decided by policy.Decide before any
// dial; goproxy never sees a CONNECT and never dials on its own.
package proxy

import (
	"context"
	"crypto/tls"
	"fmt"
	"log"
	"math/rand/v2"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/elazarl/goproxy"
	"github.com/rs/zerolog"

	"github.com/arcfence/arcfence/internal/audit"
	"github.com/arcfence/arcfence/internal/metrics"
	"github.com/arcfence/arcfence/policy"
)

// LearnedAddrs tells which names the DNS filter handed an address out for
// (dnsfilter.Filter implements it). With dns.admit_learned_addresses, an
// IP-literal destination is admitted where the policy admits one of its
// names, as that name would be.
type LearnedAddrs interface {
	// LearnedNames appends to dst the names addr was handed out for,
	// within their answers' TTL, and returns the extended slice. It is
	// called concurrently.
	LearnedNames(addr netip.Addr, dst []string) []string
}

// Options configure a Server.
type Options struct {
	// Settings are the proxy's settings (see Settings); Settings.Profiles
	// is required. Limits.HeaderTimeout and Limits.MaxHeaderBytes apply at
	// New only; everything else is reloadable.
	Settings Settings
	// Logger receives the proxy's lines. The zero value discards them.
	Logger zerolog.Logger
	// Audit writes refusal lines; nil means audit.New(Logger).
	Audit *audit.Log
	// Metrics receives the proxy's metrics; nil means a private set.
	Metrics *metrics.Metrics
	// LearnedAddrs, when non-nil, is consulted for IP-literal destinations
	// when dns.admit_learned_addresses is on. nil means none.
	LearnedAddrs LearnedAddrs
}

// Server is the forward proxy. Its methods are safe for concurrent use.
type Server struct {
	log     zerolog.Logger
	audit   *audit.Log
	m       *metricSet
	learned LearnedAddrs
	cur     atomic.Pointer[settings]

	http *http.Server
	gp   *goproxy.ProxyHttpServer
	tr   *http.Transport
	rt   goproxy.RoundTripper

	pipes  pipePool
	heads  sync.Pool // *[]byte of headBufSize: the fast path's request heads
	bufs   sync.Pool // *[]byte of genericBufSize
	hellos sync.Pool // *[]byte of helloBufSize: a tunnel's first bytes

	mu        sync.Mutex
	listeners map[net.Listener]struct{}
	reading   map[net.Conn]struct{} // fast-path connections reading their head
	fastWG    sync.WaitGroup        // fast-path goroutines
	tunnels   map[*tunnel]struct{}
	count     int
	perClient map[netip.Addr]int
	closing   bool
	drained   chan struct{} // closed when closing and no tunnel is left
	reapAfter time.Time     // no reap before (see reserve)
	wg        sync.WaitGroup

	ctx    context.Context
	cancel context.CancelFunc

	// connBase and connSeq make connection ids (see newConnID).
	connBase uint32
	connSeq  atomic.Uint32

	// dialHook, set only by tests, rewrites the checked address before the
	// dial (loopback origins cannot all listen on the ports rows name).
	dialHook func(netip.AddrPort) netip.AddrPort
}

// New returns a Server for opts. It does not listen; call Serve.
func New(opts Options) (*Server, error) {
	st, err := compileSettings(opts.Settings)
	if err != nil {
		return nil, err
	}
	if opts.Audit == nil {
		opts.Audit = audit.New(opts.Logger)
	}
	if opts.Metrics == nil {
		opts.Metrics = metrics.New()
	}
	s := &Server{
		log:       opts.Logger,
		audit:     opts.Audit,
		m:         newMetricSet(opts.Metrics),
		learned:   opts.LearnedAddrs,
		listeners: make(map[net.Listener]struct{}),
		reading:   make(map[net.Conn]struct{}),
		tunnels:   make(map[*tunnel]struct{}),
		perClient: make(map[netip.Addr]int),
		drained:   make(chan struct{}),
		connBase:  rand.Uint32(),
	}
	s.heads.New = func() any { b := make([]byte, headBufSize); return &b }
	s.bufs.New = func() any { b := make([]byte, genericBufSize); return &b }
	s.hellos.New = func() any { b := make([]byte, 0, helloBufSize); return &b }
	s.cur.Store(st)
	s.m.settingsApplied(st)
	s.ctx, s.cancel = context.WithCancel(context.Background())

	// The transport for plain HTTP: no environment proxy, verified TLS (it
	// never originates TLS, as only http:// URLs are forwarded), and a dialer
	// that resolves, guards and dials what the policy decided.
	s.tr = &http.Transport{
		Proxy:                 nil,
		DialContext:           s.dialPlain,
		TLSClientConfig:       &tls.Config{MinVersion: tls.VersionTLS12},
		MaxIdleConns:          256,
		MaxIdleConnsPerHost:   16,
		IdleConnTimeout:       90 * time.Second,
		DisableCompression:    true,
		ExpectContinueTimeout: time.Second,
		// An origin that accepts and never answers gets 504 after the dial
		// timeout (the one at New: the transport is not rebuilt on reload).
		ResponseHeaderTimeout: st.dialTO,
	}
	s.rt = goproxy.RoundTripperFunc(s.roundTrip)
	s.gp = newGoproxy(s)

	s.http = &http.Server{
		Handler:           s,
		ReadHeaderTimeout: st.headerTO,
		MaxHeaderBytes:    opts.Settings.Limits.MaxHeaderBytes,
		IdleTimeout:       keepAliveIdle,
		ErrorLog:          log.New(debugWriter{s.log}, "", 0),
		BaseContext:       func(net.Listener) context.Context { return s.ctx },
		ConnContext:       withClientConn,
		ConnState:         s.connState,
	}
	return s, nil
}

// debugWriter turns net/http's and goproxy's log output into debug lines.
type debugWriter struct{ l zerolog.Logger }

func (w debugWriter) Write(p []byte) (int, error) {
	if e := w.l.Debug(); e.Enabled() {
		for len(p) > 0 && p[len(p)-1] == '\n' {
			p = p[:len(p)-1]
		}
		e.Str(fieldComponent, audit.ComponentProxy).Str(fieldMsg, string(p)).Send()
	}
	return len(p), nil
}

// Printf implements goproxy.Logger.
func (w debugWriter) Printf(format string, v ...any) {
	if e := w.l.Debug(); e.Enabled() {
		e.Str(fieldComponent, audit.ComponentProxy).Str(fieldMsg, fmt.Sprintf(format, v...)).Send()
	}
}

// ServeTLS is Serve for a listener whose clients speak TLS to the proxy
// itself (tls.listen); cfg supplies the certificate (see package certs).
func (s *Server) ServeTLS(ln net.Listener, cfg *tls.Config) error {
	cfg = cfg.Clone()
	cfg.NextProtos = []string{"http/1.1"}
	return s.Serve(tls.NewListener(ln, cfg))
}

// Reload swaps in new settings. Open tunnels keep the settings they started
// with; new connections get the new ones. On error nothing changes.
func (s *Server) Reload(in Settings) error {
	st, err := compileSettings(in)
	if err != nil {
		return err
	}
	s.cur.Store(st)
	s.m.settingsApplied(st)
	// Pooled plain-HTTP connections were guarded with the old settings.
	s.tr.CloseIdleConnections()
	return nil
}

// Policy returns the running default profile's policy.
func (s *Server) Policy() *policy.Policy { return s.cur.Load().pol }

// ActiveTunnels returns the number of open tunnels.
func (s *Server) ActiveTunnels() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.tunnels)
}

// Shutdown stops accepting, lets open tunnels and requests finish until ctx
// is done, then closes what is left and waits for every goroutine of the
// Server to end. It returns ctx's error when it had to close tunnels.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	if !s.closing {
		s.closing = true
		if len(s.tunnels) == 0 {
			close(s.drained)
		}
	}
	for ln := range s.listeners {
		_ = ln.Close()
	}
	for c := range s.reading {
		_ = c.SetReadDeadline(time.Unix(1, 0)) // a request head not read yet: drop it
	}
	s.mu.Unlock()
	herr := s.http.Shutdown(ctx)
	fast := make(chan struct{})
	go func() { s.fastWG.Wait(); close(fast) }()
	var err error
	select {
	case <-fast:
	case <-ctx.Done():
		err = ctx.Err()
		s.cancel() // abort the fast path's dials
		<-fast
	}
	if err == nil {
		select {
		case <-s.drained:
		case <-ctx.Done():
			err = ctx.Err()
		}
	}
	if herr != nil {
		_ = s.http.Close()
	}
	if err != nil {
		s.mu.Lock()
		n := len(s.tunnels)
		for t := range s.tunnels {
			t.abort(false, "shutdown")
		}
		s.mu.Unlock()
		s.log.Info().Str(fieldComponent, audit.ComponentProxy).Int("tunnels", n).
			Str(fieldMsg, "shutdown grace over, closed open tunnels").Send()
	}
	s.wg.Wait()
	s.tr.CloseIdleConnections()
	s.pipes.close()
	s.cancel()
	return err
}

// reserve counts a tunnel being opened for client against the limits.
func (s *Server) reserve(st *settings, client netip.Addr) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	over := func() bool {
		return st.maxTunnels > 0 && s.count >= st.maxTunnels ||
			st.maxPerClient > 0 && s.perClient[client] >= st.maxPerClient
	}
	if over() {
		// Before refusing, drop tunnels whose client is already gone (reset)
		// but not yet noticed by their goroutines: limits count live tunnels.
		// The scan costs a getsockopt per tunnel under s.mu (about 12 ms at
		// 5,000 tunnels), so after a scan that found nothing the next one
		// waits ten times its duration: a client hammering at its limit
		// cannot keep the lock (and a CPU) busy, while with few tunnels the
		// wait is microseconds.
		now := time.Now()
		if now.Before(s.reapAfter) {
			return false
		}
		all := st.maxTunnels > 0 && s.count >= st.maxTunnels
		n := s.reapLocked(client, all)
		if n == 0 {
			s.reapAfter = now.Add(reapBackoff * time.Since(now))
		}
		if n == 0 || over() {
			return false
		}
	}
	s.count++
	s.perClient[client]++
	return true
}

// reapBackoff is how many times a fruitless reap's duration the next one waits.
const reapBackoff = 10

// reapLocked aborts the tunnels (of client, or every client when all is
// set) whose client connection is closed by a reset, and releases their
// reservations (and those of tunnels already aborted) at once. It returns
// how many it released.
func (s *Server) reapLocked(client netip.Addr, all bool) int {
	n := 0
	for t := range s.tunnels {
		if t.unreserved || (!all && t.clientIP != client) {
			continue
		}
		// Aborted tunnels (closed, about to be released) count as gone too.
		if !t.aborted.Load() && !connReset(t.client) {
			continue
		}
		t.abort(true, "client gone")
		t.unreserved = true
		s.unreserveLocked(t.clientIP)
		n++
	}
	return n
}

// unreserve undoes reserve.
func (s *Server) unreserve(client netip.Addr) {
	s.mu.Lock()
	s.unreserveLocked(client)
	s.mu.Unlock()
}

func (s *Server) unreserveLocked(client netip.Addr) {
	s.count--
	if n := s.perClient[client] - 1; n > 0 {
		s.perClient[client] = n
	} else {
		delete(s.perClient, client)
	}
}

// track registers a reserved tunnel and its two goroutines; it is false
// once Shutdown started.
func (s *Server) track(t *tunnel) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing {
		return false
	}
	s.tunnels[t] = struct{}{}
	s.wg.Add(2)
	s.m.tunnelOpened()
	return true
}

// trackOrRefuse tracks t; when the server is shutting down it releases
// t's reservation, closes both connections with a 503 to the client and
// returns false.
func (s *Server) trackOrRefuse(t *tunnel) bool {
	if s.track(t) {
		return true
	}
	s.unreserve(t.clientIP)
	_ = t.origin.Close()
	shuttingDown.writeTo(t.client, false)
	_ = t.client.Close()
	return false
}

// untrack forgets a tunnel and releases its reservation.
func (s *Server) untrack(t *tunnel) {
	s.mu.Lock()
	delete(s.tunnels, t)
	if !t.unreserved {
		s.unreserveLocked(t.clientIP)
	}
	if s.closing && len(s.tunnels) == 0 {
		select {
		case <-s.drained:
		default:
			close(s.drained)
		}
	}
	s.mu.Unlock()
}

// refused writes a refusal line and counts the decision. id is the client
// connection's; st is the view of the client's profile (its mode and name
// are logged).
func (s *Server) refused(st *settings, client netip.Addr, id connID, host string, port int, r policy.Reason, proceeded bool) {
	s.refusedPath(st, client, id, host, port, "", r, proceeded)
}

// refusedPath is refused for a plain-HTTP request, whose path is logged.
func (s *Server) refusedPath(st *settings, client netip.Addr, id connID, host string, port int, path string, r policy.Reason, proceeded bool) {
	s.m.decision(st.counters, false, r, "")
	s.audit.Refused(audit.Event{
		Component: audit.ComponentProxy,
		Client:    client.String(),
		Host:      host,
		Port:      port,
		Reason:    r,
		Mode:      st.mode,
		Profile:   st.profile,
		Proceeded: proceeded,
		Path:      path,
		Conn:      id.String(),
	})
}

// ruleLearned marks the Rule of a destination admitted because the DNS
// filter handed its address out for a name the policy admits there.
const ruleLearned = "dns:learned-address"

// admit decides dest and turns the decision into admission: allowed
// decisions, IP literals the DNS filter handed out for a name the policy
// admits on dest's port and path (when that is on; learned is that name), and
// in learn mode the refusals learn mode lets through (logged as "would
// deny"). Refusals are logged and counted here.
func (s *Server) admit(st *settings, client netip.Addr, id connID, dest policy.Dest) (d policy.Decision, ok bool, learned string) {
	d = st.pol.Decide(dest)
	if d.Allowed() {
		s.m.decision(st.counters, true, policy.ReasonNone, d.Offering)
		return d, true, ""
	}
	if d.Reason == policy.IPLiteral && st.admitLearned && s.learned != nil && d.Addr.IsValid() {
		if ld, name, ok := s.learnedDecision(st, d, dest); ok {
			s.m.decision(st.counters, true, policy.ReasonNone, ld.Offering)
			return ld, true, name
		}
	}
	proceed := st.learn && d.Reason.Learnable()
	s.refusedPath(st, client, id, d.Host, d.Port, dest.Path, d.Reason, proceed)
	return d, proceed, ""
}

// learnedDecision decides d, an IP literal the policy refused as
// ip-literal, by the names the DNS filter handed its address out for (an
// IPv4-mapped address is its IPv4 address): the first name the policy
// admits on dest's port (and path, over plain HTTP) decides, with its row's
// properties (TLS-only, private addresses, offering), for d's address. The
// Rule names the row and the name:
// "*.his.arc.azure.com:443 (dns:learned-address x.his.arc.azure.com)".
// name is the name that decided.
func (s *Server) learnedDecision(st *settings, d policy.Decision, dest policy.Dest) (_ policy.Decision, name string, ok bool) {
	var buf [4]string
	for _, name := range s.learned.LearnedNames(d.Addr.Unmap(), buf[:0]) {
		nd := st.pol.Decide(policy.Dest{Host: name, Port: dest.Port, Path: dest.Path, Plain: dest.Plain})
		if !nd.Allowed() {
			continue
		}
		nd.Host, nd.Addr = d.Host, d.Addr.Unmap()
		nd.Rule += " (" + ruleLearned + " " + name + ")"
		return nd, name, true
	}
	return d, "", false
}

// learnedSNI reports whether sni names one of the names the DNS filter
// handed addr out for that the policy admits on port: the SNI check of a
// tunnel admitted by learnedDecision.
func (s *Server) learnedSNI(st *settings, addr netip.Addr, sni []byte, port int) bool {
	var buf [4]string
	for _, name := range s.learned.LearnedNames(addr, buf[:0]) {
		if sameHost(sni, name) && st.pol.Decide(policy.Dest{Host: name, Port: port}).Allowed() {
			return true
		}
	}
	return false
}

// remoteIP parses the client address of a request.
func remoteIP(remote string) netip.Addr {
	ap, err := netip.ParseAddrPort(remote)
	if err != nil {
		return netip.Addr{}
	}
	return ap.Addr().Unmap()
}

// ServeHTTP implements http.Handler: CONNECT is handled here; everything
// else is decided here and forwarded through goproxy.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	st := s.cur.Load()
	client := remoteIP(r.RemoteAddr)
	cc := clientConnOf(r.Context())
	id := cc.connID()
	proto10 := r.ProtoMajor == 1 && r.ProtoMinor == 0
	if r.Method == http.MethodConnect {
		// The connection becomes a tunnel (counted on its own) or closes.
		s.dropSlot(cc)
		// s.ctx, not r.Context(): net/http cancels the request's context
		// when the client half-closes right behind its CONNECT.
		s.serveConnect(s.ctx, &httpAnswerer{w: w, r: r}, r.RequestURI, proto10, st, client, id)
		return
	}
	s.servePlain(w, r, st, client, cc)
}

// clientConnKey is the context key of a request's *clientConn.
type clientConnKey struct{}

// withClientConn is the http.Server's ConnContext: it keeps the
// connection's state where ServeHTTP finds it.
func withClientConn(ctx context.Context, c net.Conn) context.Context {
	if cc, ok := c.(*clientConn); ok {
		return context.WithValue(ctx, clientConnKey{}, cc)
	}
	return ctx
}

// clientConnOf returns the connection of a request's context, or nil.
func clientConnOf(ctx context.Context) *clientConn {
	cc, _ := ctx.Value(clientConnKey{}).(*clientConn)
	return cc
}

// connState is the http.Server's ConnState hook: it tells a connection
// whether net/http has one of its requests in hand (see clientConn.Read),
// and a connection that closes or becomes a tunnel gives its plain-HTTP
// place in the limits back.
func (s *Server) connState(c net.Conn, cs http.ConnState) {
	cc, ok := c.(*clientConn)
	if !ok {
		return
	}
	switch cs {
	case http.StateActive:
		cc.handling.Store(true)
	case http.StateIdle:
		cc.handling.Store(false)
	case http.StateClosed, http.StateHijacked:
		s.dropSlot(cc)
	}
}

// holdSlot counts a plain-HTTP connection in the tunnel limits
// (max_tunnels, max_tunnels_per_client) from its first request until it
// closes or is taken over; it reports false when the limits are reached.
// A connection net/http did not get from Serve (cc nil) is not counted.
func (s *Server) holdSlot(cc *clientConn, st *settings, client netip.Addr) bool {
	if cc == nil || cc.slot.Load() {
		return true
	}
	if !s.reserve(st, client) {
		return false
	}
	cc.slotIP = client
	cc.slot.Store(true)
	return true
}

// dropSlot gives back cc's place in the limits, if it holds one.
func (s *Server) dropSlot(cc *clientConn) {
	if cc != nil && cc.slot.CompareAndSwap(true, false) {
		s.unreserve(cc.slotIP)
	}
}

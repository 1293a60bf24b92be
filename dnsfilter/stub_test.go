package dnsfilter

import (
	"bytes"
	"context"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/rs/zerolog"

	"github.com/arcfence/arcfence/internal/audit"
	"github.com/arcfence/arcfence/internal/metrics"
	"github.com/arcfence/arcfence/policy"
)

// Names the stub serves. *.his.arc.azure.com is in the servers catalog;
// the trafficmanager / cloudapp names are not.
const (
	nameA        = "x.his.arc.azure.com."
	nameChain    = "gbl.his.arc.azure.com."
	nameTM       = "gbl-his.trafficmanager.net."
	nameEdge     = "edge.cloudapp.example.net."
	nameTXT      = "txt.his.arc.azure.com."
	nameBig      = "big.his.arc.azure.com."
	nameHuge     = "huge.his.arc.azure.com." // 700 A records: over maxCachedAnswer
	nameSlow     = "slow.his.arc.azure.com."
	nameServfail = "servfail.his.arc.azure.com."
	nameNX       = "nx.his.arc.azure.com."
	nameDenied   = "example.com."
	nameLoop     = "loop.his.arc.azure.com."   // A 127.0.0.1, for the proxy test
	nameOpt      = "opt.his.arc.azure.com."    // answer with an OPT carrying an EDE
	nameCookie   = "cookie.his.arc.azure.com." // answer with an OPT carrying a cookie and an EDE
	bigCount     = 120
	chainTTL     = 30
)

// stub is a miekg/dns upstream on 127.0.0.1:0 (UDP and TCP, same port).
type stub struct {
	addr     string
	udp, tcp *dns.Server
	mu       sync.Mutex
	counts   map[string]int // "name/type/net" -> queries seen
	lastDO   atomic.Bool
	slowStop chan struct{}
}

func (s *stub) count(name string, qtype uint16, netw string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.counts[strings.ToLower(name)+"/"+dns.TypeToString[qtype]+"/"+netw]
}

func (s *stub) total(name string, qtype uint16) int {
	return s.count(name, qtype, "udp") + s.count(name, qtype, "tcp")
}

func rr(t testing.TB, s string) dns.RR {
	t.Helper()
	r, err := dns.NewRR(s)
	if err != nil {
		t.Fatalf("NewRR %q: %v", s, err)
	}
	return r
}

func (s *stub) ServeDNS(w dns.ResponseWriter, r *dns.Msg) {
	netw := "udp"
	if _, ok := w.LocalAddr().(*net.TCPAddr); ok {
		netw = "tcp"
	}
	q := r.Question[0]
	s.mu.Lock()
	s.counts[strings.ToLower(q.Name)+"/"+dns.TypeToString[q.Qtype]+"/"+netw]++
	s.mu.Unlock()
	opt := r.IsEdns0()
	s.lastDO.Store(opt != nil && opt.Do())
	m := new(dns.Msg)
	m.SetReply(r)
	m.RecursionAvailable = true
	soa := mustRR("his.arc.azure.com. 60 IN SOA ns1.his.arc.azure.com. h.his.arc.azure.com. 1 3600 600 86400 5")
	switch strings.ToLower(q.Name) {
	case nameA:
		switch q.Qtype {
		case dns.TypeA:
			m.Answer = append(m.Answer, mustRR(q.Name+" 60 IN A 203.0.113.10"))
			if opt != nil && opt.Do() {
				m.Answer = append(m.Answer, mustRR(q.Name+" 60 IN RRSIG A 13 5 60 20300101000000 20200101000000 12345 his.arc.azure.com. c2lnbmF0dXJl"))
			}
		case dns.TypeAAAA:
			m.Answer = append(m.Answer, mustRR(q.Name+" 60 IN AAAA 2001:db8::10"))
		default:
			m.Ns = append(m.Ns, soa)
		}
	case nameChain, nameTM, nameEdge:
		chain := []dns.RR{
			mustRR(nameChain + " 30 IN CNAME " + nameTM),
			mustRR(nameTM + " 30 IN CNAME " + nameEdge),
			mustRR(nameEdge + " 30 IN A 203.0.113.20"),
		}
		for i, c := range chain {
			if strings.EqualFold(c.Header().Name, q.Name) {
				m.Answer = append(m.Answer, chain[i:]...)
			}
		}
	case nameLoop:
		if q.Qtype == dns.TypeA {
			m.Answer = append(m.Answer, mustRR(q.Name+" 60 IN A 127.0.0.1"))
		}
	case nameOpt, nameCookie:
		m.Answer = append(m.Answer, mustRR(q.Name+" 60 IN A 203.0.113.40"))
		o := &dns.OPT{Hdr: dns.RR_Header{Name: ".", Rrtype: dns.TypeOPT}}
		o.SetUDPSize(4096)
		if opt != nil && opt.Do() {
			o.SetDo()
		}
		if strings.EqualFold(q.Name, nameCookie) {
			o.Option = append(o.Option, &dns.EDNS0_COOKIE{Code: dns.EDNS0COOKIE, Cookie: "0102030405060708a1a2a3a4a5a6a7a8"})
		}
		o.Option = append(o.Option, &dns.EDNS0_EDE{InfoCode: dns.ExtendedErrorCodeStaleAnswer, ExtraText: "upstream"})
		m.Extra = append(m.Extra, o)
	case nameTXT:
		m.Answer = append(m.Answer, mustRR(q.Name+` 60 IN TXT "v=arc" "second string"`))
	case nameBig, nameHuge:
		n := bigCount
		if strings.EqualFold(q.Name, nameHuge) {
			n = 700
		}
		for i := 0; i < n; i++ {
			m.Answer = append(m.Answer, &dns.A{Hdr: dns.RR_Header{Name: q.Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 60},
				A: net.IPv4(10, 0, byte(i/250), byte(i%250+1))})
		}
	case nameSlow:
		select {
		case <-time.After(3 * time.Second):
		case <-s.slowStop:
		}
		m.Answer = append(m.Answer, mustRR(q.Name+" 60 IN A 203.0.113.30"))
	case nameServfail:
		m.Rcode = dns.RcodeServerFailure
	case nameNX:
		m.Rcode = dns.RcodeNameError
		m.Ns = append(m.Ns, soa)
	case nameDenied:
		m.Answer = append(m.Answer, mustRR(q.Name+" 60 IN A 203.0.113.99"))
	default:
		m.Rcode = dns.RcodeNameError
		m.Ns = append(m.Ns, soa)
	}
	if netw == "udp" {
		size := dns.MinMsgSize
		if opt != nil {
			size = int(opt.UDPSize())
		}
		m.Truncate(size)
	}
	w.WriteMsg(m)
}

func mustRR(s string) dns.RR {
	r, err := dns.NewRR(s)
	if err != nil {
		panic(err)
	}
	return r
}

// startStub starts the upstream stub; it is stopped when the test ends.
func startStub(t testing.TB) *stub {
	t.Helper()
	s := &stub{counts: map[string]int{}, slowStop: make(chan struct{})}
	var pc net.PacketConn
	var ln net.Listener
	for try := 0; ; try++ {
		var err error
		pc, err = net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ln, err = net.Listen("tcp", pc.LocalAddr().String())
		if err == nil {
			break
		}
		pc.Close()
		if try > 10 {
			t.Fatal(err)
		}
	}
	s.addr = pc.LocalAddr().String()
	started := make(chan struct{}, 2)
	notify := func() { started <- struct{}{} }
	s.udp = &dns.Server{PacketConn: pc, Handler: s, NotifyStartedFunc: notify}
	s.tcp = &dns.Server{Listener: ln, Handler: s, NotifyStartedFunc: notify}
	done := make(chan struct{}, 2)
	go func() { s.udp.ActivateAndServe(); done <- struct{}{} }()
	go func() { s.tcp.ActivateAndServe(); done <- struct{}{} }()
	for i := 0; i < 2; i++ {
		select {
		case <-started:
		case <-time.After(5 * time.Second):
			t.Fatal("stub did not start")
		}
	}
	t.Cleanup(func() {
		close(s.slowStop)
		s.udp.Shutdown()
		s.tcp.Shutdown()
		for i := 0; i < 2; i++ {
			<-done
		}
	})
	return s
}

// blackhole returns a loopback UDP address that never answers.
func blackhole(t testing.TB) string {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	return pc.LocalAddr().String()
}

// fakeClock is a settable clock for TTL tests.
type fakeClock struct{ ns atomic.Int64 }

func newFakeClock() *fakeClock {
	c := &fakeClock{}
	c.ns.Store(time.Date(2026, 11, 28, 8, 0, 0, 0, time.UTC).UnixNano())
	return c
}
func (c *fakeClock) Now() time.Time          { return time.Unix(0, c.ns.Load()) }
func (c *fakeClock) Advance(d time.Duration) { c.ns.Add(int64(d)) }

// syncBuffer is a goroutine-safe log sink.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func serversPolicy(t testing.TB) *policy.Policy {
	t.Helper()
	p, err := policy.Compile(policy.Config{Regions: []string{"eastus2"}, Offerings: []string{"servers"}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

type env struct {
	f       *Filter
	stub    *stub
	clock   *fakeClock
	logs    *syncBuffer
	metrics *metrics.Metrics
}

// startFilter starts a filter on 127.0.0.1:0 in front of a fresh stub
// (unless opts.Upstreams is set), with a non-folding audit log unless
// opts.Audit is set; it is shut down when the test ends.
func startFilter(t testing.TB, opts Options) *env {
	t.Helper()
	e := &env{clock: newFakeClock(), logs: &syncBuffer{}, metrics: metrics.New()}
	if opts.Upstreams == nil {
		e.stub = startStub(t)
		opts.Upstreams = []string{e.stub.addr}
	}
	if opts.Policy == nil {
		opts.Policy = serversPolicy(t)
	}
	opts.Listen = "127.0.0.1:0"
	if opts.Now == nil {
		opts.Now = e.clock.Now
	}
	logger := zerolog.New(zerolog.MultiLevelWriter(e.logs, zerolog.NewTestWriter(t)))
	if _, fuzz := t.(*testing.F); fuzz {
		// The fuzz target's goroutines may not log through the F.
		logger = zerolog.New(e.logs)
	}
	opts.Logger = logger
	if opts.Audit == nil {
		opts.Audit = audit.New(logger)
	}
	opts.Metrics = e.metrics
	if opts.Timeout == 0 {
		// Generous: answers are expected; tests of timeouts set their own.
		opts.Timeout = 2 * time.Second
	}
	f, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	e.f = f
	errc := make(chan error, 1)
	go func() { errc <- f.Run(context.Background()) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := f.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
		if err := <-errc; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	waitServing(t, f.Addr())
	return e
}

// waitServing waits (bounded) until the filter answers over UDP and TCP.
func waitServing(t testing.TB, addr string) {
	t.Helper()
	for _, netw := range []string{"udp", "tcp"} {
		c := &dns.Client{Net: netw, Timeout: 500 * time.Millisecond}
		m := new(dns.Msg)
		m.SetQuestion("ready.invalid.", dns.TypeA)
		var err error
		for i := 0; i < 20; i++ {
			if _, _, err = c.Exchange(m, addr); err == nil {
				break
			}
		}
		if err != nil {
			t.Fatalf("filter not serving over %s: %v", netw, err)
		}
	}
}

// ask sends one query and returns the answer.
func ask(t testing.TB, addr, netw string, m *dns.Msg) *dns.Msg {
	t.Helper()
	c := &dns.Client{Net: netw, Timeout: 5 * time.Second, UDPSize: 65535}
	r, _, err := c.Exchange(m, addr)
	if err != nil {
		t.Fatalf("query %s over %s: %v", m.Question[0].String(), netw, err)
	}
	if r.Id != m.Id {
		t.Fatalf("answer ID %d, want %d", r.Id, m.Id)
	}
	return r
}

func question(name string, qtype uint16, edns bool) *dns.Msg {
	m := new(dns.Msg)
	m.SetQuestion(name, qtype)
	if edns {
		m.SetEdns0(1232, false)
	}
	return m
}

func ede(m *dns.Msg) *dns.EDNS0_EDE {
	if o := m.IsEdns0(); o != nil {
		for _, opt := range o.Option {
			if e, ok := opt.(*dns.EDNS0_EDE); ok {
				return e
			}
		}
	}
	return nil
}

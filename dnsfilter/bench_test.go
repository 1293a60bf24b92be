package dnsfilter

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/rs/zerolog"

	"github.com/arcfence/arcfence/internal/audit"
	"github.com/arcfence/arcfence/internal/metrics"
	"github.com/arcfence/arcfence/policy"
)

// The query-load benchmarks send UDP queries over loopback from
// parallel closed-loop clients (each with its own socket and one query in
// flight) and report queries per second ("qps"). BenchmarkStubDirect is the
// bar: a bare miekg/dns server answering every A query, as the peer
// benchmark's dnsstub does. Run:
//
//	go test -run XXX -bench 'Stub|Filter' -benchtime 5s ./dnsfilter

// startBenchStub runs a minimal miekg/dns UDP server answering every A
// query with 127.0.0.1 (TTL 300), like ../shared/peer-bench/dnsstub.
func startBenchStub(b *testing.B) string {
	b.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	ip := net.IPv4(127, 0, 0, 1).To4()
	h := dns.HandlerFunc(func(w dns.ResponseWriter, r *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(r)
		m.Authoritative = true
		for _, q := range r.Question {
			if q.Qtype == dns.TypeA && q.Qclass == dns.ClassINET {
				m.Answer = append(m.Answer, &dns.A{Hdr: dns.RR_Header{Name: q.Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 300}, A: ip})
			}
		}
		w.WriteMsg(m)
	})
	started := make(chan struct{})
	srv := &dns.Server{PacketConn: pc, Handler: h, NotifyStartedFunc: func() { close(started) }}
	done := make(chan struct{})
	go func() { srv.ActivateAndServe(); close(done) }()
	<-started
	b.Cleanup(func() { srv.Shutdown(); <-done })
	return pc.LocalAddr().String()
}

func startBenchFilter(b *testing.B, upstream string, cacheSize int) *Filter {
	b.Helper()
	p, err := policy.Compile(policy.Config{Regions: []string{"eastus2"}, Offerings: []string{"servers"},
		Allow: []string{"*.allowed.test"}}, nil)
	if err != nil {
		b.Fatal(err)
	}
	// As in the peer benchmark: log level error (refusal lines off), the
	// folding audit log that `arcfence serve` uses.
	logger := zerolog.New(zerolog.Nop()).Level(zerolog.ErrorLevel)
	al := audit.NewWithOptions(logger, audit.Options{FoldWindow: time.Minute})
	f, err := New(Options{Listen: "127.0.0.1:0", Upstreams: []string{upstream}, Policy: p, CacheSize: cacheSize,
		Logger: logger, Audit: al, Metrics: metrics.New(), Timeout: 2 * time.Second})
	if err != nil {
		b.Fatal(err)
	}
	errc := make(chan error, 1)
	go func() { errc <- f.Run(context.Background()) }()
	b.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		f.Shutdown(ctx)
		<-errc
		al.Close()
	})
	waitServing(b, f.Addr())
	return f
}

// load runs closed-loop UDP clients against addr, cycling through names.
func load(b *testing.B, addr string, names []string) {
	b.Helper()
	queries := make([][]byte, len(names))
	for i, n := range names {
		m := new(dns.Msg)
		m.SetQuestion(n, dns.TypeA)
		queries[i], _ = m.Pack()
	}
	// Warm up (fills the cache where there is one).
	warm := &dns.Client{Timeout: 5 * time.Second}
	for _, n := range names {
		m := new(dns.Msg)
		m.SetQuestion(n, dns.TypeA)
		if _, _, err := warm.Exchange(m, addr); err != nil {
			b.Fatal(err)
		}
	}
	b.SetParallelism(16)
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		conn, err := net.Dial("udp", addr)
		if err != nil {
			b.Error(err)
			return
		}
		defer conn.Close()
		buf := make([]byte, 4096)
		q := make([]byte, 0, 512)
		i := 0
		for pb.Next() {
			q = append(q[:0], queries[i%len(queries)]...)
			i++
			id := uint16(i)
			q[0], q[1] = byte(id>>8), byte(id)
			conn.SetDeadline(time.Now().Add(5 * time.Second))
			if _, err := conn.Write(q); err != nil {
				b.Error(err)
				return
			}
			for {
				n, err := conn.Read(buf)
				if err != nil {
					b.Error(err)
					return
				}
				if n >= 12 && buf[0] == q[0] && buf[1] == q[1] {
					break
				}
			}
		}
	})
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "qps")
}

func benchNames(format string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = dns.Fqdn(sprintf(format, i))
	}
	return out
}

func sprintf(format string, i int) string {
	// format has one %d: avoid fmt in the hot setup loop's imports.
	for j := 0; j+1 < len(format); j++ {
		if format[j] == '%' && format[j+1] == 'd' {
			return format[:j] + itoa(i) + format[j+2:]
		}
	}
	return format
}

func itoa(i int) string {
	if i == 0 {
		return "0"
	}
	var b [20]byte
	n := len(b)
	for ; i > 0; i /= 10 {
		n--
		b[n] = byte('0' + i%10)
	}
	return string(b[n:])
}

// BenchmarkStubDirect is the bar: the bare miekg/dns stub.
func BenchmarkStubDirect(b *testing.B) {
	load(b, startBenchStub(b), benchNames("h%d.svc.allowed.test", 500))
}

// BenchmarkFilterDenied: names outside the allowlist, answered NXDOMAIN + EDE.
func BenchmarkFilterDenied(b *testing.B) {
	f := startBenchFilter(b, startBenchStub(b), 10000)
	load(b, f.Addr(), benchNames("h%d.blocked.test", 500))
}

// BenchmarkFilterCached: allowed names answered from the cache.
func BenchmarkFilterCached(b *testing.B) {
	f := startBenchFilter(b, startBenchStub(b), 10000)
	load(b, f.Addr(), benchNames("h%d.svc.allowed.test", 500))
}

// BenchmarkFilterUncached: allowed names forwarded to the stub (cache off).
func BenchmarkFilterUncached(b *testing.B) {
	f := startBenchFilter(b, startBenchStub(b), 0)
	load(b, f.Addr(), benchNames("h%d.svc.allowed.test", 500))
}

// nopWriter is a UDP ResponseWriter that discards answers.
type nopWriter struct{ captureWriter }

func (nopWriter) Write(b []byte) (int, error) { return len(b), nil }

// BenchmarkServeDNS measures the handler alone (no sockets): allocations
// and CPU per query for the denied and cached paths.
func BenchmarkServeDNS(b *testing.B) {
	f := startBenchFilter(b, startBenchStub(b), 10000)
	for _, c := range []struct{ name, qname string }{
		{"denied", "h1.blocked.test."},
		{"cached", "h1.svc.allowed.test."},
	} {
		b.Run(c.name, func(b *testing.B) {
			m := new(dns.Msg)
			m.SetQuestion(c.qname, dns.TypeA)
			f.ServeDNS(&nopWriter{}, m) // warm the cache
			w := &nopWriter{}
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				f.ServeDNS(w, m)
			}
		})
	}
}

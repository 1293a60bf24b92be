package dnsfilter

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/rs/zerolog"

	"github.com/arcfence/arcfence/internal/audit"
	"github.com/arcfence/arcfence/internal/metrics"
)

// startUDPOnlyStub starts a miekg/dns upstream on 127.0.0.1 that answers
// over UDP and refuses TCP: nothing listens on its port over TCP.
func startUDPOnlyStub(t *testing.T) string {
	t.Helper()
	var pc net.PacketConn
	for try := 0; ; try++ {
		var err error
		if pc, err = net.ListenPacket("udp", "127.0.0.1:0"); err != nil {
			t.Fatal(err)
		}
		// The TCP port of the same number must be free: claim it and let it go.
		if ln, err := net.Listen("tcp", pc.LocalAddr().String()); err == nil {
			ln.Close()
			break
		}
		pc.Close()
		if try > 10 {
			t.Fatal("no port free over both UDP and TCP")
		}
	}
	started := make(chan struct{})
	srv := &dns.Server{PacketConn: pc, NotifyStartedFunc: func() { close(started) },
		Handler: dns.HandlerFunc(func(w dns.ResponseWriter, r *dns.Msg) {
			m := new(dns.Msg)
			m.SetReply(r)
			m.Answer = append(m.Answer, mustRR(r.Question[0].Name+" 60 IN A 192.0.2.1"))
			_ = w.WriteMsg(m)
		})}
	done := make(chan struct{})
	go func() { _ = srv.ActivateAndServe(); close(done) }()
	select {
	case <-started:
	case <-time.After(5 * time.Second):
		t.Fatal("stub did not start")
	}
	t.Cleanup(func() { _ = srv.Shutdown(); <-done })
	return pc.LocalAddr().String()
}

// logLines parses the JSON lines of s whose msg is msg.
func logLines(t *testing.T, s, msg string) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(s), "\n") {
		var m map[string]any
		if l == "" {
			continue
		}
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("log line %q: %v", l, err)
		}
		if m["msg"] == msg {
			out = append(out, m)
		}
	}
	return out
}

// TestUpstreamRefusesTCPIsVisible: a TCP query whose upstream refuses TCP
// gets SERVFAIL, one warn line names the upstream, proto and cause at once,
// the repeats are folded into one summary line with their count, and every
// failure is counted in arcfence_dns_upstream_errors_total.
func TestUpstreamRefusesTCPIsVisible(t *testing.T) {
	up := startUDPOnlyStub(t)
	logs := &syncBuffer{}
	auditMetrics := metrics.New()
	// The folding log the daemon uses, at the daemon's default level.
	al := audit.NewWithOptions(zerolog.New(io.MultiWriter(logs, zerolog.NewTestWriter(t))).Level(zerolog.InfoLevel),
		audit.Options{FoldWindow: time.Hour, Metrics: auditMetrics})
	t.Cleanup(al.Close)
	e := startFilter(t, Options{Upstreams: []string{up}, Audit: al, Attempts: 1})
	f, m := e.f, e.metrics
	const tcpQueries = 3
	for i := range tcpQueries {
		if r := ask(t, f.Addr(), "tcp", question(fmt.Sprintf("q%d.his.arc.azure.com.", i), dns.TypeA, false)); r.Rcode != dns.RcodeServerFailure {
			t.Fatalf("TCP query %d: %s, want SERVFAIL", i, dns.RcodeToString[r.Rcode])
		}
	}
	// The same upstream answers over UDP: only its TCP is broken.
	if r := ask(t, f.Addr(), "udp", question(nameA, dns.TypeA, false)); r.Rcode != dns.RcodeSuccess || len(r.Answer) != 1 {
		t.Fatalf("UDP query: %s %v", dns.RcodeToString[r.Rcode], r.Answer)
	}
	tcpErrs := m.DNSUpstreamErrors.WithLabelValues(up, "tcp")
	if got := testutil.ToFloat64(tcpErrs); got != tcpQueries {
		t.Errorf("arcfence_dns_upstream_errors_total{proto=tcp} = %v, want %d", got, tcpQueries)
	}
	if got := testutil.ToFloat64(m.DNSUpstreamErrors.WithLabelValues(up, "udp")); got != 0 {
		t.Errorf("arcfence_dns_upstream_errors_total{proto=udp} = %v, want 0", got)
	}
	var first []map[string]any
	for i := 0; i < 200; i++ { // the folding log writes on its own goroutine
		if first = logLines(t, logs.String(), audit.MsgUpstreamFailed); len(first) > 0 {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if len(first) != 1 {
		t.Fatalf("%d upstream failure lines before the window ends, want 1:\n%s", len(first), logs.String())
	}
	want := map[string]any{"level": "warn", "component": "dns", "upstream": up, "proto": "tcp", "cause": "connection refused"}
	for k, v := range want {
		if first[0][k] != v {
			t.Errorf("first line %s = %v, want %v", k, first[0][k], v)
		}
	}
	if _, ok := first[0]["count"]; ok {
		t.Errorf("first line has a count: %v", first[0])
	}
	al.Close() // ends the fold window: the repeats' summary is written
	lines := logLines(t, logs.String(), audit.MsgUpstreamFailed)
	if len(lines) != 2 {
		t.Fatalf("%d upstream failure lines after Close, want 2 (first, summary):\n%s", len(lines), logs.String())
	}
	if lines[1]["count"] != float64(tcpQueries-1) || lines[1]["summary"] != true || lines[1]["upstream"] != up {
		t.Errorf("summary line %v, want count %d for %s", lines[1], tcpQueries-1, up)
	}
	// Refusal line counts are of refusal lines only (startFilter's readiness
	// probe is refused); upstream failure lines are not among them.
	byKind := map[string]float64{}
	for _, l := range logLines(t, logs.String(), audit.MsgDenied) {
		if l["summary"] == true {
			byKind["summary"]++
		} else {
			byKind["first"]++
		}
	}
	for _, kind := range []string{"first", "summary"} {
		if got := testutil.ToFloat64(auditMetrics.RefusalLines.WithLabelValues(kind)); got != byKind[kind] {
			t.Errorf("arcfence_refusal_log_lines_total{kind=%q} = %v, but %v such refusal lines were written", kind, got, byKind[kind])
		}
	}
}

func TestFailureCause(t *testing.T) {
	for _, c := range []struct {
		name string
		err  error
		want string
	}{
		{"timeout", errTimeout, "timeout"},
		{"mismatch", errMismatch, "answer does not match the question"},
		{"refused", &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}, "connection refused"},
		{"reset", &net.OpError{Op: "read", Net: "tcp", Err: os.NewSyscallError("read", syscall.ECONNRESET)}, "connection reset"},
		{"unreachable", &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.EHOSTUNREACH)}, "unreachable"},
		{"eof", fmt.Errorf("read: %w", io.ErrUnexpectedEOF), "connection closed before the answer"},
		{"other syscall", &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.EACCES)}, syscall.EACCES.Error()},
		{"unknown", errors.New("dial tcp 127.0.0.1:41234->127.0.0.1:53: odd"), "error"},
	} {
		t.Run(c.name, func(t *testing.T) {
			if got := failureCause(c.err); got != c.want {
				t.Errorf("failureCause(%v) = %q, want %q", c.err, got, c.want)
			}
		})
	}
}

package audit

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/rs/zerolog"
	"go.uber.org/goleak"

	"github.com/arcfence/arcfence/internal/metrics"
	"github.com/arcfence/arcfence/policy"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// lineBuf collects log output; safe for concurrent writes.
type lineBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (w *lineBuf) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

// lines returns the JSON lines written so far.
func (w *lineBuf) lines(t *testing.T) []map[string]any {
	t.Helper()
	w.mu.Lock()
	data := w.b.String()
	w.mu.Unlock()
	var out []map[string]any
	sc := bufio.NewScanner(strings.NewReader(data))
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("line %q: %v", sc.Text(), err)
		}
		out = append(out, m)
	}
	return out
}

func newLogger(w io.Writer) zerolog.Logger {
	return zerolog.New(w).With().Timestamp().Logger()
}

// stubHint admits kubernetes names through the kubernetes offering and
// westeurope names through a region.
func stubHint(_ string, d policy.Dest) policy.Hint {
	switch {
	case strings.HasSuffix(d.Host, ".dp.kubernetesconfiguration.azure.com"):
		return policy.Hint{Offering: "kubernetes", Section: "Azure Arc-enabled Kubernetes endpoints"}
	case strings.HasSuffix(d.Host, ".obo.arc.azure.com"):
		return policy.Hint{Offering: "kubernetes", Feature: "cluster-connect"}
	case strings.HasPrefix(d.Host, "westeurope."):
		return policy.Hint{Region: "westeurope"}
	}
	return policy.Hint{}
}

// total returns the number of refusals the lines stand for: 1 per first
// line, count per summary line.
func total(t *testing.T, lines []map[string]any) int64 {
	t.Helper()
	var n int64
	for _, l := range lines {
		if c, ok := l[FieldCount]; ok {
			n += int64(c.(float64))
		} else {
			n++
		}
	}
	return n
}

// TestRefusalLineFields asserts every field of a refusal line, for every
// reason, both components and both modes, through a folding Log and a
// plain one.
func TestRefusalLineFields(t *testing.T) {
	for _, folding := range []bool{true, false} {
		for _, comp := range []string{ComponentProxy, ComponentDNS} {
			for _, mode := range []string{"enforce", "learn"} {
				for _, r := range policy.Reasons() {
					name := fmt.Sprintf("fold=%v/%s/%s/%s", folding, comp, mode, r)
					t.Run(name, func(t *testing.T) {
						var buf lineBuf
						var l *Log
						if folding {
							l = NewWithOptions(newLogger(&buf), Options{FoldWindow: time.Minute, Hint: stubHint})
						} else {
							l = New(newLogger(&buf))
							l.hint = stubHint
						}
						proceeded := mode == "learn" && r.Learnable()
						ev := Event{Component: comp, Client: "10.1.2.3", Host: "westeurope.dp.kubernetesconfiguration.azure.com",
							Port: 443, Reason: r, Mode: mode, Proceeded: proceeded}
						if comp == ComponentDNS {
							ev.Port, ev.QType = 0, "AAAA"
						}
						l.Refused(ev)
						l.Close()
						lines := buf.lines(t)
						if len(lines) != 1 {
							t.Fatalf("got %d lines, want 1: %v", len(lines), lines)
						}
						got := lines[0]
						want := map[string]any{
							"level":        "warn",
							FieldMsg:       MsgDenied,
							FieldHost:      "westeurope.dp.kubernetesconfiguration.azure.com",
							FieldClient:    "10.1.2.3",
							FieldReason:    r.String(),
							FieldComponent: comp,
							FieldMode:      mode,
						}
						if proceeded {
							want[FieldMsg] = MsgWouldDeny
						}
						if comp == ComponentDNS {
							want[FieldQType] = "AAAA"
						} else {
							want[FieldPort] = float64(443)
						}
						if hinted(r) {
							want[FieldOfferingHint] = "kubernetes"
						}
						if _, ok := got["time"]; !ok {
							t.Errorf("no time field: %v", got)
						}
						delete(got, "time")
						if len(got) != len(want) {
							t.Errorf("fields %v, want %v", got, want)
						}
						for k, v := range want {
							if got[k] != v {
								t.Errorf("%s = %v, want %v", k, got[k], v)
							}
						}
					})
				}
			}
		}
	}
}

func TestHintFields(t *testing.T) {
	var buf lineBuf
	l := NewWithOptions(newLogger(&buf), Options{FoldWindow: time.Minute, Hint: stubHint})
	l.Refused(Event{Component: ComponentProxy, Client: "10.0.0.1", Host: "eastus2.obo.arc.azure.com", Port: 8084,
		Reason: policy.NotInAllowlist, Mode: "enforce"})
	l.Refused(Event{Component: ComponentProxy, Client: "10.0.0.1", Host: "westeurope.login.microsoft.com", Port: 443,
		Reason: policy.NotInAllowlist, Mode: "enforce"})
	l.Refused(Event{Component: ComponentProxy, Client: "10.0.0.1", Host: "example.org", Port: 443,
		Reason: policy.NotInAllowlist, Mode: "enforce"})
	l.Refused(Event{Component: ComponentProxy, Client: "10.0.0.1", Host: "microsoft.com", Port: 80, Path: "/x",
		Reason: policy.PathNotAllowed, Mode: "enforce"})
	l.Close()
	lines := buf.lines(t)
	if len(lines) != 4 {
		t.Fatalf("got %d lines", len(lines))
	}
	if lines[0][FieldOfferingHint] != "kubernetes" || lines[0][FieldFeatureHint] != "cluster-connect" {
		t.Errorf("obo line: %v", lines[0])
	}
	if lines[1][FieldRegionHint] != "westeurope" || lines[1][FieldOfferingHint] != nil {
		t.Errorf("region line: %v", lines[1])
	}
	for _, f := range []string{FieldOfferingHint, FieldFeatureHint, FieldRegionHint} {
		if _, ok := lines[2][f]; ok {
			t.Errorf("unknown destination has %s: %v", f, lines[2])
		}
	}
	if lines[3][FieldPath] != "/x" {
		t.Errorf("path line: %v", lines[3])
	}
}

// TestFoldTenThousand: 10,000 refusals of one destination within a second
// give a first line and one summary line whose count makes an exact total.
func TestFoldTenThousand(t *testing.T) {
	for _, mode := range []string{"enforce", "learn"} {
		t.Run(mode, func(t *testing.T) {
			var buf lineBuf
			l := NewWithOptions(newLogger(&buf), Options{FoldWindow: time.Minute})
			ev := Event{Component: ComponentProxy, Client: "10.0.0.7", Host: "retry.example.com", Port: 443,
				Reason: policy.NotInAllowlist, Mode: mode, Proceeded: mode == "learn"}
			const n, workers = 10000, 8
			var wg sync.WaitGroup
			for w := range workers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := w; i < n; i += workers {
						l.Refused(ev)
					}
				}()
			}
			wg.Wait()
			l.Close()
			lines := buf.lines(t)
			if len(lines) > 3 {
				t.Fatalf("%d lines for one destination", len(lines))
			}
			if got := total(t, lines); got != n {
				t.Fatalf("lines account for %d refusals, want %d: %v", got, n, lines)
			}
			if _, ok := lines[0][FieldCount]; ok {
				t.Errorf("first line has a count: %v", lines[0])
			}
			last := lines[len(lines)-1]
			if last[FieldCount] != float64(n-1) || last[FieldSummary] != true {
				t.Errorf("summary line: %v", last)
			}
			fs, err1 := time.Parse(time.RFC3339Nano, last[FieldFirstSeen].(string))
			ls, err2 := time.Parse(time.RFC3339Nano, last[FieldLastSeen].(string))
			if err1 != nil || err2 != nil || ls.Before(fs) {
				t.Errorf("first_seen/last_seen: %v %v %v", last, err1, err2)
			}
			for _, f := range []string{FieldHost, FieldPort, FieldClient, FieldReason, FieldComponent, FieldMode} {
				if last[f] != lines[0][f] {
					t.Errorf("summary %s = %v, first line has %v", f, last[f], lines[0][f])
				}
			}
		})
	}
}

// TestFoldWindowEnds: the summary is written when the window ends, without
// Close, and a refusal after it is logged at once again.
func TestFoldWindowEnds(t *testing.T) {
	var buf lineBuf
	l := NewWithOptions(newLogger(&buf), Options{FoldWindow: 50 * time.Millisecond})
	defer l.Close()
	ev := Event{Component: ComponentDNS, Client: "10.0.0.7", Host: "a.example.com", QType: "A",
		Reason: policy.NotInAllowlist, Mode: "enforce"}
	for range 100 {
		l.Refused(ev)
	}
	waitLines(t, &buf, 2)
	lines := buf.lines(t)
	if lines[1][FieldCount] != float64(99) {
		t.Fatalf("summary: %v", lines[1])
	}
	l.Refused(ev)
	waitLines(t, &buf, 3)
	if lines := buf.lines(t); lines[2][FieldCount] != nil {
		t.Fatalf("refusal after the window is not a first line: %v", lines[2])
	}
}

func waitLines(t *testing.T, buf *lineBuf, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for len(buf.lines(t)) < n {
		if time.Now().After(deadline) {
			t.Fatalf("waited for %d lines; have %v", n, buf.lines(t))
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestFoldKeys: client, host, port, qtype, reason, component and mode each
// make a key of their own.
func TestFoldKeys(t *testing.T) {
	var buf lineBuf
	l := NewWithOptions(newLogger(&buf), Options{FoldWindow: time.Minute})
	base := Event{Component: ComponentProxy, Client: "10.0.0.1", Host: "h.example.com", Port: 443,
		Reason: policy.NotInAllowlist, Mode: "enforce"}
	variants := []Event{base}
	for _, f := range []func(*Event){
		func(e *Event) { e.Client = "10.0.0.2" },
		func(e *Event) { e.Host = "i.example.com" },
		func(e *Event) { e.Port = 8443 },
		func(e *Event) { e.Reason = policy.PortNotAllowed },
		func(e *Event) { e.Component, e.Port, e.QType = ComponentDNS, 0, "A" },
		func(e *Event) { e.Component, e.Port, e.QType = ComponentDNS, 0, "AAAA" },
		func(e *Event) { e.Mode, e.Proceeded = "learn", true },
	} {
		e := base
		f(&e)
		variants = append(variants, e)
	}
	for range 3 {
		for _, v := range variants {
			l.Refused(v)
		}
	}
	l.Close()
	lines := buf.lines(t)
	if len(lines) != 2*len(variants) {
		t.Fatalf("%d lines for %d keys", len(lines), len(variants))
	}
	if got := total(t, lines); got != int64(3*len(variants)) {
		t.Fatalf("total %d", got)
	}
}

// TestMaxKeysFlushes: beyond MaxKeys the oldest key's summary is written
// early; memory stays bounded and no count is lost.
func TestMaxKeysFlushes(t *testing.T) {
	var buf lineBuf
	l := NewWithOptions(newLogger(&buf), Options{FoldWindow: time.Minute, MaxKeys: 10})
	const keys, repeats = 100, 5
	for i := range keys {
		for range repeats {
			l.Refused(Event{Component: ComponentProxy, Client: "10.0.0.1", Host: fmt.Sprintf("h%d.example.com", i),
				Port: 443, Reason: policy.NotInAllowlist, Mode: "enforce"})
		}
		l.mu.Lock()
		n, live := len(l.keys), len(l.fifo)-l.head
		l.mu.Unlock()
		if n > 10 || live != n {
			t.Fatalf("tracking %d keys (%d in fifo), cap 10", n, live)
		}
	}
	l.Close()
	lines := buf.lines(t)
	if got := total(t, lines); got != keys*repeats {
		t.Fatalf("total %d, want %d", got, keys*repeats)
	}
	perHost := map[string]int64{}
	for _, ln := range lines {
		if c, ok := ln[FieldCount]; ok {
			perHost[ln[FieldHost].(string)] += int64(c.(float64))
		} else {
			perHost[ln[FieldHost].(string)]++
		}
	}
	for h, n := range perHost {
		if n != repeats {
			t.Errorf("%s: %d", h, n)
		}
	}
}

// blockingWriter blocks every Write until released.
type blockingWriter struct {
	lineBuf
	release chan struct{}
}

func (w *blockingWriter) Write(p []byte) (int, error) {
	<-w.release
	return w.lineBuf.Write(p)
}

// TestSlowWriterNeverBlocksNorLoses: with the writer stuck, Refused
// returns, and once it is released every refusal is accounted for.
func TestSlowWriterNeverBlocksNorLoses(t *testing.T) {
	w := &blockingWriter{release: make(chan struct{})}
	l := NewWithOptions(newLogger(w), Options{FoldWindow: time.Minute, MaxKeys: 16, MaxPending: 8})
	const keys = 200
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range keys {
			for range 3 {
				l.Refused(Event{Component: ComponentProxy, Client: "10.0.0.1", Host: fmt.Sprintf("h%d.example.com", i),
					Port: 443, Reason: policy.NotInAllowlist, Mode: "enforce"})
			}
		}
	}()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		close(w.release)
		t.Fatal("Refused blocked on a stuck writer")
	}
	close(w.release)
	l.Close()
	lines := w.lines(t)
	if got := total(t, lines); got != keys*3 {
		t.Fatalf("total %d, want %d", got, keys*3)
	}
	unitemized := 0
	for _, ln := range lines {
		if ln[FieldUnitemized] == true {
			unitemized++
		}
	}
	if unitemized == 0 {
		t.Errorf("expected unitemized lines with a stuck writer")
	}
}

func TestLearned(t *testing.T) {
	var buf lineBuf
	l := NewWithOptions(newLogger(&buf), Options{FoldWindow: time.Minute, Hint: stubHint, MaxLearned: 2})
	k8s := Event{Component: ComponentProxy, Client: "10.0.0.1", Host: "eastus2.dp.kubernetesconfiguration.azure.com",
		Port: 443, Reason: policy.NotInAllowlist, Mode: "learn", Proceeded: true}
	for range 5 {
		l.Refused(k8s)
	}
	k8s.Client = "10.0.0.2"
	l.Refused(k8s)
	dnsEv := Event{Component: ComponentDNS, Client: "10.0.0.1", Host: "other.example.com", QType: "A",
		Reason: policy.NotInAllowlist, Mode: "learn", Proceeded: true}
	l.Refused(dnsEv)
	// Enforced in learn mode: not part of the learned set.
	l.Refused(Event{Component: ComponentProxy, Client: "10.0.0.1", Host: "10.9.9.9", Port: 443,
		Reason: policy.PrivateAddress, Mode: "learn"})
	// Over MaxLearned: counted as dropped.
	l.Refused(Event{Component: ComponentProxy, Client: "10.0.0.1", Host: "third.example.com", Port: 443,
		Reason: policy.NotInAllowlist, Mode: "learn", Proceeded: true})
	l.Close()
	got := l.Learned()
	if len(got.Destinations) != 2 || got.Dropped != 1 {
		t.Fatalf("learned %+v", got)
	}
	d := got.Destinations[0]
	if d.Host != "eastus2.dp.kubernetesconfiguration.azure.com" || d.Port != 443 || d.Count != 6 ||
		d.OfferingHint != "kubernetes" || len(d.Clients) != 2 || d.Reason != "not-in-allowlist" || d.Component != "proxy" {
		t.Errorf("kubernetes dest %+v", d)
	}
	if d := got.Destinations[1]; d.Host != "other.example.com" || d.QType != "A" || d.Count != 1 {
		t.Errorf("dns dest %+v", d)
	}
	if _, err := json.Marshal(got); err != nil {
		t.Fatal(err)
	}
	if n := len(New(zerolog.Nop()).Learned().Destinations); n != 0 {
		t.Errorf("plain Log learned %d", n)
	}
}

func TestRefusedAfterClose(t *testing.T) {
	var buf lineBuf
	l := NewWithOptions(newLogger(&buf), Options{FoldWindow: time.Minute})
	l.Close()
	l.Close()
	l.Refused(Event{Component: ComponentProxy, Client: "10.0.0.1", Host: "h.example.com", Port: 443,
		Reason: policy.NotInAllowlist, Mode: "enforce"})
	if n := len(buf.lines(t)); n != 1 {
		t.Fatalf("%d lines", n)
	}
}

func TestNoFolding(t *testing.T) {
	var buf lineBuf
	l := NewWithOptions(newLogger(&buf), Options{FoldWindow: 0})
	for range 5 {
		l.Refused(Event{Component: ComponentProxy, Client: "10.0.0.1", Host: "h.example.com", Port: 443,
			Reason: policy.NotInAllowlist, Mode: "enforce"})
	}
	l.Close()
	lines := buf.lines(t)
	if len(lines) != 5 || total(t, lines) != 5 {
		t.Fatalf("%v", lines)
	}
}

// BenchmarkRefusedRepeat is the hot path of a retrying client: a repeat
// folded into its key's window.
func BenchmarkRefusedRepeat(b *testing.B) {
	l := NewWithOptions(zerolog.New(io.Discard), Options{FoldWindow: time.Minute})
	defer l.Close()
	ev := Event{Component: ComponentProxy, Client: "10.0.0.1", Host: "h.example.com", Port: 443,
		Reason: policy.NotInAllowlist, Mode: "enforce"}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			l.Refused(ev)
		}
	})
}

// BenchmarkRefusedDistinct refuses a new destination each time (a scan),
// with the key cap forcing early summaries.
func BenchmarkRefusedDistinct(b *testing.B) {
	l := NewWithOptions(zerolog.New(io.Discard), Options{FoldWindow: time.Minute})
	defer l.Close()
	hosts := make([]string, 1<<16)
	for i := range hosts {
		hosts[i] = fmt.Sprintf("h%d.example.com", i)
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		l.Refused(Event{Component: ComponentProxy, Client: "10.0.0.1", Host: hosts[i&(len(hosts)-1)], Port: 443,
			Reason: policy.NotInAllowlist, Mode: "enforce"})
		i++
	}
}

// slowWriter takes 1ms per line, like a stderr pipe to a slow collector.
type slowWriter struct{}

func (slowWriter) Write(p []byte) (int, error) {
	time.Sleep(time.Millisecond)
	return len(p), nil
}

// BenchmarkRefusedSlowWriter: the caller's cost does not include the
// writer's (1ms per line): new destinations every call.
func BenchmarkRefusedSlowWriter(b *testing.B) {
	l := NewWithOptions(zerolog.New(slowWriter{}), Options{FoldWindow: time.Minute})
	hosts := make([]string, 1<<12)
	for i := range hosts {
		hosts[i] = fmt.Sprintf("h%d.example.com", i)
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		l.Refused(Event{Component: ComponentProxy, Client: "10.0.0.1", Host: hosts[i&(len(hosts)-1)], Port: 443,
			Reason: policy.NotInAllowlist, Mode: "enforce"})
		i++
	}
	b.StopTimer()
	// Stop the writer without waiting for thousands of 1ms lines to drain.
	l.mu.Lock()
	l.pending = l.pending[:0]
	clear(l.unitemized)
	clear(l.keys)
	l.fifo, l.head = nil, 0
	l.mu.Unlock()
	l.Close()
}

// BenchmarkRefusedPlain is the unfolded Log of New: the line written on the
// caller's goroutine, for comparison.
func BenchmarkRefusedPlain(b *testing.B) {
	l := New(zerolog.New(io.Discard))
	ev := Event{Component: ComponentProxy, Client: "10.0.0.1", Host: "h.example.com", Port: 443,
		Reason: policy.NotInAllowlist, Mode: "enforce"}
	b.ReportAllocs()
	for b.Loop() {
		l.Refused(ev)
	}
}

func TestPolicyHint(t *testing.T) {
	p, err := policy.Compile(policy.Config{Offerings: []string{"servers"}, Regions: []string{"eastus2"}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	h0 := PolicyHint(func(string) *policy.Policy { return p })
	h := func(d policy.Dest) policy.Hint { return h0("", d) }
	if got := h(policy.Dest{Host: "eastus2.dp.kubernetesconfiguration.azure.com", Port: 443}); got.Offering != "kubernetes" {
		t.Errorf("kubernetes name: %+v", got)
	}
	// A DNS refusal names no port.
	if got := h(policy.Dest{Host: "eastus2.dp.kubernetesconfiguration.azure.com"}); got.Offering != "kubernetes" {
		t.Errorf("kubernetes name without port: %+v", got)
	}
	if got := h(policy.Dest{Host: "example.org", Port: 443}); got.Found() {
		t.Errorf("unknown name: %+v", got)
	}
	if got := PolicyHint(func(string) *policy.Policy { return nil })("", policy.Dest{Host: "x.example", Port: 443}); got.Found() {
		t.Errorf("nil policy: %+v", got)
	}
}

// BenchmarkRefusedPlainSlowWriter is the unfolded, synchronous Log of New
// on the same 1ms-per-line writer: the caller pays the writer's cost (run
// it with a small -benchtime, e.g. 200x).
func BenchmarkRefusedPlainSlowWriter(b *testing.B) {
	l := New(zerolog.New(slowWriter{}))
	ev := Event{Component: ComponentProxy, Client: "10.0.0.1", Host: "h.example.com", Port: 443,
		Reason: policy.NotInAllowlist, Mode: "enforce"}
	for b.Loop() {
		l.Refused(ev)
	}
}

// TestConnFields asserts the conn fields: a first line carries its
// connection's id; a summary line carries the ids of the first and the
// last repeat it counts; a line without an id has neither field.
func TestConnFields(t *testing.T) {
	for _, folding := range []bool{true, false} {
		t.Run(fmt.Sprintf("fold=%v", folding), func(t *testing.T) {
			var buf lineBuf
			l := New(newLogger(&buf))
			if folding {
				l = NewWithOptions(newLogger(&buf), Options{FoldWindow: time.Hour})
			}
			ev := Event{Component: ComponentProxy, Client: "10.1.2.3", Host: "example.org", Port: 443,
				Reason: policy.NotInAllowlist, Mode: "enforce"}
			for _, c := range []string{"0000000a", "0000000b", "0000000c", "0000000d"} {
				ev.Conn = c
				l.Refused(ev)
			}
			ev.Conn, ev.Host = "", "other.example.org"
			l.Refused(ev)
			l.Close()
			lines := buf.lines(t)
			type conns struct{ conn, last any }
			var got []conns
			for _, ln := range lines {
				got = append(got, conns{ln[FieldConn], ln[FieldLastConn]})
			}
			want := []conns{{"0000000a", nil}, {"0000000b", nil}, {"0000000c", nil}, {"0000000d", nil}, {nil, nil}}
			if folding {
				// The first line at once, the other host's, then the summary at Close.
				want = []conns{{"0000000a", nil}, {nil, nil}, {"0000000b", "0000000d"}}
			}
			if fmt.Sprint(got) != fmt.Sprint(want) {
				t.Fatalf("conn fields %v, want %v (lines %v)", got, want, lines)
			}
			if folding && lines[2][FieldCount] != float64(3) {
				t.Fatalf("summary count %v, want 3", lines[2][FieldCount])
			}
		})
	}
}

// TestRevisionHintField: a refusal of a name that another catalog revision
// lists carries revision_hint, on the line and in the learned set.
func TestRevisionHintField(t *testing.T) {
	p, err := policy.Compile(policy.Config{Revision: policy.Revision202608, Offerings: []string{"servers"}, Regions: []string{"eastus2"}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	var buf lineBuf
	l := NewWithOptions(newLogger(&buf), Options{FoldWindow: time.Minute, Hint: PolicyHint(func(string) *policy.Policy { return p })})
	l.Refused(Event{Component: ComponentProxy, Client: "10.0.0.1", Host: "aka.ms", Port: 443,
		Reason: policy.NotInAllowlist, Mode: "learn", Proceeded: true})
	l.Refused(Event{Component: ComponentProxy, Client: "10.0.0.1", Host: "example.org", Port: 443,
		Reason: policy.NotInAllowlist, Mode: "learn", Proceeded: true})
	l.Close()
	lines := buf.lines(t)
	if len(lines) != 2 {
		t.Fatalf("got %d lines", len(lines))
	}
	if lines[0][FieldRevisionHint] != policy.Revision202401 {
		t.Errorf("aka.ms line: %v", lines[0])
	}
	if _, ok := lines[1][FieldRevisionHint]; ok {
		t.Errorf("a name no revision lists has %s: %v", FieldRevisionHint, lines[1])
	}
	got := l.Learned()
	if len(got.Destinations) != 2 || got.Destinations[0].Host != "aka.ms" || got.Destinations[0].RevisionHint != policy.Revision202401 ||
		got.Destinations[1].RevisionHint != "" {
		t.Errorf("learned %+v", got.Destinations)
	}
}

// TestUpstreamFailedFolds: upstream failures fold by (upstream, proto,
// cause) as refusals do — one line at once, then a summary with count —
// with their own fields and msg, apart from refusals with the same
// addresses, never counted as refusal lines nor learned; a plain Log writes
// each one directly.
func TestUpstreamFailedFolds(t *testing.T) {
	var buf lineBuf
	m := metrics.New()
	l := NewWithOptions(newLogger(&buf), Options{FoldWindow: time.Minute, Metrics: m, Hint: stubHint})
	refused := UpstreamFailure{Upstream: "10.0.0.53:53", Proto: "tcp", Cause: "connection refused"}
	keys := []UpstreamFailure{refused,
		{Upstream: "10.0.0.53:53", Proto: "udp", Cause: "connection refused"},
		{Upstream: "10.0.0.53:53", Proto: "tcp", Cause: "timeout"},
		{Upstream: "10.0.0.54:53", Proto: "tcp", Cause: "connection refused"},
	}
	for range 4 {
		for _, k := range keys {
			l.UpstreamFailed(k)
		}
	}
	// A refusal whose host and qtype spell the same strings is another key.
	l.Refused(Event{Component: ComponentDNS, Client: "10.0.0.1", Host: "10.0.0.53:53", QType: "tcp",
		Reason: policy.NotInAllowlist, Mode: "enforce"})
	l.Close()
	lines := buf.lines(t)
	var upstream, denied []map[string]any
	for _, ln := range lines {
		switch ln[FieldMsg] {
		case MsgUpstreamFailed:
			upstream = append(upstream, ln)
		case MsgDenied:
			denied = append(denied, ln)
		default:
			t.Errorf("unexpected line %v", ln)
		}
	}
	if len(upstream) != 2*len(keys) || total(t, upstream) != int64(4*len(keys)) {
		t.Fatalf("%d upstream lines standing for %d failures; want %d lines for %d", len(upstream), total(t, upstream), 2*len(keys), 4*len(keys))
	}
	first := upstream[0]
	want := map[string]any{"level": "warn", FieldUpstream: refused.Upstream, FieldProto: refused.Proto,
		FieldCause: refused.Cause, FieldComponent: ComponentDNS}
	for k, v := range want {
		if first[k] != v {
			t.Errorf("first line %s = %v, want %v", k, first[k], v)
		}
	}
	for _, absent := range []string{FieldHost, FieldQType, FieldClient, FieldReason, FieldMode, FieldCount, FieldOfferingHint} {
		if _, ok := first[absent]; ok {
			t.Errorf("upstream line has %s: %v", absent, first)
		}
	}
	if len(denied) != 1 || denied[0][FieldHost] != "10.0.0.53:53" {
		t.Errorf("refusal lines %v, want the one refusal", denied)
	}
	if got := testutil.ToFloat64(m.RefusalLines.WithLabelValues("first")); got != 1 {
		t.Errorf("refusal first lines counted %v, want 1 (upstream lines are not refusals)", got)
	}
	if got := testutil.ToFloat64(m.RefusalLines.WithLabelValues("summary")); got != 0 {
		t.Errorf("refusal summary lines counted %v, want 0", got)
	}

	var direct lineBuf
	p := New(newLogger(&direct))
	p.UpstreamFailed(refused)
	p.UpstreamFailed(refused)
	if got := direct.lines(t); len(got) != 2 || got[1][FieldMsg] != MsgUpstreamFailed || got[1][FieldCause] != refused.Cause {
		t.Errorf("plain Log lines %v, want 2 upstream failure lines", got)
	}
}

// TestUpstreamUnitemized: with the writer stuck, upstream failures are
// counted apart from refusals and written as their own unitemized line.
func TestUpstreamUnitemized(t *testing.T) {
	w := &blockingWriter{release: make(chan struct{})}
	l := NewWithOptions(newLogger(w), Options{FoldWindow: time.Minute, MaxPending: 2})
	const n = 50
	for i := range n {
		l.UpstreamFailed(UpstreamFailure{Upstream: fmt.Sprintf("10.0.%d.53:53", i), Proto: "udp", Cause: "timeout"})
		l.Refused(Event{Component: ComponentDNS, Client: "10.0.0.1", Host: fmt.Sprintf("h%d.example.com", i),
			QType: "A", Reason: policy.NotInAllowlist, Mode: "enforce"})
	}
	close(w.release)
	l.Close()
	var up, ref []map[string]any
	for _, ln := range w.lines(t) {
		if ln[FieldMsg] == MsgUpstreamFailed {
			up = append(up, ln)
		} else {
			ref = append(ref, ln)
		}
	}
	if total(t, up) != n || total(t, ref) != n {
		t.Fatalf("upstream lines stand for %d, refusal lines for %d; want %d each", total(t, up), total(t, ref), n)
	}
	found := false
	for _, ln := range up {
		if ln[FieldUnitemized] == true {
			found = true
			if _, ok := ln[FieldReason]; ok {
				t.Errorf("unitemized upstream line has a reason: %v", ln)
			}
		}
	}
	if !found {
		t.Error("no unitemized upstream line with a stuck writer")
	}
}

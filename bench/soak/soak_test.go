//go:build linux

// Package soak holds arcfence's soak and churn tests: many idle tunnels
// held and closed, tunnel churn and DNS query churn at the highest rate the
// machine allows, each checking that the proxy process's goroutines, file
// descriptors and heap come back to their baseline.
//
// The proxy (with the DNS filter) and the origins run in child processes
// (this test binary run again with SOAK_ROLE set), so that the
// measurements are the proxy's alone and each process stays within its
// descriptor limit. Plain `go test` runs a short form; `-tags soak` (see
// bench/soak.sh) the long one: 10,000 idle tunnels for 60 s, 60 s of
// tunnel churn, 60 s of DNS churn. Every address is loopback.
package soak

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"runtime"
	"runtime/debug"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/rs/zerolog"

	"github.com/arcfence/arcfence/dnsfilter"
	"github.com/arcfence/arcfence/internal/config"
	"github.com/arcfence/arcfence/proxy"
)

// originAddrs are the loopback addresses the origin child listens on, and
// clientAddrs the ones the test's clients dial from: spreading connections
// over several addresses keeps churn clear of ephemeral-port exhaustion.
var (
	originAddrs = []string{"127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5", "127.0.0.6", "127.0.0.7", "127.0.0.8", "127.0.0.9"}
	clientAddrs = []string{"127.0.1.1", "127.0.1.2", "127.0.1.3", "127.0.1.4", "127.0.1.5", "127.0.1.6", "127.0.1.7", "127.0.1.8"}
)

func TestMain(m *testing.M) {
	switch os.Getenv("SOAK_ROLE") {
	case "origin":
		os.Exit(runOrigin())
	case "proxy":
		os.Exit(runProxy())
	}
	os.Exit(m.Run())
}

// stats are one measurement of a child process, after two GCs.
type stats struct {
	goroutines int
	fds        int // all open descriptors
	sockets    int // descriptors that are sockets
	heap       uint64
}

func (s stats) String() string {
	return fmt.Sprintf("goroutines %d, fds %d (sockets %d), heap in use %.1f MiB",
		s.goroutines, s.fds, s.sockets, float64(s.heap)/(1<<20))
}

func measure() stats {
	runtime.GC()
	runtime.GC()
	debug.FreeOSMemory()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	st := stats{goroutines: runtime.NumGoroutine(), heap: ms.HeapInuse}
	ents, _ := os.ReadDir("/proc/self/fd")
	st.fds = len(ents)
	for _, e := range ents {
		if l, err := os.Readlink("/proc/self/fd/" + e.Name()); err == nil && strings.HasPrefix(l, "socket:") {
			st.sockets++
		}
	}
	return st
}

// serveCommands answers "measure" lines on stdin until EOF or "quit".
func serveCommands() {
	sc := bufio.NewScanner(os.Stdin)
	for sc.Scan() {
		switch sc.Text() {
		case "measure":
			s := measure()
			fmt.Printf("stats %d %d %d %d\n", s.goroutines, s.fds, s.sockets, s.heap)
		case "quit":
			return
		}
	}
}

// runOrigin is the origin child: a TCP echo server on each origin address
// and a DNS upstream that answers every A query.
func runOrigin() int {
	var addrs []string
	var lns []net.Listener
	for _, a := range originAddrs {
		ln, err := net.Listen("tcp", a+":0")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		lns = append(lns, ln)
		addrs = append(addrs, ln.Addr().String())
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				go func() {
					defer c.Close()
					buf := make([]byte, 512)
					_, _ = io.CopyBuffer(struct{ io.Writer }{c}, struct{ io.Reader }{c}, buf)
				}()
			}
		}()
	}
	pc, err := net.ListenPacket("udp", "127.0.0.2:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	srv := &dns.Server{PacketConn: pc, Handler: dns.HandlerFunc(func(w dns.ResponseWriter, q *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(q)
		if q.Question[0].Qtype == dns.TypeA {
			m.Answer = append(m.Answer, &dns.A{Hdr: dns.RR_Header{Name: q.Question[0].Name, Rrtype: dns.TypeA,
				Class: dns.ClassINET, Ttl: 30}, A: net.IPv4(203, 0, 113, 7)})
		}
		_ = w.WriteMsg(m)
	})}
	go func() { _ = srv.ActivateAndServe() }()
	fmt.Printf("ready %s %s\n", strings.Join(addrs, ","), pc.LocalAddr())
	serveCommands()
	_ = srv.Shutdown()
	for _, ln := range lns {
		ln.Close()
	}
	return 0
}

// runProxy is the proxy child: arcfence's proxy admitting the origins
// (address entries) and its DNS filter forwarding to the origin child's
// upstream, both with logs discarded.
func runProxy() int {
	origins := strings.Split(os.Getenv("SOAK_ORIGINS"), ",")
	cfg := config.Default()
	cfg.Allow = origins
	cfg.AllowRanges = []string{"127.0.0.0/8"}
	cfg.Limits.MaxTunnels = 1 << 20
	cfg.Limits.MaxTunnelsPerClient = 1 << 20
	rt, err := config.Build(&cfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	s, err := proxy.New(proxy.Options{Settings: rt.Proxy, Logger: zerolog.Nop()})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	served := make(chan error, 1)
	go func() { served <- s.Serve(ln) }()
	f, err := dnsfilter.New(dnsfilter.Options{Listen: "127.0.0.1:0", Upstreams: []string{os.Getenv("SOAK_UPSTREAM")},
		Policy: rt.Policy(), Logger: zerolog.Nop(), CacheSize: 1000})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	ran := make(chan error, 1)
	go func() { ran <- f.Run(context.Background()) }()
	fmt.Printf("ready %s %s\n", ln.Addr(), f.Addr())
	serveCommands()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_ = s.Shutdown(ctx)
	_ = f.Shutdown(ctx)
	<-served
	<-ran
	return 0
}

// child is a running child process.
type child struct {
	cmd   *exec.Cmd
	in    io.WriteCloser
	out   *bufio.Reader
	ready []string
	mu    sync.Mutex
}

func startChild(t *testing.T, role string, env ...string) *child {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(append(os.Environ(), "SOAK_ROLE="+role), env...)
	cmd.Stderr = os.Stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	outPipe, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	c := &child{cmd: cmd, in: in, out: bufio.NewReader(outPipe)}
	t.Cleanup(func() {
		_, _ = io.WriteString(in, "quit\n")
		_ = in.Close()
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("%s child: %v", role, err)
			}
		case <-time.After(30 * time.Second):
			_ = cmd.Process.Kill()
			<-done
			t.Errorf("%s child did not stop", role)
		}
	})
	line, err := c.readLine(30 * time.Second)
	if err != nil || !strings.HasPrefix(line, "ready ") {
		t.Fatalf("%s child: %q %v", role, line, err)
	}
	c.ready = strings.Fields(line)[1:]
	return c
}

func (c *child) readLine(d time.Duration) (string, error) {
	type res struct {
		s   string
		err error
	}
	ch := make(chan res, 1)
	go func() {
		s, err := c.out.ReadString('\n')
		ch <- res{strings.TrimSpace(s), err}
	}()
	select {
	case r := <-ch:
		return r.s, r.err
	case <-time.After(d):
		return "", fmt.Errorf("no answer from the child in %v", d)
	}
}

func (c *child) measure(t *testing.T) stats {
	t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, err := io.WriteString(c.in, "measure\n"); err != nil {
		t.Fatal(err)
	}
	line, err := c.readLine(30 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	var s stats
	if _, err := fmt.Sscanf(line, "stats %d %d %d %d", &s.goroutines, &s.fds, &s.sockets, &s.heap); err != nil {
		t.Fatalf("measure: %q: %v", line, err)
	}
	return s
}

// rig is the proxy child and the origin child.
type rig struct {
	origin, proxy *child
	origins       []string // origin addresses (host:port)
	proxyAddr     string
	dnsAddr       string
}

func newRig(t *testing.T) *rig {
	t.Helper()
	o := startChild(t, "origin")
	p := startChild(t, "proxy", "SOAK_ORIGINS="+o.ready[0], "SOAK_UPSTREAM="+o.ready[1])
	return &rig{origin: o, proxy: p, origins: strings.Split(o.ready[0], ","), proxyAddr: p.ready[0], dnsAddr: p.ready[1]}
}

// openTunnel opens one tunnel (CONNECT, 200, one byte echoed) from client
// address i to origin i.
func (r *rig) openTunnel(i int) (net.Conn, error) {
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(clientAddrs[i%len(clientAddrs)])}, Timeout: 10 * time.Second}
	c, err := d.Dial("tcp", r.proxyAddr)
	if err != nil {
		return nil, err
	}
	_ = c.SetDeadline(time.Now().Add(30 * time.Second))
	target := r.origins[i%len(r.origins)]
	if _, err := io.WriteString(c, "CONNECT "+target+" HTTP/1.1\r\nHost: "+target+"\r\n\r\n"); err != nil {
		c.Close()
		return nil, err
	}
	br := bufio.NewReaderSize(c, 64)
	resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodConnect})
	if err != nil {
		c.Close()
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		c.Close()
		return nil, fmt.Errorf("CONNECT %s: %s", target, resp.Status)
	}
	if _, err := c.Write([]byte{'p'}); err != nil {
		c.Close()
		return nil, err
	}
	if b, err := br.ReadByte(); err != nil || b != 'p' {
		c.Close()
		return nil, fmt.Errorf("echo: %v", err)
	}
	_ = c.SetDeadline(time.Time{})
	return c, nil
}

// openAll opens n tunnels with 32 workers; it fails the test when one
// cannot be opened (closing those that were).
func (r *rig) openAll(t *testing.T, n int) []net.Conn {
	t.Helper()
	conns := make([]net.Conn, n)
	var next atomic.Int64
	var wg sync.WaitGroup
	errc := make(chan error, 1)
	for w := 0; w < 32; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				c, err := r.openTunnel(i)
				if err != nil {
					select {
					case errc <- fmt.Errorf("tunnel %d: %w", i, err):
					default:
					}
					return
				}
				conns[i] = c
			}
		}()
	}
	wg.Wait()
	select {
	case err := <-errc:
		for _, c := range conns {
			if c != nil {
				c.Close()
			}
		}
		t.Fatal(err)
	default:
	}
	return conns
}

// backToBaseline waits (bounded) until the proxy child's goroutines and
// sockets are back within slack of base, and returns the last measurement.
// The splice pipe pool may keep up to 64 pipes (128 descriptors) for reuse:
// they count in fds, not in sockets.
func (r *rig) backToBaseline(t *testing.T, base stats, heapSlack uint64) stats {
	t.Helper()
	const goroutineSlack, socketSlack, pipeFDs = 4, 4, 2 * 64
	deadline := time.Now().Add(60 * time.Second)
	for {
		s := r.proxy.measure(t)
		ok := s.goroutines <= base.goroutines+goroutineSlack && s.sockets <= base.sockets+socketSlack &&
			s.fds <= base.fds+socketSlack+pipeFDs
		if ok && s.heap <= base.heap+heapSlack {
			return s
		}
		if time.Now().After(deadline) {
			t.Fatalf("proxy not back to its baseline:\n  baseline %v\n  now      %v", base, s)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// raiseNoFile raises this process's descriptor limit to its hard limit
// (children inherit it).
func raiseNoFile(t *testing.T) uint64 {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		t.Fatal(err)
	}
	rl.Cur = rl.Max
	_ = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &rl)
	_ = syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl)
	return rl.Cur
}

// report writes a figure to the test log and, when SOAK_REPORT names a
// file, appends it there.
func report(t *testing.T, format string, a ...any) {
	t.Helper()
	line := fmt.Sprintf(format, a...)
	t.Log(line)
	if f := os.Getenv("SOAK_REPORT"); f != "" {
		if fh, err := os.OpenFile(f, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644); err == nil {
			fmt.Fprintf(fh, "%s %s: %s\n", time.Now().UTC().Format(time.RFC3339), t.Name(), line)
			fh.Close()
		}
	}
}

// TestIdleTunnelsBackToBaseline holds many idle tunnels open, then closes
// them: the proxy's goroutines, sockets and heap come back to the baseline.
func TestIdleTunnelsBackToBaseline(t *testing.T) {
	limit := raiseNoFile(t)
	n := idleTunnels
	// The proxy child holds two sockets per tunnel.
	if max := int(limit-256) / 2; n > max {
		report(t, "descriptor limit %d: holding %d tunnels instead of %d", limit, max, n)
		n = max
	}
	r := newRig(t)
	base := r.tunnelBaseline(t)

	start := time.Now()
	conns := r.openAll(t, n)
	defer func() {
		for _, c := range conns {
			if c != nil {
				c.Close()
			}
		}
	}()
	report(t, "%d tunnels opened in %v (%.0f/s)", n, time.Since(start).Round(time.Millisecond), float64(n)/time.Since(start).Seconds())
	held := r.proxy.measure(t)
	report(t, "holding %d idle tunnels: %v; per tunnel %.2f goroutines, %.2f fds, %.1f KiB heap", n, held,
		float64(held.goroutines-base.goroutines)/float64(n), float64(held.fds-base.fds)/float64(n),
		float64(int64(held.heap)-int64(base.heap))/float64(n)/1024)
	time.Sleep(idleHold) // the hold itself; nothing is asserted on time
	after := r.proxy.measure(t)
	report(t, "after %v: %v", idleHold, after)
	// Every tunnel still works after the hold.
	for i, c := range conns {
		_ = c.SetDeadline(time.Now().Add(30 * time.Second))
		if _, err := c.Write([]byte{'q'}); err != nil {
			t.Fatalf("tunnel %d after the hold: %v", i, err)
		}
	}
	for i, c := range conns {
		b := make([]byte, 1)
		if _, err := io.ReadFull(c, b); err != nil || b[0] != 'q' {
			t.Fatalf("tunnel %d after the hold: %q %v", i, b, err)
		}
	}
	for i, c := range conns {
		c.Close()
		conns[i] = nil
	}
	// Goroutines and descriptors come back to the baseline. The heap does
	// not, by design of the runtime: it keeps a descriptor for every
	// goroutine that ever ran (about 0.4 KiB each, reused later), so after
	// a peak of 2n goroutines it stays higher. A leak shows as growth from
	// one cycle to the next: a second cycle (open all, close all) must
	// leave the heap where the first one did.
	first := r.backToBaseline(t, base, 1<<40)
	report(t, "after closing: %v", first)
	for _, c := range r.openAll(t, n) {
		c.Close()
	}
	second := r.backToBaseline(t, base, 1<<40)
	report(t, "after a second cycle of %d tunnels: %v", n, second)
	if second.heap > first.heap+heapSlack(first) {
		t.Errorf("heap grew from one cycle to the next: %v, then %v", first, second)
	}
}

// heapSlack is the heap growth over a baseline counted as noise.
func heapSlack(base stats) uint64 {
	s := base.heap / 2
	if s < 4<<20 {
		s = 4 << 20
	}
	return s
}

// tunnelBaseline warms the proxy up with 64 tunnels (pools, first-use
// allocations), then reports and returns its settled state.
func (r *rig) tunnelBaseline(t *testing.T) stats {
	t.Helper()
	for i := 0; i < 64; i++ {
		c, err := r.openTunnel(i)
		if err != nil {
			t.Fatal(err)
		}
		c.Close()
	}
	base := r.backToBaseline(t, r.proxy.measure(t), 1<<40)
	report(t, "baseline: %v", base)
	return base
}

// TestTunnelChurn opens, uses and closes tunnels as fast as the workers
// can for churnFor, then checks that nothing grew.
func TestTunnelChurn(t *testing.T) {
	raiseNoFile(t)
	r := newRig(t)
	base := r.tunnelBaseline(t)
	r.churn(t, base, "tunnels", func(int) (func(i int) error, func(), error) {
		return func(i int) error {
			c, err := r.openTunnel(i)
			if err != nil {
				return err
			}
			_ = c.Close()
			return nil
		}, func() {}, nil
	})
}

// churn runs churnWorkers workers for churnFor. Each gets its operation
// from newOp (and a cleanup for its end) and calls it with i = w,
// w+churnWorkers, ... until the time is up. The rate, four samples taken
// meanwhile and the state after are reported; a failed operation fails
// the test, and so does anything left above base.
func (r *rig) churn(t *testing.T, base stats, unit string, newOp func(w int) (op func(i int) error, cleanup func(), err error)) {
	t.Helper()
	var done, failed atomic.Int64
	var firstErr atomic.Value
	stop := make(chan struct{})
	var wg sync.WaitGroup
	start := time.Now()
	for w := 0; w < churnWorkers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			op, cleanup, err := newOp(w)
			if err != nil {
				failed.Add(1)
				firstErr.CompareAndSwap(nil, err.Error())
				return
			}
			defer cleanup()
			for i := w; ; i += churnWorkers {
				select {
				case <-stop:
					return
				default:
				}
				if err := op(i); err != nil {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, err.Error())
					continue
				}
				done.Add(1)
			}
		}(w)
	}
	var samples []stats
	for q := 1; q <= 4; q++ {
		time.Sleep(churnFor / 4)
		samples = append(samples, r.proxy.measure(t))
	}
	close(stop)
	wg.Wait()
	el := time.Since(start)
	report(t, "%d %s in %v: %.0f %s/s with %d workers, %d failed", done.Load(), unit, el.Round(time.Millisecond),
		float64(done.Load())/el.Seconds(), unit, churnWorkers, failed.Load())
	for i, s := range samples {
		report(t, "during churn, sample %d: %v", i+1, s)
	}
	if failed.Load() > 0 {
		t.Errorf("%d %s failed; first: %v", failed.Load(), unit, firstErr.Load())
	}
	end := r.backToBaseline(t, base, heapSlack(base))
	report(t, "after churn: %v", end)
}

// TestDNSChurn sends DNS queries (allowed names forwarded upstream, cached
// or not, and refused names) as fast as the workers can for churnFor, then
// checks that nothing grew.
func TestDNSChurn(t *testing.T) {
	raiseNoFile(t)
	r := newRig(t)
	ask := func(c *dns.Conn, name string) error {
		m := new(dns.Msg)
		m.SetQuestion(name, dns.TypeA)
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		if err := c.WriteMsg(m); err != nil {
			return err
		}
		for {
			a, err := c.ReadMsg()
			if err != nil {
				return err
			}
			if a.Id == m.Id {
				return nil
			}
		}
	}
	warm, err := dns.Dial("udp", r.dnsAddr)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 64; i++ {
		if err := ask(warm, fmt.Sprintf("w%d.his.arc.azure.com.", i)); err != nil {
			t.Fatal(err)
		}
	}
	warm.Close()
	base := r.backToBaseline(t, r.proxy.measure(t), 1<<40)
	report(t, "baseline: %v", base)
	r.churn(t, base, "queries", func(int) (func(i int) error, func(), error) {
		c, err := dns.Dial("udp", r.dnsAddr)
		if err != nil {
			return nil, nil, err
		}
		return func(i int) error {
			var name string
			switch i % 4 {
			case 0, 1: // mostly cached
				name = fmt.Sprintf("c%d.his.arc.azure.com.", i%500)
			case 2: // new names: forwarded (the cache keeps 1000)
				name = fmt.Sprintf("n%d.his.arc.azure.com.", i)
			default: // refused
				name = fmt.Sprintf("x%d.example.com.", i%5000)
			}
			return ask(c, name)
		}, func() { _ = c.Close() }, nil
	})
}

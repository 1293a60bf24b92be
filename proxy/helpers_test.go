package proxy

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/rs/zerolog"
	"go.uber.org/goleak"

	"github.com/arcfence/arcfence/internal/metrics"
	"github.com/arcfence/arcfence/internal/testpki"
	"github.com/arcfence/arcfence/policy"
)

// wait bounds every wait of these tests.
const wait = 10 * time.Second

// stubDNS answers A queries from a table; other names get NXDOMAIN, AAAA
// gets an empty answer, names in hang get their answer late.
type stubDNS struct {
	addr string
	mu   sync.Mutex
	a    map[string]string
	hang map[string]bool
}

func startDNS(t testing.TB, answers map[string]string) *stubDNS {
	t.Helper()
	sd := &stubDNS{a: map[string]string{}, hang: map[string]bool{}}
	for k, v := range answers {
		sd.a[dns.Fqdn(k)] = v
	}
	sd.addr = serveDNSStub(t, sd.serve)
	return sd
}

// serveDNSStub serves h on a UDP loopback port until the test ends and
// returns the address.
func serveDNSStub(t testing.TB, h dns.HandlerFunc) string {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	started := make(chan struct{})
	srv := &dns.Server{PacketConn: pc, Handler: h, NotifyStartedFunc: func() { close(started) }}
	go func() { _ = srv.ActivateAndServe() }()
	select {
	case <-started:
	case <-time.After(wait):
		t.Fatal("dns stub did not start")
	}
	t.Cleanup(func() { _ = srv.Shutdown() })
	return pc.LocalAddr().String()
}

func (sd *stubDNS) set(name, ip string) {
	sd.mu.Lock()
	sd.a[dns.Fqdn(name)] = ip
	sd.mu.Unlock()
}

func (sd *stubDNS) serve(w dns.ResponseWriter, q *dns.Msg) {
	m := new(dns.Msg)
	m.SetReply(q)
	name := q.Question[0].Name
	sd.mu.Lock()
	ip, ok := sd.a[strings.ToLower(name)]
	hang := sd.hang[strings.ToLower(name)]
	sd.mu.Unlock()
	if hang {
		// Answer late: after the proxy's dial timeout, soon enough for the
		// resolver's own goroutines to end before the leak check.
		time.Sleep(600 * time.Millisecond)
		m.Rcode = dns.RcodeNameError
		_ = w.WriteMsg(m)
		return
	}
	switch {
	case !ok:
		m.Rcode = dns.RcodeNameError
	case q.Question[0].Qtype == dns.TypeA:
		rr, _ := dns.NewRR(fmt.Sprintf("%s 60 IN A %s", name, ip))
		m.Answer = append(m.Answer, rr)
	}
	_ = w.WriteMsg(m)
}

// logBuf collects log lines.
type logBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

// lines returns the JSON lines logged so far.
func (l *logBuf) lines() []map[string]any {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []map[string]any
	for _, ln := range strings.Split(l.b.String(), "\n") {
		if ln == "" {
			continue
		}
		var m map[string]any
		if json.Unmarshal([]byte(ln), &m) == nil {
			out = append(out, m)
		}
	}
	return out
}

// find waits (bounded) for a line whose fields include all of want.
func (l *logBuf) find(t testing.TB, want map[string]any) map[string]any {
	t.Helper()
	deadline := time.Now().Add(wait)
	for {
		for _, m := range l.lines() {
			ok := true
			for k, v := range want {
				if fmt.Sprint(m[k]) != fmt.Sprint(v) {
					ok = false
					break
				}
			}
			if ok {
				return m
			}
		}
		if time.Now().After(deadline) {
			l.mu.Lock()
			all := l.b.String()
			l.mu.Unlock()
			t.Fatalf("no log line with %v in:\n%s", want, all)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// env is a proxy on loopback with a stub resolver and origins.
type env struct {
	t      testing.TB
	s      *Server
	addr   string // proxy address
	url    *url.URL
	ca     *testpki.CA
	dns    *stubDNS
	logs   *logBuf
	cfg    envConfig
	m      *metrics.Metrics
	mu     sync.Mutex
	remap  map[netip.AddrPort]netip.AddrPort
	delay  time.Duration // held before every dial (e.mu)
	served chan error
}

// envConfig is what a test may set before its proxy starts: the policy's
// keys, the proxy's settings, and the default profile's mode and clients.
type envConfig struct {
	policy.Config
	Settings
	Mode    policy.Mode
	Clients []netip.Prefix
	// Named are profiles before the default: each its policy keys, mode
	// and clients.
	Named []namedProfile
}

// namedProfile is one named profile of a test's settings.
type namedProfile struct {
	Name    string
	Config  policy.Config
	Mode    policy.Mode
	Clients []netip.Prefix
}

// prefixes parses CIDRs for a test's settings.
func prefixes(cidrs ...string) []netip.Prefix {
	out := make([]netip.Prefix, len(cidrs))
	for i, c := range cidrs {
		out[i] = netip.MustParsePrefix(c)
	}
	return out
}

// testConfig is the base configuration of these tests (the shipped
// limits, the test's policy).
func testConfig() envConfig {
	return envConfig{
		Config: policy.Config{
			Revision:  policy.Revision202401, // its microsoft.com/pkiops/certs row is the path row the tests drive
			Regions:   []string{"eastus2"},
			Offerings: []string{policy.OfferingServers},
			Features:  []string{policy.FeatureESU},
			Allow:     []string{"raw.arcfence.test", "plain.arcfence.test:80"},
			Deny:      []string{"login.windows.net"},
		},
		Settings: Settings{
			AllowRanges: prefixes("127.0.0.0/8"),
			Limits: Limits{
				HeaderTimeout:       10 * time.Second,
				MaxHeaderBytes:      32 << 10,
				DialTimeout:         10 * time.Second,
				MaxTunnels:          50000,
				MaxTunnelsPerClient: 5000,
			},
			TunnelsInfo: true,
		},
		Clients: prefixes("127.0.0.0/8", "::1/128"),
	}
}

// settings compiles c's policy into its Settings.
func (c envConfig) settings(t testing.TB) Settings {
	t.Helper()
	pol, err := policy.Compile(c.Config, nil)
	if err != nil {
		t.Fatal(err)
	}
	st := c.Settings
	named := make([]policy.ProfileClients, 0, len(c.Named))
	for _, n := range c.Named {
		np, err := policy.Compile(n.Config, nil)
		if err != nil {
			t.Fatal(err)
		}
		named = append(named, policy.ProfileClients{Profile: &policy.Profile{Name: n.Name, Policy: np, Mode: n.Mode}, Clients: n.Clients})
	}
	st.Profiles = policy.NewProfiles(&policy.Profile{Name: policy.DefaultProfile, Policy: pol, Mode: c.Mode}, c.Clients, named...)
	return st
}

// names the stub resolver knows, each on its own loopback address.
var testNames = map[string]string{
	"management.azure.com":      "127.0.0.11",
	"login.microsoftonline.com": "127.0.0.12",
	"login.windows.net":         "127.0.0.13",
	"raw.arcfence.test":         "127.0.0.14",
	"plain.arcfence.test":       "127.0.0.15",
	"microsoft.com":             "127.0.0.16",
	"private.his.arc.azure.com": "10.1.2.3",
	"meta.his.arc.azure.com":    "169.254.169.254",
	"gbl.his.arc.azure.com":     "127.0.0.17",
	"refused.his.arc.azure.com": "127.0.0.18",
}

func newEnv(t testing.TB, mod func(*envConfig)) *env {
	t.Helper()
	e := &env{t: t, ca: testpki.NewCA(t), logs: &logBuf{}, remap: map[netip.AddrPort]netip.AddrPort{}}
	e.dns = startDNS(t, testNames)
	e.cfg = testConfig()
	e.cfg.Resolver = e.dns.addr
	if mod != nil {
		mod(&e.cfg)
	}
	log := zerolog.New(e.logs).Level(zerolog.DebugLevel)
	e.m = metrics.New()
	s, err := New(Options{Settings: e.cfg.settings(t), Logger: log, Metrics: e.m})
	if err != nil {
		t.Fatal(err)
	}
	s.dialHook = func(ap netip.AddrPort) netip.AddrPort {
		e.mu.Lock()
		to, ok := e.remap[ap]
		delay := e.delay
		e.mu.Unlock()
		time.Sleep(delay)
		if ok {
			return to
		}
		return ap
	}
	e.s = s
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e.addr = ln.Addr().String()
	e.url = &url.URL{Scheme: "http", Host: e.addr}
	e.served = make(chan error, 1)
	go func() { e.served <- s.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), wait)
		defer cancel()
		_ = s.Shutdown(ctx)
		select {
		case err := <-e.served:
			if err != nil {
				t.Errorf("Serve: %v", err)
			}
		case <-time.After(wait):
			t.Error("Serve did not return")
		}
		if t.Failed() {
			e.logs.mu.Lock()
			t.Logf("proxy log:\n%s", e.logs.b.String())
			e.logs.mu.Unlock()
		}
	})
	return e
}

// route makes dials to name's address on port go to the listener at to.
func (e *env) route(name string, port int, to string) {
	ip := netip.MustParseAddr(testNames[name])
	e.mu.Lock()
	e.remap[netip.AddrPortFrom(ip, uint16(port))] = netip.MustParseAddrPort(to)
	e.mu.Unlock()
}

// listenOn listens on name's loopback address, an ephemeral port.
func (e *env) listenOn(name string) net.Listener {
	e.t.Helper()
	ln, err := net.Listen("tcp", net.JoinHostPort(testNames[name], "0"))
	if err != nil {
		e.t.Fatal(err)
	}
	return ln
}

// tlsOrigin starts an HTTPS origin (HTTP/1.1 and HTTP/2) for name, reached
// on port 443 through the proxy.
func (e *env) tlsOrigin(name string, h http.Handler) {
	e.t.Helper()
	ln := e.listenOn(name)
	cert := e.ca.Leaf(e.t, name)
	srv := &http.Server{Handler: h, TLSConfig: &tls.Config{Certificates: []tls.Certificate{cert}, NextProtos: []string{"h2", "http/1.1"}}}
	go func() { _ = srv.ServeTLS(ln, "", "") }()
	e.t.Cleanup(func() { _ = srv.Close() })
	e.route(name, 443, ln.Addr().String())
}

// plainOrigin starts an HTTP origin for name on port 80.
func (e *env) plainOrigin(name string, h http.Handler) {
	e.t.Helper()
	ln := e.listenOn(name)
	srv := &http.Server{Handler: h}
	go func() { _ = srv.Serve(ln) }()
	e.t.Cleanup(func() { _ = srv.Close() })
	e.route(name, 80, ln.Addr().String())
}

// rawOrigin accepts TCP connections for name on port and hands each to fn.
func (e *env) rawOrigin(name string, port int, fn func(net.Conn)) {
	e.t.Helper()
	ln := e.listenOn(name)
	var wg sync.WaitGroup
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				fn(c)
			}()
		}
	}()
	e.t.Cleanup(func() { _ = ln.Close(); wg.Wait() })
	e.route(name, port, ln.Addr().String())
}

// client returns an HTTP client through the proxy trusting the test CA.
func (e *env) client(h2 bool) *http.Client {
	tr := &http.Transport{
		Proxy:             http.ProxyURL(e.url),
		TLSClientConfig:   &tls.Config{RootCAs: e.ca.Pool},
		ForceAttemptHTTP2: h2,
	}
	if !h2 {
		tr.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{}
	}
	e.t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: wait}
}

// dialProxy opens a raw connection to the proxy.
func (e *env) dialProxy() net.Conn {
	e.t.Helper()
	c, err := net.DialTimeout("tcp", e.addr, wait)
	if err != nil {
		e.t.Fatal(err)
	}
	_ = c.SetDeadline(time.Now().Add(wait))
	e.t.Cleanup(func() { _ = c.Close() })
	return c
}

// connect sends a CONNECT and returns the connection with the response.
func (e *env) connect(target string) (net.Conn, *bufio.Reader, *http.Response) {
	e.t.Helper()
	c := e.dialProxy()
	fmt.Fprintf(c, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n", target, target)
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodConnect})
	if err != nil {
		e.t.Fatalf("CONNECT %s: %v", target, err)
	}
	return c, br, resp
}

// tunnel CONNECTs to target and fails unless the answer is 200.
func (e *env) tunnel(target string) net.Conn {
	e.t.Helper()
	c, br, resp := e.connect(target)
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		e.t.Fatalf("CONNECT %s: %s %s", target, resp.Status, b)
	}
	return &bufConn{Conn: c, r: br}
}

// bufConn reads through the reader that parsed the proxy's answer.
type bufConn struct {
	net.Conn
	r *bufio.Reader
}

func (b *bufConn) Read(p []byte) (int, error) { return b.r.Read(p) }

func (b *bufConn) CloseWrite() error { return b.Conn.(*net.TCPConn).CloseWrite() }

// echo copies everything back, through a user-space buffer (io.Copy
// between TCP sockets would splice and hold a pipe, which would blur the
// descriptor count of TestIdleTunnelCost).
func echo(c net.Conn) {
	buf := make([]byte, 32<<10)
	_, _ = io.CopyBuffer(struct{ io.Writer }{c}, struct{ io.Reader }{c}, buf)
}

// leakCheck verifies, after every cleanup of the test, that no goroutine
// started during the test is left.
func leakCheck(t *testing.T) {
	opt := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, opt) })
}

// readAllBounded reads until EOF or error.
func readAllBounded(c net.Conn) ([]byte, error) {
	_ = c.SetReadDeadline(time.Now().Add(wait))
	return io.ReadAll(c)
}

package check

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/arcfence/arcfence/internal/testpki"
	"github.com/arcfence/arcfence/policy"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// lab is a set of loopback origins posing as Arc endpoints.
type lab struct {
	t      *testing.T
	ca     *testpki.CA
	dialer *testpki.Dialer
	wg     sync.WaitGroup
	lns    []net.Listener
}

func newLab(t *testing.T) *lab {
	l := &lab{t: t, ca: testpki.NewCA(t), dialer: testpki.NewDialer()}
	t.Cleanup(l.close)
	return l
}

func (l *lab) close() {
	for _, ln := range l.lns {
		ln.Close()
	}
	l.wg.Wait()
}

func (l *lab) listen() net.Listener {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		l.t.Fatal(err)
	}
	l.lns = append(l.lns, ln)
	return ln
}

// serve accepts connections on ln and runs h on each until ln closes.
func (l *lab) serve(ln net.Listener, h func(net.Conn)) {
	l.wg.Add(1)
	go func() {
		defer l.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			l.wg.Add(1)
			go func() {
				defer l.wg.Done()
				defer c.Close()
				h(c)
			}()
		}
	}()
}

// tlsOrigin maps name:port to a TLS server presenting cfg's certificate.
func (l *lab) tlsOrigin(name string, port int, cfg *tls.Config) {
	ln := l.listen()
	l.serve(ln, func(c net.Conn) {
		c.SetDeadline(time.Now().Add(10 * time.Second))
		tc := tls.Server(c, cfg)
		if tc.Handshake() == nil {
			io.Copy(io.Discard, tc) // until the client closes
		}
	})
	l.dialer.Map(policy.FormatHostPort(name, port), ln.Addr().String())
}

// refused maps name:port to a loopback port where nothing listens.
func (l *lab) refused(name string, port int) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		l.t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	l.dialer.Map(policy.FormatHostPort(name, port), addr)
}

// silent maps name:port to a listener that accepts and never answers.
func (l *lab) silent(name string, port int, release chan struct{}) {
	ln := l.listen()
	l.serve(ln, func(c net.Conn) {
		select {
		case <-release:
		case <-time.After(30 * time.Second):
		}
	})
	l.dialer.Map(policy.FormatHostPort(name, port), ln.Addr().String())
}

// httpOrigin maps name:80 to a plain HTTP server answering 200 under /pkiops/certs, 404 elsewhere.
func (l *lab) httpOrigin(name string) *httptest.Server {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodHead {
			http.Error(w, "HEAD expected", http.StatusMethodNotAllowed)
			return
		}
		if strings.HasPrefix(r.URL.Path, "/pkiops/certs") {
			return
		}
		http.NotFound(w, r)
	}))
	l.t.Cleanup(srv.Close)
	l.dialer.Map(name+":80", srv.Listener.Addr().String())
	return srv
}

func rules() []policy.Rule {
	c := policy.SourceCatalog
	return []policy.Rule{
		{Pattern: "management.azure.com", Ports: []int{443}, Scheme: "https", Offering: "servers", When: "connect", Source: c},
		{Pattern: "login.microsoftonline.com", Ports: []int{443}, Scheme: "https", Offering: "servers", When: "always", Source: c},
		{Pattern: "pas.windows.net", Ports: []int{443}, Scheme: "https", Offering: "servers", When: "always", Source: c},
		{Pattern: "*.his.arc.azure.com", Ports: []int{443}, Scheme: "https", Offering: "servers", When: "always", Source: c},
		{Pattern: "azgn*.servicebus.windows.net", Ports: []int{443}, Scheme: "https", Offering: "servers", When: "always", Source: c},
		{Pattern: "dc.services.visualstudio.com", Ports: []int{443}, Scheme: "https", Offering: "servers", When: "optional", Source: c},
		{Pattern: "eastus2.obo.arc.azure.com", Ports: []int{8084}, Scheme: "https", Offering: "kubernetes", Feature: "cluster-connect", When: "always", Source: c},
		{Pattern: "microsoft.com", Path: "/pkiops/certs", Ports: []int{443, 80}, Scheme: "https", Offering: "esu", When: "always", Source: c},
		{Pattern: "guestnotificationservice.azure.com", Ports: []int{443}, Scheme: "https", Offering: "servers", When: "always", Source: c},
	}
}

func TestTargets(t *testing.T) {
	targets, unchecked, err := Targets(rules(), []string{"EastUS2.his.arc.azure.com."})
	if err != nil {
		t.Fatal(err)
	}
	var eps []string
	for _, tg := range targets {
		eps = append(eps, tg.Endpoint())
	}
	want := "management.azure.com:443 login.microsoftonline.com:443 pas.windows.net:443 eastus2.his.arc.azure.com:443 " +
		"dc.services.visualstudio.com:443 eastus2.obo.arc.azure.com:8084 microsoft.com:443 microsoft.com:80/pkiops/certs " +
		"guestnotificationservice.azure.com:443"
	if got := strings.Join(eps, " "); got != want {
		t.Fatalf("targets:\n%s\nwant\n%s", got, want)
	}
	if len(unchecked) != 1 || unchecked[0].Error != "not checkable: azgn*.servicebus.windows.net" || unchecked[0].Checked {
		t.Fatalf("unchecked = %+v", unchecked)
	}
	if targets[4].Required || !targets[0].Required {
		t.Fatal("optional row marked required, or the reverse")
	}
	if targets[3].Rule != "*.his.arc.azure.com:443" || targets[3].Pattern != "*.his.arc.azure.com" {
		t.Fatalf("sample target keeps its row: %+v", targets[3])
	}

	if _, _, err := Targets(rules(), []string{"evil.example.com"}); err == nil || !strings.Contains(err.Error(), "matches no wildcard row") {
		t.Fatalf("unmatched sample: err = %v", err)
	}
	if _, _, err := Targets(rules(), []string{"bad_name!"}); err == nil {
		t.Fatal("invalid sample accepted")
	}
}

// setup builds the lab used by the direct and proxied checks: a mix of
// reachable, refused, timing-out and wrong-certificate endpoints.
func setup(t *testing.T) (*lab, []Target, chan struct{}) {
	l := newLab(t)
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	l.tlsOrigin("management.azure.com", 443, l.ca.ServerConfig(t, "management.azure.com"))
	l.tlsOrigin("login.microsoftonline.com", 443, l.ca.ServerConfig(t, "login.microsoftonline.com", "login.windows.net"))
	l.tlsOrigin("eastus2.his.arc.azure.com", 443, l.ca.ServerConfig(t, "*.his.arc.azure.com"))
	l.tlsOrigin("eastus2.obo.arc.azure.com", 8084, l.ca.ServerConfig(t, "eastus2.obo.arc.azure.com"))
	l.tlsOrigin("microsoft.com", 443, l.ca.ServerConfig(t, "microsoft.com"))
	// wrong name, and a certificate from a CA the checker does not trust
	l.tlsOrigin("pas.windows.net", 443, l.ca.ServerConfig(t, "wrong.example.com"))
	l.tlsOrigin("guestnotificationservice.azure.com", 443, testpki.NewCA(t).ServerConfig(t, "guestnotificationservice.azure.com"))
	l.refused("dc.services.visualstudio.com", 443)
	l.httpOrigin("microsoft.com")
	// a timing-out endpoint: accepts TCP, never answers the ClientHello
	l.silent("slow.his.arc.azure.com", 443, release)
	targets, _, err := Targets(rules(), []string{"eastus2.his.arc.azure.com"})
	if err != nil {
		t.Fatal(err)
	}
	return l, targets, release
}

// slowTarget is the endpoint that never answers the ClientHello.
func slowTarget(t *testing.T) Target {
	slow, _, err := Targets(rules()[3:4], []string{"slow.his.arc.azure.com"})
	if err != nil {
		t.Fatal(err)
	}
	return slow[0]
}

// Generous per-endpoint timeout for the answering endpoints (the race
// detector on a busy machine makes handshakes slow); only the silent
// endpoint is checked with a short one, so that it times out.
const (
	longTimeout  = 60 * time.Second
	shortTimeout = time.Second
)

// runAll checks targets with the long timeout and the silent endpoint with
// the short one, and returns the results together.
func runAll(t *testing.T, c Checker, targets []Target) []Result {
	c.Timeout = longTimeout
	results := c.Run(context.Background(), targets)
	c.Timeout = shortTimeout
	return append(results, c.Check(context.Background(), slowTarget(t)))
}

type want struct {
	reachable, tlsOK bool
	err              string
	names            string
}

func expectations() map[string]want {
	return map[string]want{
		"management.azure.com:443":               {true, true, "", "management.azure.com"},
		"login.microsoftonline.com:443":          {true, true, "", "login.microsoftonline.com,login.windows.net"},
		"pas.windows.net:443":                    {true, false, "certificate is valid for wrong.example.com", "wrong.example.com"},
		"eastus2.his.arc.azure.com:443":          {true, true, "", "*.his.arc.azure.com"},
		"dc.services.visualstudio.com:443":       {false, false, "connection refused", ""},
		"eastus2.obo.arc.azure.com:8084":         {true, true, "", "eastus2.obo.arc.azure.com"},
		"microsoft.com:443":                      {true, true, "", "microsoft.com"},
		"microsoft.com:80/pkiops/certs":          {true, false, "", ""},
		"guestnotificationservice.azure.com:443": {true, false, "unknown authority", "guestnotificationservice.azure.com"},
		"slow.his.arc.azure.com:443":             {true, false, "timed out after", ""},
	}
}

func verify(t *testing.T, results []Result, exp map[string]want) {
	t.Helper()
	if len(results) != len(exp) {
		t.Fatalf("%d results; want %d", len(results), len(exp))
	}
	for _, r := range results {
		w, ok := exp[r.Endpoint()]
		if !ok {
			t.Errorf("unexpected endpoint %s", r.Endpoint())
			continue
		}
		// a timeout may strike before or after the connection is up
		reachableOK := r.Reachable == w.reachable || strings.HasPrefix(w.err, "timed out")
		if !reachableOK || r.TLSOK != w.tlsOK || (w.err == "") != (r.Error == "") ||
			!strings.Contains(r.Error, w.err) || strings.Join(r.CertNames, ",") != w.names {
			t.Errorf("%s: reachable=%v tls=%v names=%v err=%q; want reachable=%v tls=%v names=%v err~%q",
				r.Endpoint(), r.Reachable, r.TLSOK, r.CertNames, r.Error, w.reachable, w.tlsOK, w.names, w.err)
		}
	}
}

func TestCheckDirect(t *testing.T) {
	l, targets, _ := setup(t)
	c := Checker{DialContext: l.dialer.DialContext, RootCAs: l.ca.Pool, Parallel: 3}
	results := runAll(t, c, targets)
	verify(t, results, expectations())
	if results[7].HTTPStatus != http.StatusOK {
		t.Errorf("pkiops HEAD status = %d", results[7].HTTPStatus)
	}
	if !Failed(results) {
		t.Error("Failed = false with required endpoints failing")
	}
}

func TestFailedIgnoresOptional(t *testing.T) {
	l := newLab(t)
	l.tlsOrigin("management.azure.com", 443, l.ca.ServerConfig(t, "management.azure.com"))
	l.refused("dc.services.visualstudio.com", 443)
	targets, _, _ := Targets([]policy.Rule{rules()[0], rules()[5], rules()[4]}, nil)
	c := &Checker{DialContext: l.dialer.DialContext, RootCAs: l.ca.Pool, Timeout: longTimeout}
	results := c.Run(context.Background(), targets)
	if results[1].OK() || results[1].Required {
		t.Fatalf("optional endpoint: %+v", results[1])
	}
	if Failed(results) {
		t.Fatal("a failing optional endpoint failed the check")
	}
}

// fakeProxy is a minimal CONNECT proxy in arcfence's manner: it refuses
// names outside allowed with 403 and X-Arcfence-Reason, answers 502 when the
// origin cannot be dialed, and relays bytes otherwise.
func fakeProxy(t *testing.T, l *lab, allowed map[string]bool) string {
	ln := l.listen()
	l.serve(ln, func(c net.Conn) {
		c.SetDeadline(time.Now().Add(10 * time.Second))
		br := bufio.NewReader(c)
		req, err := http.ReadRequest(br)
		if err != nil {
			return
		}
		host := req.Host
		if req.Method != http.MethodConnect {
			host = req.URL.Host
			if !strings.Contains(host, ":") {
				host += ":80"
			}
		}
		if !allowed[host] {
			io.WriteString(c, "HTTP/1.1 403 Forbidden\r\nX-Arcfence-Reason: not-in-allowlist\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
			return
		}
		up, err := l.dialer.DialContext(context.Background(), "tcp", host)
		if err != nil {
			io.WriteString(c, "HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
			return
		}
		defer up.Close()
		if req.Method == http.MethodConnect {
			io.WriteString(c, "HTTP/1.1 200 Connection established\r\n\r\n")
		} else {
			req.RequestURI = ""
			req.Write(up)
		}
		done := make(chan struct{})
		go func() { io.Copy(up, br); up.(*net.TCPConn).CloseWrite(); close(done) }()
		io.Copy(c, up)
		c.Close()
		<-done
	})
	return ln.Addr().String()
}

func TestCheckThroughProxy(t *testing.T) {
	l, targets, _ := setup(t)
	allowed := map[string]bool{}
	for _, tg := range targets {
		allowed[policy.FormatHostPort(tg.Host, tg.Port)] = true
	}
	allowed["slow.his.arc.azure.com:443"] = true
	delete(allowed, "eastus2.obo.arc.azure.com:8084") // the proxy refuses this one
	addr := fakeProxy(t, l, allowed)
	l.dialer.Map(addr, addr)
	exp := expectations()
	exp["eastus2.obo.arc.azure.com:8084"] = want{false, false, "proxy refused: 403 Forbidden (not-in-allowlist)", ""}
	exp["dc.services.visualstudio.com:443"] = want{false, false, "proxy answered 502 Bad Gateway", ""}
	c := Checker{Proxy: &url.URL{Scheme: "http", Host: addr}, DialContext: l.dialer.DialContext, RootCAs: l.ca.Pool}
	results := runAll(t, c, targets)
	verify(t, results, exp)
}

func TestProxyDown(t *testing.T) {
	l := newLab(t)
	l.refused("proxy.internal", 3128)
	targets, _, _ := Targets(rules()[:1], nil)
	c := &Checker{Proxy: &url.URL{Scheme: "http", Host: "proxy.internal:3128"}, DialContext: l.dialer.DialContext, Timeout: longTimeout}
	r := c.Run(context.Background(), targets)[0]
	if r.Reachable || !strings.Contains(r.Error, "proxy http://proxy.internal:3128") || !strings.Contains(r.Error, "connection refused") {
		t.Fatalf("result = %+v", r)
	}
}

func TestReports(t *testing.T) {
	l, targets, _ := setup(t)
	_, unchecked, _ := Targets(rules(), []string{"eastus2.his.arc.azure.com"})
	c := Checker{DialContext: l.dialer.DialContext, RootCAs: l.ca.Pool}
	results := append(runAll(t, c, targets), unchecked...)

	var tb bytes.Buffer
	if err := WriteTable(&tb, results); err != nil {
		t.Fatal(err)
	}
	out := tb.String()
	for _, s := range []string{
		"ENDPOINT", "CERT NAMES", "management.azure.com", "connection refused", "dc.services.visualstudio.com",
		"servers (optional)", "n/a (HTTP 200)", "microsoft.com/pkiops/certs",
		"not checkable: azgn*.servicebus.windows.net (give --sample NAME",
		"10 checked: 6 ok, 4 failed (3 required); 1 not checkable",
	} {
		if !strings.Contains(out, s) {
			t.Errorf("table lacks %q:\n%s", s, out)
		}
	}

	var jb bytes.Buffer
	if err := WriteJSON(&jb, results); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(jb.String()), "\n")
	if len(lines) != 11 {
		t.Fatalf("%d JSON lines; want 11", len(lines))
	}
	var first map[string]any
	if err := json.Unmarshal([]byte(lines[0]), &first); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"endpoint", "host", "port", "offering", "reachable", "tls_ok", "cert_names", "latency_ms", "error", "ok", "required", "checked"} {
		if _, ok := first[k]; !ok {
			t.Errorf("JSON lacks %q: %s", k, lines[0])
		}
	}
	if first["endpoint"] != "management.azure.com:443" || first["ok"] != true {
		t.Errorf("first line = %s", lines[0])
	}
	var last map[string]any
	json.Unmarshal([]byte(lines[10]), &last)
	if last["checked"] != false || last["endpoint"] != "azgn*.servicebus.windows.net" {
		t.Errorf("unchecked line = %s", lines[10])
	}
}

// TestTargetsSkipUDPRows: a UDP row (time.windows.com:123, revision
// 2026-08) has no TLS endpoint: it is reported not checkable.
func TestTargetsSkipUDPRows(t *testing.T) {
	rs := append(rules(), policy.Rule{Pattern: "time.windows.com", Ports: []int{123}, Scheme: "udp",
		Offering: "resource-bridge", Feature: "windows-ntp", When: "conditional", Source: policy.SourceCatalog})
	targets, unchecked, err := Targets(rs, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, tg := range targets {
		if tg.Host == "time.windows.com" {
			t.Fatalf("UDP row checked: %+v", tg)
		}
	}
	last := unchecked[len(unchecked)-1]
	if last.Error != "not checkable: a UDP row" || last.Endpoint() != "time.windows.com:123" || last.Scheme != "udp" {
		t.Fatalf("unchecked = %+v", unchecked)
	}
}

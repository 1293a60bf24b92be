package proxy

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/arcfence/arcfence/policy"
)

// statusLine sends raw on a new connection to the proxy and returns the
// first line of its answer.
func (e *env) statusLine(t *testing.T, raw string) string {
	t.Helper()
	c := e.dialProxy()
	if _, err := io.WriteString(c, raw); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		t.Fatalf("no answer to %q: %v", raw, err)
	}
	return strings.TrimSuffix(line, "\r\n")
}

// closedPort returns a loopback address of name on which nothing listens.
func (e *env) closedPort(name string) string {
	e.t.Helper()
	ln := e.listenOn(name)
	addr := ln.Addr().String()
	_ = ln.Close()
	return addr
}

// blackhole returns a loopback address of name whose listener never
// accepts and whose accept queue is full: connection attempts to it get no
// answer, so a dial to it times out.
func (e *env) blackhole(name string) string {
	e.t.Helper()
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM, 0)
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { _ = syscall.Close(fd) })
	ip := net.ParseIP(testNames[name]).To4()
	sa := &syscall.SockaddrInet4{Addr: [4]byte(ip)}
	if err := syscall.Bind(fd, sa); err != nil {
		e.t.Fatal(err)
	}
	if err := syscall.Listen(fd, 0); err != nil {
		e.t.Fatal(err)
	}
	got, err := syscall.Getsockname(fd)
	if err != nil {
		e.t.Fatal(err)
	}
	addr := net.JoinHostPort(ip.String(), fmt.Sprint(got.(*syscall.SockaddrInet4).Port))
	// Fill the accept queue (a backlog of 0 holds one connection).
	for i := 0; i < 3; i++ {
		if c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond); err == nil {
			e.t.Cleanup(func() { _ = c.Close() })
		}
	}
	return addr
}

// TestReasonPhrases asserts the exact status line of every kind of answer
// arcfence writes, on the fast path and on net/http's (a head over the fast
// path's buffer), for CONNECT and plain HTTP: the standard text, then the
// cause.
func TestReasonPhrases(t *testing.T) {
	leakCheck(t)
	e := newEnv(t, func(c *envConfig) { c.Limits.DialTimeout = 300 * time.Millisecond })
	e.dns.set("refused.his.arc.azure.com", testNames["refused.his.arc.azure.com"])
	e.route("refused.his.arc.azure.com", 443, e.closedPort("refused.his.arc.azure.com"))
	e.route("plain.arcfence.test", 80, e.closedPort("plain.arcfence.test"))
	e.route("gbl.his.arc.azure.com", 443, e.blackhole("gbl.his.arc.azure.com"))
	pad := "X-Pad: " + strings.Repeat("a", 3<<10) + "\r\n" // over the fast path's buffer
	connect := func(target, proto, extra string) string {
		return "CONNECT " + target + " " + proto + "\r\nHost: " + target + "\r\n" + extra + "\r\n"
	}
	for _, tc := range []struct {
		name, req, want string
	}{
		{"deny", connect("example.org:443", "HTTP/1.1", ""), "HTTP/1.1 403 Forbidden (arcfence: not-in-allowlist)"},
		{"deny/http1.0", connect("example.org:443", "HTTP/1.0", ""), "HTTP/1.0 403 Forbidden (arcfence: not-in-allowlist)"},
		{"deny/net-http", connect("example.org:443", "HTTP/1.1", pad), "HTTP/1.1 403 Forbidden (arcfence: not-in-allowlist)"},
		{"deny/net-http/http1.0", connect("example.org:443", "HTTP/1.0", pad), "HTTP/1.0 403 Forbidden (arcfence: not-in-allowlist)"},
		{"explicit-deny", connect("login.windows.net:443", "HTTP/1.1", ""), "HTTP/1.1 403 Forbidden (arcfence: explicit-deny)"},
		{"invalid-port", connect("management.azure.com", "HTTP/1.1", ""), "HTTP/1.1 403 Forbidden (arcfence: invalid-port)"},
		{"private-address", connect("private.his.arc.azure.com:443", "HTTP/1.1", ""), "HTTP/1.1 403 Forbidden (arcfence: private-address)"},
		{"no-such-host", connect("nowhere.his.arc.azure.com:443", "HTTP/1.1", ""), "HTTP/1.1 502 Bad Gateway (arcfence: no such host)"},
		{"no-such-host/net-http", connect("nowhere.his.arc.azure.com:443", "HTTP/1.1", pad), "HTTP/1.1 502 Bad Gateway (arcfence: no such host)"},
		{"refused", connect("refused.his.arc.azure.com:443", "HTTP/1.1", ""), "HTTP/1.1 502 Bad Gateway (arcfence: connection refused)"},
		{"dial-timeout", connect("gbl.his.arc.azure.com:443", "HTTP/1.1", ""), "HTTP/1.1 504 Gateway Timeout (arcfence: dial timeout)"},
		{"plain/deny", "GET http://example.org/ HTTP/1.1\r\nHost: example.org\r\n\r\n", "HTTP/1.1 403 Forbidden (arcfence: not-in-allowlist)"},
		{"plain/deny/http1.0", "GET http://example.org/ HTTP/1.0\r\n\r\n", "HTTP/1.0 403 Forbidden (arcfence: not-in-allowlist)"},
		{"plain/path", "GET http://microsoft.com/x HTTP/1.1\r\nHost: microsoft.com\r\n\r\n", "HTTP/1.1 403 Forbidden (arcfence: path-not-allowed)"},
		{"plain/refused", "GET http://plain.arcfence.test/ HTTP/1.1\r\nHost: plain.arcfence.test\r\n\r\n", "HTTP/1.1 502 Bad Gateway (arcfence: connection refused)"},
		{"plain/not-proxy", "GET /x HTTP/1.1\r\nHost: x\r\n\r\n", "HTTP/1.1 400 Bad Request (arcfence: not a proxy request)"},
		{"plain/https-url", "GET https://management.azure.com/ HTTP/1.1\r\nHost: management.azure.com\r\n\r\n", "HTTP/1.1 400 Bad Request (arcfence: scheme not forwarded)"},
		{"net-http/400", "\x00\x01garbage\r\n\r\n", "HTTP/1.1 400 Bad Request (arcfence: bad request)"},
		{"net-http/400-detail", "GET http://x/ HTTP/1.1\r\n\r\n", "HTTP/1.1 400 Bad Request (arcfence: missing required Host header)"},
		{"net-http/431", connect("raw.arcfence.test:443", "HTTP/1.1", "X-Big: "+strings.Repeat("a", 64<<10)+"\r\n"), "HTTP/1.1 431 Request Header Fields Too Large (arcfence: header too large)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := e.statusLine(t, tc.req); got != tc.want {
				t.Fatalf("status line %q, want %q", got, tc.want)
			}
		})
	}
}

// TestReasonPhraseLimitAndTimeout asserts the 429 and 408 status lines.
func TestReasonPhraseLimitAndTimeout(t *testing.T) {
	leakCheck(t)
	e := newEnv(t, func(c *envConfig) {
		c.Limits.MaxTunnelsPerClient = 1
		c.Limits.HeaderTimeout = 300 * time.Millisecond
	})
	e.rawOrigin("raw.arcfence.test", 443, echo)
	held := e.tunnel("raw.arcfence.test:443")
	defer held.Close()
	if got, want := e.statusLine(t, "CONNECT raw.arcfence.test:443 HTTP/1.1\r\nHost: x\r\n\r\n"),
		"HTTP/1.1 429 Too Many Requests (arcfence: limit-exceeded)"; got != want {
		t.Fatalf("status line %q, want %q", got, want)
	}
	for _, tc := range []struct{ name, head string }{
		{"fast-path", "CONNECT raw.arcfence.test:443 HTTP/1.1\r\n"},
		{"net-http", "CONNECT raw.arcfence.test:443 HTTP/1.1\r\nX-Pad: " + strings.Repeat("a", 3<<10) + "\r\n"},
	} {
		t.Run("408/"+tc.name, func(t *testing.T) {
			if got, want := e.statusLine(t, tc.head), "HTTP/1.1 408 Request Timeout (arcfence: header timeout)"; got != want {
				t.Fatalf("status line %q, want %q", got, want)
			}
		})
	}
}

// TestClientErrorTexts asserts what Go's HTTP client and gorilla/websocket
// report when the proxy refuses their CONNECT: the cause, not only the
// standard text (an Arc agent's log line).
func TestClientErrorTexts(t *testing.T) {
	leakCheck(t)
	e := newEnv(t, func(c *envConfig) { c.Limits.MaxTunnelsPerClient = 1 })
	e.rawOrigin("raw.arcfence.test", 443, echo)
	hc := e.client(false)
	wsd := websocket.Dialer{Proxy: http.ProxyURL(e.url), TLSClientConfig: &tls.Config{RootCAs: e.ca.Pool}, HandshakeTimeout: wait}
	for _, tc := range []struct {
		host, goErr, wsErr string
	}{
		{"example.org", `Get "https://example.org/": Forbidden (arcfence: not-in-allowlist)`, "Forbidden (arcfence: not-in-allowlist)"},
		{"nowhere.his.arc.azure.com", `Get "https://nowhere.his.arc.azure.com/": Bad Gateway (arcfence: no such host)`, "Bad Gateway (arcfence: no such host)"},
	} {
		t.Run(tc.host, func(t *testing.T) {
			_, err := hc.Get("https://" + tc.host + "/")
			if err == nil || err.Error() != tc.goErr {
				t.Errorf("Go client error %v, want %s", err, tc.goErr)
			}
			c, _, err := wsd.Dial("wss://"+tc.host+"/", nil)
			if err == nil {
				_ = c.Close()
			}
			if err == nil || err.Error() != tc.wsErr {
				t.Errorf("websocket error %v, want %s", err, tc.wsErr)
			}
		})
	}
	t.Run("limit-exceeded", func(t *testing.T) {
		held := e.tunnel("raw.arcfence.test:443")
		defer held.Close()
		_, err := hc.Get("https://raw.arcfence.test/")
		if want := `Get "https://raw.arcfence.test/": Too Many Requests (arcfence: limit-exceeded)`; err == nil || err.Error() != want {
			t.Errorf("Go client error %v, want %s", err, want)
		}
		_, _, err = wsd.Dial("wss://raw.arcfence.test/", nil)
		if want := "Too Many Requests (arcfence: limit-exceeded)"; err == nil || err.Error() != want {
			t.Errorf("websocket error %v, want %s", err, want)
		}
	})
}

var connIDForm = regexp.MustCompile(`^[0-9a-f]{8}$`)

// TestConnIDTiesLines asserts that the lines about one client connection
// carry the same conn (a tunnel admitted, then refused by the SNI check:
// its refusal line and its close line), and that other connections get
// other ids (a dial failure, a refusal on net/http's path).
func TestConnIDTiesLines(t *testing.T) {
	leakCheck(t)
	e := newEnv(t, nil)
	e.rawOrigin("management.azure.com", 443, echo)
	c := e.tunnel("management.azure.com:443")
	if _, err := c.Write(clientHello(t, "evil.example.org")); err != nil {
		t.Fatal(err)
	}
	_, _ = readAllBounded(c)
	refusal := e.logs.find(t, map[string]any{"msg": "denied", "reason": "sni-mismatch", "host": "management.azure.com"})
	closed := e.logs.find(t, map[string]any{"msg": msgTunnelClosed, "host": "management.azure.com"})
	sni, _ := refusal[fieldConn].(string)
	if !connIDForm.MatchString(sni) {
		t.Fatalf("refusal line conn %q, want 8 hex digits", sni)
	}
	if closed[fieldConn] != sni {
		t.Fatalf("tunnel close line conn %v, refusal line conn %q: not the same connection", closed[fieldConn], sni)
	}
	_, _, resp := e.connect("nowhere.his.arc.azure.com:443")
	if resp.StatusCode != http.StatusBadGateway {
		t.Fatalf("status %d, want 502", resp.StatusCode)
	}
	dial, _ := e.logs.find(t, map[string]any{"msg": "dial failed", "host": "nowhere.his.arc.azure.com"})[fieldConn].(string)
	e.statusLine(t, "CONNECT example.org:443 HTTP/1.1\r\nX-Pad: "+strings.Repeat("a", 3<<10)+"\r\n\r\n")
	slow, _ := e.logs.find(t, map[string]any{"msg": "denied", "host": "example.org"})[fieldConn].(string)
	ids := map[string]bool{}
	for _, id := range []string{sni, dial, slow} {
		if !connIDForm.MatchString(id) {
			t.Fatalf("conn %q, want 8 hex digits", id)
		}
		ids[id] = true
	}
	if len(ids) != 3 {
		t.Fatalf("three connections share ids: %s %s %s", sni, dial, slow)
	}
}

// TestConnIDLearnMode asserts that a would-deny line and the dial failure
// that follows on the same connection (learn mode lets it through; the
// name does not resolve) carry the same conn.
func TestConnIDLearnMode(t *testing.T) {
	leakCheck(t)
	e := newEnv(t, func(c *envConfig) { c.Mode = policy.ModeLearn })
	_, _, resp := e.connect("unknown.example.org:443")
	if resp.Status != "502 Bad Gateway (arcfence: no such host)" {
		t.Fatalf("status %q", resp.Status)
	}
	would := e.logs.find(t, map[string]any{"msg": "would deny", "host": "unknown.example.org"})
	dial := e.logs.find(t, map[string]any{"msg": "dial failed", "host": "unknown.example.org"})
	if id, _ := would[fieldConn].(string); !connIDForm.MatchString(id) || dial[fieldConn] != id {
		t.Fatalf("would-deny conn %v, dial-failure conn %v: want the same 8 hex digits", would[fieldConn], dial[fieldConn])
	}
}

// TestConnIDsDiffer asserts that consecutive connections get different ids.
func TestConnIDsDiffer(t *testing.T) {
	s := &Server{connBase: 0xfffffff0}
	seen := map[connID]bool{}
	for i := 0; i < 1000; i++ {
		id := s.newConnID()
		if seen[id] {
			t.Fatalf("id %s repeated after %d connections", id, i)
		}
		seen[id] = true
	}
	if got := connID(0x0a0b0c0d).String(); got != "0a0b0c0d" {
		t.Fatalf("String %q", got)
	}
}

// TestFailureCause is the table of failureCause: the status and cause of
// each kind of dial or forward error.
func TestFailureCause(t *testing.T) {
	dial := func(err error) error { return &dialError{host: "h", port: 443, err: err} }
	for _, tc := range []struct {
		name  string
		err   error
		code  int
		cause string
	}{
		{"not-found", dial(&net.DNSError{Err: "no such host", Name: "h", IsNotFound: true}), 502, "no such host"},
		{"lookup-timeout", dial(&net.DNSError{Err: "i/o timeout", Name: "h", IsTimeout: true}), 504, "lookup timeout"},
		{"lookup-failed", dial(&net.DNSError{Err: "server misbehaving", Name: "h"}), 502, "lookup failed"},
		{"refused", dial(&net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}), 502, "connection refused"},
		{"dial-timeout", dial(&net.OpError{Op: "dial", Net: "tcp", Err: syscall.ETIMEDOUT}), 504, "dial timeout"},
		{"host-unreachable", dial(&net.OpError{Op: "dial", Net: "tcp", Err: syscall.EHOSTUNREACH}), 502, "host unreachable"},
		{"net-unreachable", dial(&net.OpError{Op: "dial", Net: "tcp", Err: syscall.ENETUNREACH}), 502, "network unreachable"},
		{"no-addresses", dial(errNoAddresses), 502, "no addresses"},
		{"other-dial", dial(io.ErrUnexpectedEOF), 502, "dial failed"},
		{"origin-timeout", fmt.Errorf("websocket answer: %w", &net.OpError{Op: "read", Err: syscall.ETIMEDOUT}), 504, "origin timeout"},
		{"origin-error", fmt.Errorf("websocket answer: %w", io.ErrUnexpectedEOF), 502, "origin error"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := failure(tc.err)
			if a.code != tc.code || a.cause != tc.cause || a.reason != policy.ReasonNone {
				t.Fatalf("got %d %q %v, want %d %q", a.code, a.cause, a.reason, tc.code, tc.cause)
			}
			if want := "arcfence: " + tc.err.Error() + "\n"; a.body != want {
				t.Fatalf("body %q, want %q", a.body, want)
			}
		})
	}
	a := failure(&guardError{host: "h", port: 443})
	if a.code != http.StatusForbidden || a.reason != policy.PrivateAddress || a.body != denyBody("h", 443, policy.PrivateAddress) {
		t.Fatalf("guard error: %+v", a)
	}
}

// TestRefusalOfHEAD asserts that a refused HEAD request gets the refusal's
// status and headers and no body.
func TestRefusalOfHEAD(t *testing.T) {
	leakCheck(t)
	e := newEnv(t, nil)
	c := e.dialProxy()
	fmt.Fprint(c, "HEAD http://example.org/ HTTP/1.1\r\nHost: example.org\r\n\r\n")
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodHead})
	if err != nil {
		t.Fatal(err)
	}
	want := denyBody("example.org", 80, policy.NotInAllowlist)
	if resp.Status != "403 Forbidden (arcfence: not-in-allowlist)" || resp.Header.Get(HeaderReason) != "not-in-allowlist" ||
		resp.ContentLength != int64(len(want)) {
		t.Fatalf("got %q %q length %d", resp.Status, resp.Header.Get(HeaderReason), resp.ContentLength)
	}
	closedAfter(t, c, br) // and no body bytes came before the close
}

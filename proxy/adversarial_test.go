package proxy

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"path"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/arcfence/arcfence/policy"
)

// multiDNS is a stub resolver whose answers are computed per query: several
// addresses per name, A and AAAA, and answers that change from one query to
// the next (a rebinding resolver). Names it does not know are looked up in
// testNames, so the helpers' origins stay reachable.
type multiDNS struct {
	addr string
	mu   sync.Mutex
	seen map[string]int // "name/type" -> queries so far
	// answer returns the addresses for the n-th (from 0) query of name and
	// qtype; ok=false means "not mine".
	answer func(name string, qtype uint16, n int) (addrs []string, ok bool)
}

func startMultiDNS(t testing.TB, answer func(name string, qtype uint16, n int) ([]string, bool)) *multiDNS {
	t.Helper()
	md := &multiDNS{seen: map[string]int{}, answer: answer}
	md.addr = serveDNSStub(t, md.serve)
	return md
}

func (md *multiDNS) serve(w dns.ResponseWriter, q *dns.Msg) {
	m := new(dns.Msg)
	m.SetReply(q)
	qq := q.Question[0]
	name := strings.TrimSuffix(strings.ToLower(qq.Name), ".")
	md.mu.Lock()
	k := name + "/" + dns.TypeToString[qq.Qtype]
	n := md.seen[k]
	md.seen[k]++
	md.mu.Unlock()
	addrs, ok := md.answer(name, qq.Qtype, n)
	if !ok {
		if ip, known := testNames[name]; known {
			ok = true
			if qq.Qtype == dns.TypeA {
				addrs = []string{ip}
			}
		}
	}
	if !ok {
		m.Rcode = dns.RcodeNameError
		_ = w.WriteMsg(m)
		return
	}
	for _, a := range addrs {
		ip := netip.MustParseAddr(a)
		switch {
		case qq.Qtype == dns.TypeA && ip.Is4():
			m.Answer = append(m.Answer, &dns.A{Hdr: dns.RR_Header{Name: qq.Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 1}, A: ip.AsSlice()})
		case qq.Qtype == dns.TypeAAAA && ip.Is6():
			m.Answer = append(m.Answer, &dns.AAAA{Hdr: dns.RR_Header{Name: qq.Name, Rrtype: dns.TypeAAAA, Class: dns.ClassINET, Ttl: 1}, AAAA: ip.AsSlice()})
		}
	}
	_ = w.WriteMsg(m)
}

// queries returns how many queries of name and qtype the stub saw.
func (md *multiDNS) queries(name string, qtype uint16) int {
	md.mu.Lock()
	defer md.mu.Unlock()
	return md.seen[name+"/"+dns.TypeToString[qtype]]
}

// trap is a loopback listener standing in for every non-loopback address
// the adversarial resolver hands out: the env's dial hook sends dials to
// those addresses here, so that no test can reach a real network even if
// the guard let one through, and any connection that arrives is a failure.
type trap struct {
	ln  net.Listener
	mu  sync.Mutex
	got []string
}

func (e *env) newTrap(addrs ...string) *trap {
	e.t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		e.t.Fatal(err)
	}
	tr := &trap{ln: ln}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			tr.mu.Lock()
			tr.got = append(tr.got, c.RemoteAddr().String())
			tr.mu.Unlock()
			_ = c.Close()
		}
	}()
	e.t.Cleanup(func() { _ = ln.Close(); <-done })
	to := netip.MustParseAddrPort(ln.Addr().String())
	e.mu.Lock()
	for _, a := range addrs {
		ip := netip.MustParseAddr(a)
		for _, port := range []uint16{80, 443, 8084} {
			e.remap[netip.AddrPortFrom(ip.Unmap(), port)] = to
		}
	}
	e.mu.Unlock()
	return tr
}

func (tr *trap) check(t *testing.T) {
	t.Helper()
	tr.mu.Lock()
	defer tr.mu.Unlock()
	if len(tr.got) > 0 {
		t.Fatalf("the proxy dialed an address the guard must refuse (%d connections)", len(tr.got))
	}
}

// The addresses the adversarial resolver hands out that are not loopback.
// None is ever dialed: the guard refuses them, and the trap catches a dial
// that would slip through.
var trapAddrs = []string{"10.1.2.3", "169.254.169.254", "192.0.2.10", "2001:db8::10", "fd00::5", "192.168.7.7"}

// advAnswers is the adversarial resolver's table.
func advAnswers(name string, qtype uint16, n int) ([]string, bool) {
	switch name {
	case "mixed1.his.arc.azure.com":
		return []string{"127.0.0.11", "10.1.2.3"}, true
	case "mixed2.his.arc.azure.com":
		return []string{"10.1.2.3", "127.0.0.11"}, true
	case "mixed6.his.arc.azure.com":
		return []string{"127.0.0.11", "fd00::5"}, true
	case "doc.his.arc.azure.com":
		return []string{"192.0.2.10"}, true
	case "doc6.his.arc.azure.com":
		return []string{"2001:db8::10"}, true
	case "mapped.his.arc.azure.com":
		return []string{"::ffff:169.254.169.254"}, true
	case "mixedraw.arcfence.test":
		// A user entry may resolve privately, never to the metadata address.
		return []string{"192.168.7.7", "169.254.169.254"}, true
	case "rebind.his.arc.azure.com":
		// Public-looking (loopback, admitted through allow_ranges) on even
		// queries, private on odd ones.
		if qtype != dns.TypeA {
			return nil, true
		}
		if n%2 == 0 {
			return []string{"127.0.0.11"}, true
		}
		return []string{"10.1.2.3"}, true
	}
	return nil, false
}

// advEnv is the env of the adversarial corpus: the adversarial resolver,
// the trap, an echo origin for raw.arcfence.test, an address entry, and a
// plain-HTTP origin for microsoft.com that reports the path it served.
func advEnv(t *testing.T) (*env, *multiDNS, *trap, chan string) {
	t.Helper()
	var md *multiDNS
	e := newEnv(t, func(c *envConfig) {
		md = startMultiDNS(t, advAnswers)
		c.Resolver = md.addr
		c.Allow = append(c.Allow, "127.0.0.14:443", "mixedraw.arcfence.test")
	})
	tr := e.newTrap(trapAddrs...)
	e.rawOrigin("raw.arcfence.test", 443, echo)
	e.rawOrigin("management.azure.com", 443, echo)
	paths := make(chan string, 16)
	e.plainOrigin("microsoft.com", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("X-Injected") != "" {
			paths <- "INJECTED"
		}
		paths <- r.URL.Path
		fmt.Fprint(w, "cert")
	}))
	return e, md, tr, paths
}

// advCase is one hostile request and the answer it must get.
type advCase struct {
	name   string
	req    string        // raw bytes written to the proxy
	status int           // expected status of the first answer
	reason policy.Reason // expected X-Arcfence-Reason (ReasonNone: none)
	host   string        // for refusals: the host:port named in the body
	port   int
	// then, when set, runs after the first answer on the same connection
	// (a tunnel or a kept-alive connection).
	then func(t *testing.T, e *env, c net.Conn, br *bufio.Reader)
}

// closedNow asserts that nothing more comes on the connection: the proxy
// closed it and answered no pipelined request.
func closedNow(t *testing.T, c net.Conn, br *bufio.Reader) {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(wait))
	rest, err := io.ReadAll(br)
	if isTimeout(err) {
		t.Fatal("connection left open after the answer")
	}
	if len(rest) > 0 {
		t.Fatalf("more after the answer (a pipelined request was served?): %q", rest)
	}
}

// echoes asserts that the tunnel reaches the echo origin.
func echoes(t *testing.T, _ *env, c net.Conn, br *bufio.Reader) {
	t.Helper()
	fmt.Fprint(c, "ping")
	b := make([]byte, 4)
	if _, err := io.ReadFull(br, b); err != nil || string(b) != "ping" {
		t.Fatalf("echo %q %v", b, err)
	}
}

// notTLSInTunnel asserts that the proxy answers 403 not-tls inside an
// admitted tunnel and closes it.
func notTLSInTunnel(t *testing.T, _ *env, c net.Conn, br *bufio.Reader) {
	t.Helper()
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusForbidden || resp.Header.Get(HeaderReason) != policy.NotTLS.String() {
		t.Fatalf("got %s %q, want 403 not-tls", resp.Status, resp.Header.Get(HeaderReason))
	}
	_, _ = io.ReadAll(resp.Body)
	closedNow(t, c, br)
}

// helloRefused writes hello (nil: it went with the request) into an
// admitted tunnel and asserts that the proxy answers with its TLS
// access_denied alert and closes, the hello never reaching the origin.
func helloRefused(hello []byte) func(t *testing.T, e *env, c net.Conn, br *bufio.Reader) {
	return func(t *testing.T, _ *env, c net.Conn, br *bufio.Reader) {
		t.Helper()
		if hello != nil {
			if _, err := c.Write(hello); err != nil {
				t.Fatal(err)
			}
		}
		_ = c.SetReadDeadline(time.Now().Add(wait))
		got, err := io.ReadAll(br)
		if isTimeout(err) {
			t.Fatalf("tunnel left open after %q", got)
		}
		if string(got) != string(tlsAccessDenied) {
			t.Fatalf("got %q, want the access_denied alert and a close", got)
		}
	}
}

// servedPathUnder asserts that the plain origin served a path inside
// /pkiops/certs (as the origin resolves it).
func servedPathUnder(paths chan string) func(t *testing.T, e *env, c net.Conn, br *bufio.Reader) {
	return func(t *testing.T, _ *env, _ net.Conn, _ *bufio.Reader) {
		t.Helper()
		select {
		case p := <-paths:
			if p == "INJECTED" {
				t.Fatal("a header injected through the URL reached the origin")
			}
			if c := path.Clean(p); c != "/pkiops/certs" && !strings.HasPrefix(c, "/pkiops/certs/") {
				t.Fatalf("origin served %q, outside /pkiops/certs", p)
			}
		case <-time.After(wait):
			t.Fatal("origin not reached")
		}
	}
}

func runAdvCase(t *testing.T, e *env, tc advCase) {
	t.Helper()
	c := e.dialProxy()
	if _, err := io.WriteString(c, tc.req); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(c)
	method := http.MethodGet
	if strings.HasPrefix(tc.req, "CONNECT") {
		method = http.MethodConnect
	}
	resp, err := http.ReadResponse(br, &http.Request{Method: method})
	if err != nil {
		t.Fatalf("no answer: %v", err)
	}
	body := ""
	if !(method == http.MethodConnect && resp.StatusCode == http.StatusOK) {
		b, _ := io.ReadAll(resp.Body)
		body = string(b)
	}
	if resp.StatusCode != tc.status {
		t.Fatalf("status %d (%s %q), want %d", resp.StatusCode, resp.Header.Get(HeaderReason), body, tc.status)
	}
	if got := resp.Header.Get(HeaderReason); got != tc.reason.String() && !(tc.reason == policy.ReasonNone && got == "") {
		t.Fatalf("%s %q, want %q", HeaderReason, got, tc.reason)
	}
	if tc.reason != policy.ReasonNone {
		if want := denyBody(tc.host, tc.port, tc.reason); body != want {
			t.Fatalf("body %q, want %q", body, want)
		}
	}
	switch {
	case tc.then != nil:
		tc.then(t, e, c, br)
	case resp.StatusCode >= 400:
		closedNow(t, c, br)
	}
}

// TestAdversarialCorpus sends hostile requests through a running proxy:
// each ends refused with the right reason, or allowed only where the policy
// allows the normalized destination; no address the guard refuses is ever
// dialed.
func TestAdversarialCorpus(t *testing.T) {
	leakCheck(t)
	e, _, tr, paths := advEnv(t)
	defer tr.check(t)
	const (
		bad  = http.StatusBadRequest
		deny = http.StatusForbidden
		ok   = http.StatusOK
	)
	var (
		invalidHost = policy.InvalidHost
		ipLiteral   = policy.IPLiteral
		notListed   = policy.NotInAllowlist
		private     = policy.PrivateAddress
		pathNot     = policy.PathNotAllowed
	)
	connect := func(target, extra string) string {
		// The Host header of a CONNECT is ignored; a neutral one keeps
		// net/http's Host validation out of the cases about the target.
		return "CONNECT " + target + " HTTP/1.1\r\nHost: host.invalid\r\n" + extra + "\r\n"
	}
	get := func(url, host string) string {
		return "GET " + url + " HTTP/1.1\r\nHost: " + host + "\r\n\r\n"
	}
	cases := []advCase{
		// Absolute-form vs authority-form, and Host headers naming another host.
		{name: "connect-absolute-form", req: connect("http://management.azure.com:443/", ""), status: deny, reason: invalidHost, host: "http://management.azure.com:443/", port: 0},
		{name: "connect-origin-form", req: connect("/management.azure.com:443", ""), status: deny, reason: invalidHost, host: "/management.azure.com", port: 443},
		{name: "connect-host-header-names-allowed", req: "CONNECT evil.example:443 HTTP/1.1\r\nHost: management.azure.com:443\r\n\r\n", status: deny, reason: notListed, host: "evil.example", port: 443},
		{name: "connect-host-header-names-other", req: "CONNECT raw.arcfence.test:443 HTTP/1.1\r\nHost: evil.example:443\r\n\r\n", status: ok, then: echoes},
		{name: "connect-two-host-headers", req: "CONNECT evil.example:443 HTTP/1.1\r\nHost: management.azure.com:443\r\nHost: evil.example:443\r\n\r\n", status: bad},
		{name: "connect-userinfo", req: connect("management.azure.com@evil.example:443", ""), status: deny, reason: invalidHost, host: "management.azure.com@evil.example", port: 443},
		{name: "connect-port-then-host", req: connect("management.azure.com:443@evil.example:443", ""), status: deny, reason: invalidHost, host: "management.azure.com:443@evil.example:443", port: 0},
		{name: "connect-percent-encoded-dot", req: connect("management%2eazure.com:443", ""), status: bad},
		{name: "connect-backslash", req: connect(`evil.example\management.azure.com:443`, ""), status: bad},
		{name: "plain-host-header-names-allowed", req: get("http://evil.example/pkiops/certs/x", "microsoft.com"), status: deny, reason: notListed, host: "evil.example", port: 80},
		{name: "plain-origin-form-with-host", req: get("/pkiops/certs/x", "microsoft.com"), status: bad},
		{name: "plain-https-absolute", req: get("https://microsoft.com/pkiops/certs/x", "microsoft.com"), status: bad},
		{name: "plain-authority-form-get", req: get("microsoft.com:80", "microsoft.com"), status: bad},

		// Userinfo in URLs.
		{name: "plain-userinfo-allowed-name", req: get("http://management.azure.com@evil.example/", "management.azure.com"), status: deny, reason: notListed, host: "evil.example", port: 80},
		{name: "plain-userinfo-with-port", req: get("http://microsoft.com:80@evil.example/pkiops/certs/x", "microsoft.com"), status: deny, reason: notListed, host: "evil.example", port: 80},
		{name: "plain-userinfo-to-allowed", req: get("http://evil.example@microsoft.com/pkiops/certs/x", "evil.example"), status: ok, then: servedPathUnder(paths)},

		// Percent-encoding and dot segments in plain-HTTP paths.
		{name: "plain-encoded-dot-segments", req: get("http://microsoft.com/pkiops/certs/%2e%2e/%2e%2e/secret", "microsoft.com"), status: deny, reason: pathNot, host: "microsoft.com", port: 80},
		{name: "plain-encoded-slash-traversal", req: get("http://microsoft.com/pkiops/certs/..%2f..%2fsecret", "microsoft.com"), status: deny, reason: pathNot, host: "microsoft.com", port: 80},
		{name: "plain-double-slash-traversal", req: get("http://microsoft.com//pkiops/certs/../../secret", "microsoft.com"), status: deny, reason: pathNot, host: "microsoft.com", port: 80},
		{name: "plain-prefix-lookalike", req: get("http://microsoft.com/pkiops/certsX/a.crt", "microsoft.com"), status: deny, reason: pathNot, host: "microsoft.com", port: 80},
		{name: "plain-encoded-slash-inside", req: get("http://microsoft.com/pkiops%2fcerts/a.crt", "microsoft.com"), status: ok, then: servedPathUnder(paths)},
		{name: "plain-query-traversal", req: get("http://microsoft.com/pkiops/certs/a.crt?/../../secret", "microsoft.com"), status: ok, then: servedPathUnder(paths)},
		{name: "plain-encoded-crlf-in-path", req: get("http://microsoft.com/pkiops/certs/a%0d%0aX-Injected:%201", "microsoft.com"), status: ok, then: servedPathUnder(paths)},
		{name: "plain-path-parameter-dot-dot", req: get("http://microsoft.com/pkiops/certs/..;/secret", "microsoft.com"), status: deny, reason: pathNot, host: "microsoft.com", port: 80},
		{name: "plain-path-parameter-encoded", req: get("http://microsoft.com/pkiops/certs/..%3b/secret", "microsoft.com"), status: deny, reason: pathNot, host: "microsoft.com", port: 80},
		{name: "plain-path-parameter-on-file", req: get("http://microsoft.com/pkiops/certs/a.crt;x=/../../secret", "microsoft.com"), status: deny, reason: pathNot, host: "microsoft.com", port: 80},
		{name: "plain-percent-encoded-host", req: get("http://microsoft%2ecom/pkiops/certs/a.crt", "microsoft.com"), status: bad},

		// IPv6 literals with zones, IPv4 forms, IPv4-mapped IPv6.
		{name: "connect-ipv6-zone", req: connect("[fe80::1%25eth0]:443", ""), status: deny, reason: ipLiteral, host: "fe80::1%25eth0", port: 443},
		{name: "connect-ipv6-zone-raw", req: connect("[fe80::1%eth0]:443", ""), status: bad},
		{name: "connect-loopback-zone", req: connect("[::1%25lo]:443", ""), status: deny, reason: ipLiteral, host: "::1%25lo", port: 443},
		{name: "connect-decimal-ipv4", req: connect("2130706433:443", ""), status: deny, reason: ipLiteral, host: "2130706433", port: 443},
		{name: "connect-hex-ipv4", req: connect("0x7f.1:443", ""), status: deny, reason: ipLiteral, host: "0x7f.1", port: 443},
		{name: "connect-hex-ipv4-whole", req: connect("0x7f000001:443", ""), status: deny, reason: ipLiteral, host: "0x7f000001", port: 443},
		{name: "connect-short-ipv4", req: connect("127.1:443", ""), status: deny, reason: ipLiteral, host: "127.1", port: 443},
		{name: "connect-octal-ipv4", req: connect("0177.0.0.1:443", ""), status: deny, reason: ipLiteral, host: "0177.0.0.1", port: 443},
		{name: "connect-ipv4-trailing-dot", req: connect("127.0.0.15.:443", ""), status: deny, reason: ipLiteral, host: "127.0.0.15", port: 443},
		{name: "connect-decimal-of-allowed-address", req: connect("2130706446:443", ""), status: deny, reason: ipLiteral, host: "2130706446", port: 443},
		{name: "connect-mapped-loopback", req: connect("[::ffff:127.0.0.1]:443", ""), status: deny, reason: ipLiteral, host: "::ffff:127.0.0.1", port: 443},
		{name: "connect-mapped-metadata", req: connect("[::ffff:a9fe:a9fe]:443", ""), status: deny, reason: ipLiteral, host: "::ffff:169.254.169.254", port: 443},
		{name: "connect-nat64-loopback", req: connect("[64:ff9b::7f00:1]:443", ""), status: deny, reason: ipLiteral, host: "64:ff9b::7f00:1", port: 443},
		{name: "connect-mapped-allowed-address", req: connect("[::ffff:127.0.0.14]:443", ""), status: ok, then: echoes},
		{name: "plain-decimal-ipv4", req: get("http://2130706433/", "2130706433"), status: deny, reason: ipLiteral, host: "2130706433", port: 80},
		{name: "plain-mapped-ipv6", req: get("http://[::ffff:127.0.0.1]/", "[::ffff:127.0.0.1]"), status: deny, reason: ipLiteral, host: "::ffff:127.0.0.1", port: 80},

		// Names resolving to mixed public and private addresses.
		{name: "mixed-public-first", req: connect("mixed1.his.arc.azure.com:443", ""), status: deny, reason: private, host: "mixed1.his.arc.azure.com", port: 443},
		{name: "mixed-private-first", req: connect("mixed2.his.arc.azure.com:443", ""), status: deny, reason: private, host: "mixed2.his.arc.azure.com", port: 443},
		{name: "mixed-ula-aaaa", req: connect("mixed6.his.arc.azure.com:443", ""), status: deny, reason: private, host: "mixed6.his.arc.azure.com", port: 443},
		{name: "documentation-v4", req: connect("doc.his.arc.azure.com:443", ""), status: deny, reason: private, host: "doc.his.arc.azure.com", port: 443},
		{name: "documentation-v6", req: connect("doc6.his.arc.azure.com:443", ""), status: deny, reason: private, host: "doc6.his.arc.azure.com", port: 443},
		{name: "aaaa-mapped-metadata", req: connect("mapped.his.arc.azure.com:443", ""), status: deny, reason: private, host: "mapped.his.arc.azure.com", port: 443},
		{name: "user-entry-private-and-metadata", req: connect("mixedraw.arcfence.test:443", ""), status: deny, reason: private, host: "mixedraw.arcfence.test", port: 443},

		// NUL and CR/LF in names.
		{name: "connect-nul-in-name", req: connect("management.azure.com\x00.evil.example:443", ""), status: bad},
		{name: "connect-nul-before-allowed", req: connect("evil.example\x00management.azure.com:443", ""), status: bad},
		{name: "connect-bare-cr-in-name", req: "CONNECT evil.example\rmanagement.azure.com:443 HTTP/1.1\r\n\r\n", status: bad},
		{name: "connect-crlf-splits-request-line", req: "CONNECT management.azure.com:443\r\nHost: x HTTP/1.1\r\n\r\n", status: bad},
		{name: "connect-encoded-nul", req: connect("management.azure.com%00.evil.example:443", ""), status: bad},
		{name: "plain-nul-in-host", req: get("http://microsoft.com\x00.evil.example/pkiops/certs/x", "microsoft.com"), status: bad},
		{name: "plain-encoded-crlf-in-host", req: get("http://microsoft.com%0d%0aX:%20y/pkiops/certs/x", "microsoft.com"), status: bad},
		{name: "header-bare-cr", req: "CONNECT evil.example:443 HTTP/1.1\r\nHost: a\rb\r\n\r\n", status: bad},

		// Oversize request lines and names.
		{name: "request-line-over-limit", req: connect(strings.Repeat("a", 40<<10)+".example:443", ""), status: http.StatusRequestHeaderFieldsTooLarge},
		{name: "name-over-253", req: connect(strings.Repeat("abcdefghi.", 26)+"com:443", ""), status: deny, reason: invalidHost, host: strings.Repeat("abcdefghi.", 26) + "com", port: 443},
		{name: "label-over-63", req: connect(strings.Repeat("a", 64)+".his.arc.azure.com:443", ""), status: deny, reason: invalidHost, host: strings.Repeat("a", 64) + ".his.arc.azure.com", port: 443},

		// HTTP versions.
		{name: "http10-connect-allowed", req: "CONNECT raw.arcfence.test:443 HTTP/1.0\r\n\r\n", status: ok, then: func(t *testing.T, e *env, c net.Conn, br *bufio.Reader) {
			echoes(t, e, c, br)
		}},
		{name: "http10-connect-refused", req: "CONNECT evil.example:443 HTTP/1.0\r\n\r\n", status: deny, reason: notListed, host: "evil.example", port: 443},
		{name: "connect-lf-only-line-endings", req: "CONNECT raw.arcfence.test:443 HTTP/1.1\nHost: x\n\n", status: ok, then: echoes},
		{name: "connect-lf-only-refused", req: "CONNECT evil.example:443 HTTP/1.1\n\n", status: deny, reason: notListed, host: "evil.example", port: 443},
		{name: "http2-version-over-http1", req: "CONNECT raw.arcfence.test:443 HTTP/2.0\r\n\r\n", status: http.StatusHTTPVersionNotSupported},

		// CONNECT with a body.
		{name: "connect-body-refused", req: "CONNECT evil.example:443 HTTP/1.1\r\nContent-Length: 51\r\n\r\n" +
			"CONNECT raw.arcfence.test:443 HTTP/1.1\r\nHost: x\r\n\r\n", status: deny, reason: notListed, host: "evil.example", port: 443},
		{name: "connect-chunked-body-refused", req: "CONNECT evil.example:443 HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n" +
			"33\r\nCONNECT raw.arcfence.test:443 HTTP/1.1\r\nHost: x\r\n\r\n\r\n0\r\n\r\n", status: deny, reason: notListed, host: "evil.example", port: 443},
		{name: "connect-body-is-tunnel-data", req: "CONNECT raw.arcfence.test:443 HTTP/1.1\r\nContent-Length: 4\r\n\r\nping", status: ok, then: func(t *testing.T, _ *env, c net.Conn, br *bufio.Reader) {
			// The body went to the admitted origin, as tunnel bytes.
			b := make([]byte, 4)
			if _, err := io.ReadFull(br, b); err != nil || string(b) != "ping" {
				t.Fatalf("echo of the body %q %v", b, err)
			}
		}},
		// A body cannot carry plain bytes past the not-tls check.
		{name: "connect-body-not-tls", req: "CONNECT management.azure.com:443 HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello", status: ok, then: notTLSInTunnel},

		// A server_name list of more than one entry, whatever its order
		// (issue 13 finding 6): refused, never decided on its first host_name.
		{name: "sni-list-allowed-then-evil", req: connect("management.azure.com:443", ""), status: ok,
			then: helloRefused(helloWithSNIList(sniEntry{0, "management.azure.com"}, sniEntry{0, "evil.example"}))},
		{name: "sni-list-other-type-then-allowed", req: connect("management.azure.com:443", ""), status: ok,
			then: helloRefused(helloWithSNIList(sniEntry{1, "evil.example"}, sniEntry{0, "management.azure.com"}))},
		{name: "sni-list-pipelined", req: connect("management.azure.com:443", "") +
			string(helloWithSNIList(sniEntry{0, "management.azure.com"}, sniEntry{0, "evil.example"})), status: ok,
			then: helloRefused(nil)},

		// The admin listener (/learned, /metrics) is not reachable through
		// the proxy under any of its names (issue 13 finding 4 is the
		// admin side: a rebinding Host gets 421 there, internal/admin's
		// TestHostHeader).
		{name: "plain-to-admin-by-name", req: get("http://localhost:9090/learned", "localhost:9090"), status: deny, reason: notListed, host: "localhost", port: 9090},
		{name: "plain-to-admin-by-address", req: get("http://127.0.0.1:9090/metrics", "127.0.0.1:9090"), status: deny, reason: ipLiteral, host: "127.0.0.1", port: 9090},
		{name: "connect-to-admin", req: connect("127.0.0.1:9090", ""), status: deny, reason: ipLiteral, host: "127.0.0.1", port: 9090},

		// Websocket upgrades are decided like any request.
		{name: "ws-upgrade-refused", req: "GET http://evil.example/ws HTTP/1.1\r\nHost: microsoft.com\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n" +
			"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n", status: deny, reason: notListed, host: "evil.example", port: 80},
		{name: "ws-upgrade-path-refused", req: "GET http://microsoft.com/ws HTTP/1.1\r\nHost: microsoft.com\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n" +
			"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n", status: deny, reason: pathNot, host: "microsoft.com", port: 80},

		// Pipelined requests after a refusal are never served.
		{name: "pipelined-connect-after-refusal", req: connect("evil.example:443", "") + connect("raw.arcfence.test:443", ""), status: deny, reason: notListed, host: "evil.example", port: 443},
		{name: "pipelined-get-after-refusal", req: get("http://evil.example/", "evil.example") + get("http://microsoft.com/pkiops/certs/x", "microsoft.com"), status: deny, reason: notListed, host: "evil.example", port: 80},
		{name: "pipelined-after-bad-request", req: "\x00garbage\r\n\r\n" + connect("raw.arcfence.test:443", ""), status: bad},
		{name: "pipelined-refusal-after-allowed", req: get("http://microsoft.com/pkiops/certs/x", "microsoft.com") + connect("evil.example:443", ""), status: ok,
			then: func(t *testing.T, _ *env, c net.Conn, br *bufio.Reader) {
				servedPathUnder(paths)(t, nil, nil, nil)
				resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodConnect})
				if err != nil {
					t.Fatal(err)
				}
				if resp.StatusCode != deny || resp.Header.Get(HeaderReason) != notListed.String() {
					t.Fatalf("second request: %s %q, want 403 not-in-allowlist", resp.Status, resp.Header.Get(HeaderReason))
				}
				_, _ = io.ReadAll(resp.Body)
				closedNow(t, c, br)
			}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			runAdvCase(t, e, tc)
		})
	}
}

// TestAdversarialPathBackslash: a path-restricted row must not admit a
// path that leaves the prefix once backslashes are read as slashes, as IIS
// and other Windows-hosted origins read them.
func TestAdversarialPathBackslash(t *testing.T) {
	leakCheck(t)
	e, _, tr, paths := advEnv(t)
	defer tr.check(t)
	for _, tc := range []struct{ name, url string }{
		{"raw-backslash", `http://microsoft.com/pkiops/certs/..\..\secret`},
		{"encoded-backslash", "http://microsoft.com/pkiops/certs/..%5c..%5csecret"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			runAdvCase(t, e, advCase{
				req:    "GET " + tc.url + " HTTP/1.1\r\nHost: microsoft.com\r\n\r\n",
				status: http.StatusForbidden, reason: policy.PathNotAllowed, host: "microsoft.com", port: 80,
			})
		})
	}
	select {
	case p := <-paths:
		t.Fatalf("origin served %q", p)
	default:
	}
}

// TestAdversarialRebinding: a resolver that answers differently on each
// query never gets the proxy to dial an address it did not check: every
// CONNECT is either admitted to the checked (allowed) address or refused
// private-address, and the private answer is never dialed.
func TestAdversarialRebinding(t *testing.T) {
	leakCheck(t)
	e, md, tr, _ := advEnv(t)
	defer tr.check(t)
	var allowed, refused int
	for i := 0; i < 6; i++ {
		c, br, resp := e.connect("rebind.his.arc.azure.com:443")
		switch {
		case resp.StatusCode == http.StatusOK:
			allowed++
			// A TLS catalog row: the client speaks TLS first; plain bytes
			// end the tunnel, which is all this test needs of it.
			_ = c.Close()
		case resp.StatusCode == http.StatusForbidden && resp.Header.Get(HeaderReason) == policy.PrivateAddress.String():
			refused++
			_, _ = io.ReadAll(resp.Body)
			closedNow(t, c, br)
		default:
			t.Fatalf("query %d: %s %q", i, resp.Status, resp.Header.Get(HeaderReason))
		}
	}
	if n := md.queries("rebind.his.arc.azure.com", dns.TypeA); n < 6 {
		t.Fatalf("%d A queries for 6 CONNECTs: the proxy cached or skipped lookups", n)
	}
	if allowed == 0 || refused == 0 {
		t.Fatalf("allowed %d, refused %d: the rebinding resolver was not exercised", allowed, refused)
	}
}

// TestAdversarialLearnedAddresses (issue 13 finding 1): with
// dns.admit_learned_addresses, an address the DNS filter handed out for a
// TLS row's name is reached only as that name: on its port, in TLS, with
// its SNI. Every other use of the address is refused before any dial (the
// learned env's echo origin on the other ports counts dials).
func TestAdversarialLearnedAddresses(t *testing.T) {
	leakCheck(t)
	le := newLearnedEnv(t, false)
	le.resolve(t, learnedName)
	const deny = http.StatusForbidden
	connect := func(target string) string { return "CONNECT " + target + " HTTP/1.1\r\nHost: host.invalid\r\n\r\n" }
	get := func(url, host, extra string) string {
		return "GET " + url + " HTTP/1.1\r\nHost: " + host + "\r\n" + extra + "\r\n"
	}
	mapped := "::ffff:" + learnedAddr
	ipLiteral := policy.IPLiteral
	ws := "Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
	cases := []advCase{
		{name: "learned-other-port", req: connect(learnedAddr + ":80"), status: deny, reason: ipLiteral, host: learnedAddr, port: 80},
		{name: "learned-high-port", req: connect(learnedAddr + ":9090"), status: deny, reason: ipLiteral, host: learnedAddr, port: 9090},
		{name: "learned-obo-port", req: connect(learnedAddr + ":8084"), status: deny, reason: ipLiteral, host: learnedAddr, port: 8084},
		{name: "learned-mapped-other-port", req: connect("[" + mapped + "]:80"), status: deny, reason: ipLiteral, host: mapped, port: 80},
		{name: "learned-mapped-high-port", req: connect("[" + mapped + "]:9090"), status: deny, reason: ipLiteral, host: mapped, port: 9090},
		{name: "learned-decimal-form", req: connect("2130706453:443"), status: deny, reason: ipLiteral, host: "2130706453", port: 443},
		{name: "learned-plain-get", req: get("http://"+learnedAddr+"/anything", learnedAddr, ""), status: deny, reason: ipLiteral, host: learnedAddr, port: 80},
		{name: "learned-plain-get-mapped", req: get("http://["+mapped+"]/anything", "["+mapped+"]", ""), status: deny, reason: ipLiteral, host: mapped, port: 80},
		{name: "learned-websocket", req: get("http://"+learnedAddr+"/ws", learnedAddr, ws), status: deny, reason: ipLiteral, host: learnedAddr, port: 80},
		{name: "learned-tls-row-plain-bytes", req: connect(learnedAddr + ":443"), status: http.StatusOK, then: func(t *testing.T, e *env, c net.Conn, br *bufio.Reader) {
			fmt.Fprint(c, "GET /anything HTTP/1.1\r\nHost: "+learnedAddr+"\r\n\r\n")
			notTLSInTunnel(t, e, c, br)
		}},
		{name: "learned-tls-row-other-sni", req: connect(learnedAddr + ":443"), status: http.StatusOK,
			then: helloRefused(helloWithSNIList(sniEntry{0, "management.azure.com"}))},
		{name: "learned-tls-row-sni-list", req: connect(learnedAddr + ":443"), status: http.StatusOK,
			then: helloRefused(helloWithSNIList(sniEntry{0, learnedName}, sniEntry{0, "evil.example"}))},
		{name: "learned-not-learned-neighbour", req: connect("127.0.0.22:443"), status: deny, reason: ipLiteral, host: "127.0.0.22", port: 443},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			runAdvCase(t, le.env, tc)
		})
	}
	if n := le.echoConns(); n != 0 {
		t.Fatalf("a refused use of the learned address was dialed %d times", n)
	}
}

// TestAdversarialHalfCloseDuringDial (issue 13 finding 2): a CONNECT with
// bytes and a half-close (shutdown SHUT_WR) right behind it, sent before
// the dial ends. On net/http's path (a head over the fast path's buffer)
// net/http cancels the request's context at the client's FIN; a dial bound
// to it failed ("502 ... operation was canceled") and the bytes were lost.
// On both paths the bytes must reach the origin and its echo come back.
func TestAdversarialHalfCloseDuringDial(t *testing.T) {
	leakCheck(t)
	e := newEnv(t, nil)
	e.rawOrigin("raw.arcfence.test", 443, echo)
	// Every dial waits a moment, so that the FIN is in before it ends.
	e.mu.Lock()
	e.delay = 100 * time.Millisecond
	e.mu.Unlock()
	for _, tc := range []struct{ name, extra string }{
		{"fast-path", ""},
		{"net-http", "X-Pad: " + strings.Repeat("a", 3<<10) + "\r\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := e.dialProxy()
			req := "CONNECT raw.arcfence.test:443 HTTP/1.1\r\nHost: raw.arcfence.test:443\r\n" + tc.extra + "\r\n"
			if _, err := io.WriteString(c, req+"pipelined bytes"); err != nil {
				t.Fatal(err)
			}
			if err := c.(*net.TCPConn).CloseWrite(); err != nil {
				t.Fatal(err)
			}
			got, err := readAllBounded(c)
			if want := established11 + "pipelined bytes"; string(got) != want || err != nil {
				t.Fatalf("read %q (%v), want %q", got, err, want)
			}
		})
	}
}

// plainGet sends a kept-alive GET for url on c and returns the answer with
// its body read.
func plainGet(t *testing.T, c net.Conn, br *bufio.Reader, url string) (*http.Response, string) {
	t.Helper()
	fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: x\r\n\r\n", url)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

// TestAdversarialPlainConnectionLimits (issue 13 finding 7): plain-HTTP
// connections count in max_tunnels_per_client from their first request
// until they close, as tunnels do: with a limit of 2, two kept-alive plain
// connections leave no room for a third, nor for a CONNECT; closing one
// gives its place back.
func TestAdversarialPlainConnectionLimits(t *testing.T) {
	leakCheck(t)
	e := newEnv(t, func(c *envConfig) { c.Limits.MaxTunnelsPerClient = 2 })
	e.plainOrigin("plain.arcfence.test", http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprint(w, "ok")
	}))
	e.rawOrigin("raw.arcfence.test", 443, echo)
	const url = "http://plain.arcfence.test/"
	var held []net.Conn
	for i := 0; i < 2; i++ {
		c := e.dialProxy()
		resp, body := plainGet(t, c, bufio.NewReader(c), url)
		if resp.StatusCode != http.StatusOK || body != "ok" {
			t.Fatalf("connection %d: %s %q", i, resp.Status, body)
		}
		held = append(held, c)
	}
	c := e.dialProxy()
	br := bufio.NewReader(c)
	resp, body := plainGet(t, c, br, url)
	if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get(HeaderReason) != policy.LimitExceeded.String() ||
		body != denyBody("plain.arcfence.test", 80, policy.LimitExceeded) {
		t.Fatalf("third connection: %s %q %q", resp.Status, resp.Header.Get(HeaderReason), body)
	}
	closedAfter(t, c, br)
	e.logs.find(t, map[string]any{"msg": "denied", "reason": "limit-exceeded", "host": "plain.arcfence.test"})
	if _, _, resp := e.connect("raw.arcfence.test:443"); resp.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("CONNECT beside two plain connections: %s, want 429", resp.Status)
	}
	_ = held[0].Close()
	// The place comes back when the proxy sees the close (bounded wait).
	deadline := time.Now().Add(wait)
	for {
		c := e.dialProxy()
		resp, _ := plainGet(t, c, bufio.NewReader(c), url)
		_ = c.Close()
		if resp.StatusCode == http.StatusOK {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("place not returned after a plain connection closed: %s", resp.Status)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestAdversarialSlowBody (issue 13 finding 7): a POST whose body stops
// coming is answered 408 and closed once no byte came for the header
// timeout (the per-read bound of a body), and its place in the limits is
// returned; a body that keeps coming is forwarded whole.
func TestAdversarialSlowBody(t *testing.T) {
	leakCheck(t)
	e := newEnv(t, func(c *envConfig) {
		c.Limits.HeaderTimeout = 500 * time.Millisecond
		c.Limits.MaxTunnelsPerClient = 1
	})
	e.plainOrigin("plain.arcfence.test", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, err := io.ReadAll(r.Body)
		if err != nil {
			return
		}
		fmt.Fprintf(w, "got %d", len(b))
	}))
	const head = "POST http://plain.arcfence.test/ HTTP/1.1\r\nHost: plain.arcfence.test\r\nContent-Length: 100\r\n\r\n"
	t.Run("stalled", func(t *testing.T) {
		c := e.dialProxy()
		if _, err := io.WriteString(c, head+"0123456789"); err != nil {
			t.Fatal(err)
		}
		br := bufio.NewReader(c)
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.ReadAll(resp.Body)
		if want := "408 Request Timeout (arcfence: body timeout)"; resp.Status != want {
			t.Fatalf("answer %q, want %q", resp.Status, want)
		}
		closedAfter(t, c, br)
		e.logs.find(t, map[string]any{"msg": "bad request", "status": 408})
	})
	t.Run("trickled", func(t *testing.T) {
		deadline := time.Now().Add(wait)
		for {
			// The stalled connection's place comes back when it closes.
			c := e.dialProxy()
			if _, err := io.WriteString(c, head); err != nil {
				t.Fatal(err)
			}
			for i := 0; i < 10; i++ {
				_, _ = io.WriteString(c, "0123456789")
				time.Sleep(20 * time.Millisecond)
			}
			resp, err := http.ReadResponse(bufio.NewReader(c), nil)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			_ = c.Close()
			if resp.StatusCode == http.StatusOK {
				if string(b) != "got 100" {
					t.Fatalf("origin answered %q", b)
				}
				break
			}
			if resp.StatusCode != http.StatusTooManyRequests || time.Now().After(deadline) {
				t.Fatalf("trickled body: %s %q", resp.Status, b)
			}
			time.Sleep(10 * time.Millisecond)
		}
	})
}

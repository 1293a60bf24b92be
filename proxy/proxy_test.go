package proxy

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/arcfence/arcfence/certs"
	"github.com/arcfence/arcfence/policy"
)

func protoHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "%s %s %s", r.Proto, r.Host, r.URL.Path)
	})
}

func TestTunnelHTTP1AndHTTP2Passthrough(t *testing.T) {
	leakCheck(t)
	e := newEnv(t, nil)
	e.tlsOrigin("management.azure.com", protoHandler())
	for _, tc := range []struct {
		name  string
		h2    bool
		proto string
	}{{"http1", false, "HTTP/1.1"}, {"http2", true, "HTTP/2.0"}} {
		t.Run(tc.name, func(t *testing.T) {
			cl := e.client(tc.h2)
			defer cl.CloseIdleConnections()
			resp, err := cl.Get("https://management.azure.com/x")
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			if want := tc.proto + " management.azure.com /x"; string(body) != want {
				t.Fatalf("body %q, want %q", body, want)
			}
			// Passthrough: the client verified the origin's own certificate.
			if cn := resp.TLS.PeerCertificates[0].Subject.CommonName; cn != "management.azure.com" {
				t.Fatalf("peer certificate %q", cn)
			}
			if resp.TLS.VerifiedChains == nil {
				t.Fatal("chain not verified against the test CA")
			}
		})
	}
	e.logs.find(t, map[string]any{"msg": msgTunnelClosed, "host": "management.azure.com", "rule": "management.azure.com:443", "offering": "servers"})
}

// pipelinedConn writes the CONNECT request in front of the first write
// (the ClientHello) and skips the proxy's 200 before the first read.
type pipelinedConn struct {
	net.Conn
	req     string
	br      *bufio.Reader
	wrote   bool
	readHdr bool
}

func (p *pipelinedConn) Write(b []byte) (int, error) {
	if !p.wrote {
		p.wrote = true
		_, err := p.Conn.Write(append([]byte(p.req), b...))
		return len(b), err
	}
	return p.Conn.Write(b)
}

func (p *pipelinedConn) Read(b []byte) (int, error) {
	if !p.readHdr {
		p.readHdr = true
		resp, err := http.ReadResponse(p.br, &http.Request{Method: http.MethodConnect})
		if err != nil {
			return 0, err
		}
		if resp.StatusCode != 200 {
			return 0, fmt.Errorf("CONNECT: %s", resp.Status)
		}
	}
	return p.br.Read(b)
}

func TestPipelinedClientHello(t *testing.T) {
	leakCheck(t)
	e := newEnv(t, nil)
	e.tlsOrigin("management.azure.com", protoHandler())
	c := e.dialProxy()
	pc := &pipelinedConn{Conn: c, br: bufio.NewReader(c),
		req: "CONNECT management.azure.com:443 HTTP/1.1\r\nHost: management.azure.com:443\r\n\r\n"}
	tc := tls.Client(pc, &tls.Config{ServerName: "management.azure.com", RootCAs: e.ca.Pool, NextProtos: []string{"http/1.1"}})
	if err := tc.Handshake(); err != nil {
		t.Fatalf("handshake with the ClientHello pipelined behind CONNECT: %v", err)
	}
	fmt.Fprintf(tc, "GET /p HTTP/1.1\r\nHost: management.azure.com\r\nConnection: close\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(tc), nil)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	if string(b) != "HTTP/1.1 management.azure.com /p" {
		t.Fatalf("body %q", b)
	}
	_ = tc.Close()
}

// refusal checks a refused answer: status, reason header, body and the log line.
func (e *env) refusal(t *testing.T, resp *http.Response, host string, port int, r policy.Reason) {
	t.Helper()
	want := http.StatusForbidden
	if r == policy.LimitExceeded {
		want = http.StatusTooManyRequests
		if resp.Header.Get("Retry-After") == "" {
			t.Error("429 without Retry-After")
		}
	}
	if resp.StatusCode != want {
		t.Fatalf("status %d, want %d", resp.StatusCode, want)
	}
	if got := resp.Header.Get(HeaderReason); got != r.String() {
		t.Fatalf("%s %q, want %q", HeaderReason, got, r)
	}
	body, _ := io.ReadAll(resp.Body)
	if wantBody := denyBody(host, port, r); string(body) != wantBody {
		t.Fatalf("body %q, want %q", body, wantBody)
	}
	e.logs.find(t, map[string]any{"msg": "denied", "host": host, "port": port, "reason": r.String(),
		"component": "proxy", "mode": "enforce", "client": "127.0.0.1"})
}

// closedAfter asserts that the proxy closed the connection.
func closedAfter(t *testing.T, c net.Conn, br *bufio.Reader) {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(wait))
	if _, err := br.ReadByte(); err == nil {
		t.Fatal("connection still open after the refusal")
	}
}

func TestRefusalsOnTheWire(t *testing.T) {
	leakCheck(t)
	e := newEnv(t, func(c *envConfig) {
		c.AllowRanges = prefixes("127.0.0.0/8")
	})
	for _, tc := range []struct {
		target string
		host   string
		port   int
		reason policy.Reason
	}{
		{"bad_host!:443", "bad_host!", 443, policy.InvalidHost},
		{"management.azure.com", "management.azure.com", 0, policy.InvalidPort},
		{"management.azure.com:0", "management.azure.com", 0, policy.InvalidPort},
		{"management.azure.com:99999", "management.azure.com", 0, policy.InvalidPort},
		{"login.windows.net:443", "login.windows.net", 443, policy.ExplicitDeny},
		{"203.0.113.7:443", "203.0.113.7", 443, policy.IPLiteral},
		{"example.org:443", "example.org", 443, policy.NotInAllowlist},
		{"management.azure.com:8443", "management.azure.com", 8443, policy.PortNotAllowed},
		{"microsoft.com:80", "microsoft.com", 80, policy.PathNotAllowed},
		{"private.his.arc.azure.com:443", "private.his.arc.azure.com", 443, policy.PrivateAddress},
		{"meta.his.arc.azure.com:443", "meta.his.arc.azure.com", 443, policy.PrivateAddress},
	} {
		t.Run(tc.reason.String()+"/"+tc.target, func(t *testing.T) {
			c, br, resp := e.connect(tc.target)
			e.refusal(t, resp, tc.host, tc.port, tc.reason)
			closedAfter(t, c, br)
		})
	}
	t.Run("path-not-allowed/plain", func(t *testing.T) {
		c := e.dialProxy()
		fmt.Fprintf(c, "GET http://microsoft.com/other HTTP/1.1\r\nHost: microsoft.com\r\n\r\n")
		br := bufio.NewReader(c)
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		e.refusal(t, resp, "microsoft.com", 80, policy.PathNotAllowed)
		closedAfter(t, c, br)
		e.logs.find(t, map[string]any{"msg": "denied", "reason": "path-not-allowed", "path": "/other"})
	})
	t.Run("path-not-allowed/dot-segments", func(t *testing.T) {
		c := e.dialProxy()
		fmt.Fprintf(c, "GET http://microsoft.com/pkiops/certs/../../x HTTP/1.1\r\nHost: microsoft.com\r\n\r\n")
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != http.StatusForbidden || resp.Header.Get(HeaderReason) != "path-not-allowed" {
			t.Fatalf("got %s %q", resp.Status, resp.Header.Get(HeaderReason))
		}
	})
}

func TestPrivateAddressNeedsAllowRanges(t *testing.T) {
	leakCheck(t)
	e := newEnv(t, func(c *envConfig) { c.AllowRanges = nil })
	e.tlsOrigin("management.azure.com", protoHandler())
	_, _, resp := e.connect("management.azure.com:443")
	e.refusal(t, resp, "management.azure.com", 443, policy.PrivateAddress)
	// A user-named destination may be private, but loopback still needs allow_ranges.
	_, _, resp = e.connect("raw.arcfence.test:443")
	e.refusal(t, resp, "raw.arcfence.test", 443, policy.PrivateAddress)
}

func TestIPLiteral(t *testing.T) {
	leakCheck(t)
	e := newEnv(t, func(c *envConfig) {
		c.Allow = append(c.Allow, "127.0.0.14:443")
	})
	e.rawOrigin("raw.arcfence.test", 443, echo)
	_, _, resp := e.connect("127.0.0.15:443")
	e.refusal(t, resp, "127.0.0.15", 443, policy.IPLiteral)
	// An address entry admits exactly its address.
	c := e.tunnel("127.0.0.14:443")
	fmt.Fprint(c, "ping")
	b := make([]byte, 4)
	if _, err := io.ReadFull(c, b); err != nil || string(b) != "ping" {
		t.Fatalf("echo %q %v", b, err)
	}
}

func TestClientNotAllowed(t *testing.T) {
	leakCheck(t)
	e := newEnv(t, func(c *envConfig) { c.Clients = prefixes("127.0.0.1/32") })
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.2")}, Timeout: wait}
	c, err := d.Dial("tcp", e.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(wait))
	fmt.Fprintf(c, "CONNECT management.azure.com:443 HTTP/1.1\r\nHost: x\r\n\r\n")
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodConnect})
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 403 || resp.Header.Get(HeaderReason) != "client-not-allowed" {
		t.Fatalf("got %s %q", resp.Status, resp.Header.Get(HeaderReason))
	}
	body, _ := io.ReadAll(resp.Body)
	if string(body) != "arcfence: denied management.azure.com:443: client-not-allowed\n" {
		t.Fatalf("body %q", body)
	}
	e.logs.find(t, map[string]any{"msg": "denied", "reason": "client-not-allowed", "client": "127.0.0.2"})
}

func TestLimitTunnelsPerClient(t *testing.T) {
	leakCheck(t)
	e := newEnv(t, func(c *envConfig) { c.Limits.MaxTunnelsPerClient = 1 })
	e.rawOrigin("raw.arcfence.test", 443, echo)
	first := e.tunnel("raw.arcfence.test:443")
	_, _, resp := e.connect("raw.arcfence.test:443")
	e.refusal(t, resp, "raw.arcfence.test", 443, policy.LimitExceeded)
	// Closing the first frees the slot.
	_ = first.Close()
	deadline := time.Now().Add(wait)
	for e.s.ActiveTunnels() > 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	second := e.tunnel("raw.arcfence.test:443")
	// A client that resets frees its slot at once: the next CONNECT is
	// admitted even before the tunnel's goroutines notice the reset.
	_ = second.(*bufConn).Conn.(*net.TCPConn).SetLinger(0)
	_ = second.Close()
	e.tunnel("raw.arcfence.test:443")
}

func TestLearnMode(t *testing.T) {
	leakCheck(t)
	e := newEnv(t, func(c *envConfig) { c.Mode = policy.ModeLearn })
	e.rawOrigin("raw.arcfence.test", 8443, echo)
	e.tlsOrigin("login.microsoftonline.com", protoHandler())
	// Not in the allowlist (a port no row has): proceeds, logged as would deny.
	c := e.tunnel("raw.arcfence.test:8443")
	fmt.Fprint(c, "ping")
	b := make([]byte, 4)
	if _, err := io.ReadFull(c, b); err != nil || string(b) != "ping" {
		t.Fatalf("echo %q %v", b, err)
	}
	e.logs.find(t, map[string]any{"msg": "would deny", "host": "raw.arcfence.test", "port": 8443,
		"reason": "port-not-allowed", "mode": "learn"})
	// Guards and explicit deny stay.
	_, _, resp := e.connect("login.windows.net:443")
	if resp.StatusCode != 403 || resp.Header.Get(HeaderReason) != "explicit-deny" {
		t.Fatalf("explicit-deny in learn mode: %s", resp.Status)
	}
	_, _, resp = e.connect("private.his.arc.azure.com:443")
	if resp.StatusCode != 403 || resp.Header.Get(HeaderReason) != "private-address" {
		t.Fatalf("private-address in learn mode: %s", resp.Status)
	}
	// SNI mismatch is learnable: the handshake goes on.
	conn := e.tunnel("login.microsoftonline.com:443")
	tc := tls.Client(conn, &tls.Config{ServerName: "login.microsoftonline.com", RootCAs: e.ca.Pool})
	if err := tc.Handshake(); err != nil {
		t.Fatal(err)
	}
	_ = tc.Close()
}

func TestSNI(t *testing.T) {
	leakCheck(t)
	e := newEnv(t, nil)
	e.tlsOrigin("management.azure.com", protoHandler())
	e.tlsOrigin("login.microsoftonline.com", protoHandler())
	t.Run("mismatch", func(t *testing.T) {
		c := e.tunnel("management.azure.com:443")
		tc := tls.Client(c, &tls.Config{ServerName: "login.microsoftonline.com", RootCAs: e.ca.Pool})
		err := tc.Handshake()
		if err == nil || !strings.Contains(err.Error(), "access denied") {
			t.Fatalf("handshake error %v, want access denied", err)
		}
		e.logs.find(t, map[string]any{"msg": "denied", "host": "management.azure.com", "port": 443, "reason": "sni-mismatch"})
	})
	t.Run("multi-entry-list", func(t *testing.T) {
		// Issue 13 finding 6: [allowed, other] passed on its first name.
		c := e.tunnel("management.azure.com:443")
		if _, err := c.Write(helloWithSNIList(sniEntry{0, "management.azure.com"}, sniEntry{0, "login.microsoftonline.com"})); err != nil {
			t.Fatal(err)
		}
		_ = c.SetReadDeadline(time.Now().Add(wait))
		if got, _ := io.ReadAll(c); !bytes.Equal(got, tlsAccessDenied) {
			t.Fatalf("got %q, want the access_denied alert", got)
		}
		e.logs.find(t, map[string]any{"msg": "denied", "host": "management.azure.com", "port": 443, "reason": "sni-mismatch"})
	})
	t.Run("no-sni", func(t *testing.T) {
		c := e.tunnel("management.azure.com:443")
		tc := tls.Client(c, &tls.Config{InsecureSkipVerify: true}) // no ServerName: no SNI sent
		if err := tc.Handshake(); err != nil {
			t.Fatalf("ClientHello without SNI refused: %v", err)
		}
		_ = tc.Close()
	})
	t.Run("split-segments", func(t *testing.T) {
		c := e.tunnel("management.azure.com:443")
		tc := tls.Client(&splitConn{Conn: c, chunk: 7}, &tls.Config{ServerName: "management.azure.com", RootCAs: e.ca.Pool})
		if err := tc.Handshake(); err != nil {
			t.Fatalf("split ClientHello: %v", err)
		}
		_ = tc.Close()
	})
	t.Run("split-records", func(t *testing.T) {
		c := e.tunnel("management.azure.com:443")
		tc := tls.Client(&recordSplitConn{Conn: c}, &tls.Config{ServerName: "management.azure.com", RootCAs: e.ca.Pool})
		if err := tc.Handshake(); err != nil {
			t.Fatalf("ClientHello over two records: %v", err)
		}
		_ = tc.Close()
	})
	t.Run("split-records-mismatch", func(t *testing.T) {
		c := e.tunnel("management.azure.com:443")
		tc := tls.Client(&recordSplitConn{Conn: c}, &tls.Config{ServerName: "login.microsoftonline.com", RootCAs: e.ca.Pool})
		if err := tc.Handshake(); err == nil {
			t.Fatal("mismatching ClientHello over two records passed")
		}
	})
	t.Run("not-tls", func(t *testing.T) {
		c := e.tunnel("management.azure.com:443")
		fmt.Fprintf(c, "GET / HTTP/1.1\r\nHost: management.azure.com\r\n\r\n")
		br := bufio.NewReader(c)
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		e.refusal(t, resp, "management.azure.com", 443, policy.NotTLS)
		closedAfter(t, c, br)
	})
	t.Run("user-entry-passes-plain-bytes", func(t *testing.T) {
		e.rawOrigin("raw.arcfence.test", 443, echo)
		c := e.tunnel("raw.arcfence.test:443")
		fmt.Fprint(c, "hello")
		b := make([]byte, 5)
		if _, err := io.ReadFull(c, b); err != nil || string(b) != "hello" {
			t.Fatalf("echo %q %v", b, err)
		}
	})
}

func TestSNILogMode(t *testing.T) {
	leakCheck(t)
	e := newEnv(t, func(c *envConfig) { c.SNI = SNILog })
	e.tlsOrigin("management.azure.com", protoHandler())
	c := e.tunnel("management.azure.com:443")
	tc := tls.Client(c, &tls.Config{ServerName: "login.microsoftonline.com", InsecureSkipVerify: true})
	if err := tc.Handshake(); err != nil {
		t.Fatalf("sni: log must not close the tunnel: %v", err)
	}
	_ = tc.Close()
	e.logs.find(t, map[string]any{"msg": "would deny", "reason": "sni-mismatch", "mode": "enforce"})
}

// splitConn writes in chunks of chunk bytes, pausing between them so that
// they arrive as separate TCP segments.
type splitConn struct {
	net.Conn
	chunk int
	done  bool
}

func (s *splitConn) Write(b []byte) (int, error) {
	if s.done {
		return s.Conn.Write(b)
	}
	s.done = true
	n := 0
	for len(b) > 0 {
		k := min(s.chunk, len(b))
		w, err := s.Conn.Write(b[:k])
		n += w
		if err != nil {
			return n, err
		}
		b = b[k:]
		time.Sleep(time.Millisecond)
	}
	return n, nil
}

// recordSplitConn re-frames the first TLS record written (the ClientHello)
// as two records, splitting the handshake message in its middle.
type recordSplitConn struct {
	net.Conn
	done bool
}

func (s *recordSplitConn) Write(b []byte) (int, error) {
	if s.done || len(b) < 5 || b[0] != 0x16 {
		return s.Conn.Write(b)
	}
	s.done = true
	rlen := int(b[3])<<8 | int(b[4])
	body := b[5 : 5+rlen]
	half := len(body) / 2
	var out bytes.Buffer
	for _, part := range [][]byte{body[:half], body[half:]} {
		out.Write([]byte{0x16, b[1], b[2], byte(len(part) >> 8), byte(len(part))})
		out.Write(part)
	}
	out.Write(b[5+rlen:])
	if _, err := s.Conn.Write(out.Bytes()); err != nil {
		return 0, err
	}
	return len(b), nil
}

func TestBadInput(t *testing.T) {
	leakCheck(t)
	e := newEnv(t, func(c *envConfig) {
		c.Limits.HeaderTimeout = 500 * time.Millisecond
	})
	e.rawOrigin("raw.arcfence.test", 443, echo)
	stillServes := func(t *testing.T) {
		t.Helper()
		c := e.tunnel("raw.arcfence.test:443")
		fmt.Fprint(c, "ok")
		b := make([]byte, 2)
		if _, err := io.ReadFull(c, b); err != nil {
			t.Fatal(err)
		}
	}
	t.Run("garbage", func(t *testing.T) {
		c := e.dialProxy()
		_, _ = c.Write([]byte("\x00\x01\x02garbage\r\n\r\n"))
		br := bufio.NewReader(c)
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusBadRequest {
			t.Fatalf("status %d, want 400", resp.StatusCode)
		}
		closedAfter(t, c, br)
		e.logs.find(t, map[string]any{"msg": "bad request", "status": 400, "client": "127.0.0.1"})
		stillServes(t)
	})
	t.Run("huge-header", func(t *testing.T) {
		c := e.dialProxy()
		fmt.Fprintf(c, "CONNECT raw.arcfence.test:443 HTTP/1.1\r\nHost: x\r\nX-Big: %s\r\n\r\n", strings.Repeat("a", 64<<10))
		br := bufio.NewReader(c)
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
			t.Fatalf("status %d, want 431", resp.StatusCode)
		}
		e.logs.find(t, map[string]any{"msg": "bad request", "status": 431})
		stillServes(t)
	})
	t.Run("slow-headers", func(t *testing.T) {
		c := e.dialProxy()
		req := "CONNECT raw.arcfence.test:443 HTTP/1.1\r\nHost: x\r\n\r\n"
		closed := false
		var got bytes.Buffer
		for i := 0; i < len(req) && i < 100; i++ {
			if _, err := c.Write([]byte{req[i]}); err != nil {
				closed = true
				break
			}
			time.Sleep(100 * time.Millisecond)
			_ = c.SetReadDeadline(time.Now().Add(time.Millisecond))
			b := make([]byte, 512)
			n, err := c.Read(b)
			got.Write(b[:n])
			if err != nil && !isTimeout(err) {
				closed = true
				break
			}
		}
		if !closed {
			t.Fatal("slow client not closed after the header timeout")
		}
		if !strings.HasPrefix(got.String(), "HTTP/1.1 408") {
			t.Fatalf("got %q, want a 408", got.String())
		}
		e.logs.find(t, map[string]any{"msg": "bad request", "status": 408})
		stillServes(t)
	})
}

func isTimeout(err error) bool {
	ne, ok := err.(net.Error)
	return ok && ne.Timeout()
}

func TestFaults(t *testing.T) {
	leakCheck(t)
	e := newEnv(t, func(c *envConfig) { c.Limits.DialTimeout = 300 * time.Millisecond })
	t.Run("origin-refuses", func(t *testing.T) {
		ln := e.listenOn("refused.his.arc.azure.com")
		addr := ln.Addr().String()
		_ = ln.Close()
		e.mu.Lock()
		e.remap[netip.MustParseAddrPort("127.0.0.18:443")] = netip.MustParseAddrPort(addr)
		e.mu.Unlock()
		_, _, resp := e.connect("refused.his.arc.azure.com:443")
		if resp.StatusCode != http.StatusBadGateway {
			t.Fatalf("status %d, want 502", resp.StatusCode)
		}
	})
	t.Run("name-not-found", func(t *testing.T) {
		_, _, resp := e.connect("nowhere.his.arc.azure.com:443")
		if resp.StatusCode != http.StatusBadGateway {
			t.Fatalf("status %d, want 502", resp.StatusCode)
		}
	})
	t.Run("resolution-times-out", func(t *testing.T) {
		e.dns.mu.Lock()
		e.dns.hang["slow.his.arc.azure.com."] = true
		e.dns.mu.Unlock()
		_, _, resp := e.connect("slow.his.arc.azure.com:443")
		if resp.StatusCode != http.StatusGatewayTimeout {
			t.Fatalf("status %d, want 504", resp.StatusCode)
		}
	})
	t.Run("origin-resets", func(t *testing.T) {
		e.rawOrigin("raw.arcfence.test", 443, func(c net.Conn) {
			b := make([]byte, 4)
			_, _ = io.ReadFull(c, b)
			_, _ = c.Write([]byte("bye!"))
			_ = c.(*net.TCPConn).SetLinger(0)
			_ = c.Close()
		})
		c := e.tunnel("raw.arcfence.test:443")
		fmt.Fprint(c, "ping")
		b, err := readAllBounded(c)
		if isTimeout(err) {
			t.Fatal("client did not see the origin's reset")
		}
		if len(b) > 4 {
			t.Fatalf("read %q", b)
		}
	})
	t.Run("half-close-client-first", func(t *testing.T) {
		e.rawOrigin("raw.arcfence.test", 443, func(c net.Conn) {
			b, _ := io.ReadAll(c) // until the client's half-close
			_, _ = c.Write(append([]byte("got:"), b...))
		})
		c := e.tunnel("raw.arcfence.test:443")
		fmt.Fprint(c, "request")
		closeWrite(c)
		b, err := readAllBounded(c)
		if err != nil || string(b) != "got:request" {
			t.Fatalf("read %q %v", b, err)
		}
	})
	t.Run("half-close-origin-first", func(t *testing.T) {
		got := make(chan string, 1)
		e.rawOrigin("raw.arcfence.test", 443, func(c net.Conn) {
			_, _ = c.Write([]byte("banner"))
			closeWrite(c)
			b, _ := io.ReadAll(c)
			got <- string(b)
		})
		c := e.tunnel("raw.arcfence.test:443")
		b, err := readAllBounded(c) // EOF: the origin's half-close came through
		if err != nil || string(b) != "banner" {
			t.Fatalf("read %q %v", b, err)
		}
		fmt.Fprint(c, "still talking")
		closeWrite(c)
		select {
		case s := <-got:
			if s != "still talking" {
				t.Fatalf("origin got %q", s)
			}
		case <-time.After(wait):
			t.Fatal("origin got nothing after its half-close")
		}
	})
}

func TestIdleTimeout(t *testing.T) {
	leakCheck(t)
	e := newEnv(t, func(c *envConfig) { c.Limits.TunnelIdleTimeout = 200 * time.Millisecond })
	e.rawOrigin("raw.arcfence.test", 443, echo)
	c := e.tunnel("raw.arcfence.test:443")
	fmt.Fprint(c, "ping")
	b := make([]byte, 4)
	if _, err := io.ReadFull(c, b); err != nil {
		t.Fatal(err)
	}
	if _, err := readAllBounded(c); isTimeout(err) {
		t.Fatal("idle tunnel not closed")
	}
	e.logs.find(t, map[string]any{"msg": msgTunnelClosed, "end": "idle timeout"})
}

func TestShutdownDrains(t *testing.T) {
	leakCheck(t)
	e := newEnv(t, nil)
	e.rawOrigin("raw.arcfence.test", 443, echo)
	c := e.tunnel("raw.arcfence.test:443")
	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), wait)
		defer cancel()
		done <- e.s.Shutdown(ctx)
	}()
	// The open tunnel keeps working while the server drains...
	deadline := time.Now().Add(wait)
	for {
		if _, err := net.DialTimeout("tcp", e.addr, time.Second); err != nil {
			break // ...the listener is closed
		}
		if time.Now().After(deadline) {
			t.Fatal("listener still accepting during shutdown")
		}
		time.Sleep(5 * time.Millisecond)
	}
	fmt.Fprint(c, "ping")
	b := make([]byte, 4)
	if _, err := io.ReadFull(c, b); err != nil || string(b) != "ping" {
		t.Fatalf("tunnel during drain: %q %v", b, err)
	}
	select {
	case err := <-done:
		t.Fatalf("Shutdown returned %v with a tunnel open", err)
	default:
	}
	_ = c.Close()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Shutdown: %v", err)
		}
	case <-time.After(wait):
		t.Fatal("Shutdown did not return after the last tunnel closed")
	}
}

func TestShutdownGraceOver(t *testing.T) {
	leakCheck(t)
	e := newEnv(t, nil)
	e.rawOrigin("raw.arcfence.test", 443, echo)
	c := e.tunnel("raw.arcfence.test:443")
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if err := e.s.Shutdown(ctx); err == nil {
		t.Fatal("Shutdown reported a clean drain with a tunnel open")
	}
	if _, err := readAllBounded(c); isTimeout(err) {
		t.Fatal("tunnel left open after the grace period")
	}
}

func TestReloadKeepsTunnels(t *testing.T) {
	leakCheck(t)
	e := newEnv(t, nil)
	e.rawOrigin("raw.arcfence.test", 443, echo)
	c := e.tunnel("raw.arcfence.test:443")
	ping := func() {
		t.Helper()
		fmt.Fprint(c, "ping")
		b := make([]byte, 4)
		if _, err := io.ReadFull(c, b); err != nil || string(b) != "ping" {
			t.Fatalf("tunnel after reload: %q %v", b, err)
		}
	}
	// Valid: raw.arcfence.test is no longer allowed for new tunnels.
	cfg := e.cfg
	cfg.Allow = []string{"plain.arcfence.test:80"}
	if err := e.s.Reload(cfg.settings(t)); err != nil {
		t.Fatal(err)
	}
	ping()
	_, _, resp := e.connect("raw.arcfence.test:443")
	if resp.StatusCode != 403 || resp.Header.Get(HeaderReason) != "not-in-allowlist" {
		t.Fatalf("new tunnel after reload: %s %q", resp.Status, resp.Header.Get(HeaderReason))
	}
	// Invalid (no policy): refused, the running settings stay.
	if err := e.s.Reload(Settings{SNI: SNILog}); err == nil {
		t.Fatal("settings without a policy accepted")
	}
	ping()
	if e.s.cur.Load().sni != SNIEnforce {
		t.Fatal("settings changed by a failed reload")
	}
}

func TestPlainHTTP(t *testing.T) {
	leakCheck(t)
	e := newEnv(t, nil)
	got := make(chan *http.Request, 1)
	e.plainOrigin("microsoft.com", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got <- r
		w.Header().Set("Keep-Alive", "timeout=5")
		fmt.Fprint(w, "cert bytes")
	}))
	c := e.dialProxy()
	fmt.Fprintf(c, "GET http://microsoft.com/pkiops/certs/a.crt HTTP/1.1\r\nHost: evil.example\r\n"+
		"Connection: keep-alive, X-Hop\r\nX-Hop: 1\r\nProxy-Authorization: secret\r\nKeep-Alive: 300\r\nX-End: yes\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || string(body) != "cert bytes" {
		t.Fatalf("got %s %q", resp.Status, body)
	}
	if resp.Header.Get("Keep-Alive") != "" {
		t.Error("hop-by-hop Keep-Alive passed back")
	}
	r := <-got
	if r.Host != "microsoft.com" {
		t.Errorf("origin saw Host %q", r.Host)
	}
	for _, h := range []string{"X-Hop", "Proxy-Authorization", "Keep-Alive"} {
		if r.Header.Get(h) != "" {
			t.Errorf("hop-by-hop %s forwarded", h)
		}
	}
	if r.Header.Get("X-End") != "yes" {
		t.Error("end-to-end header dropped")
	}
	// A plain request to an origin that refuses -> 502.
	ln := e.listenOn("plain.arcfence.test")
	closedAddr := ln.Addr().String()
	_ = ln.Close()
	e.route("plain.arcfence.test", 80, closedAddr)
	c2 := e.dialProxy()
	fmt.Fprintf(c2, "GET http://plain.arcfence.test/ HTTP/1.1\r\nHost: plain.arcfence.test\r\n\r\n")
	resp, err = http.ReadResponse(bufio.NewReader(c2), nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusBadGateway {
		t.Fatalf("status %d, want 502", resp.StatusCode)
	}
}

func TestHTTPSListener(t *testing.T) {
	leakCheck(t)
	e := newEnv(t, nil)
	e.tlsOrigin("management.azure.com", protoHandler())
	dir := t.TempDir()
	if _, err := certs.Init(dir, certs.InitOptions{Hosts: []string{"127.0.0.1"}}); err != nil {
		t.Fatal(err)
	}
	rl, err := certs.NewReloader(filepath.Join(dir, certs.ServerCertFile), filepath.Join(dir, certs.ServerKeyFile), zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- e.s.ServeTLS(ln, rl.TLSConfig()) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), wait)
		defer cancel()
		_ = e.s.Shutdown(ctx)
		select {
		case err := <-served:
			if err != nil {
				t.Errorf("ServeTLS: %v", err)
			}
		case <-time.After(wait):
			t.Error("ServeTLS did not return")
		}
	})
	caPEM, err := os.ReadFile(filepath.Join(dir, certs.CACertFile))
	if err != nil {
		t.Fatal(err)
	}
	roots := e.ca.Pool.Clone()
	roots.AppendCertsFromPEM(caPEM)
	tr := &http.Transport{
		Proxy:           http.ProxyURL(&url.URL{Scheme: "https", Host: ln.Addr().String()}),
		TLSClientConfig: &tls.Config{RootCAs: roots},
	}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr, Timeout: wait}).Get("https://management.azure.com/tls")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(body) != "HTTP/1.1 management.azure.com /tls" && string(body) != "HTTP/2.0 management.azure.com /tls" {
		t.Fatalf("body %q", body)
	}
}

// TestConnectAfterPlainRequest: a CONNECT that follows a plain request on
// the same connection is served by the net/http path, bytes behind it kept.
func TestConnectAfterPlainRequest(t *testing.T) {
	leakCheck(t)
	e := newEnv(t, nil)
	e.plainOrigin("plain.arcfence.test", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, "plain ok")
	}))
	e.rawOrigin("raw.arcfence.test", 443, echo)
	c := e.dialProxy()
	br := bufio.NewReader(c)
	fmt.Fprint(c, "GET http://plain.arcfence.test/ HTTP/1.1\r\nHost: plain.arcfence.test\r\n\r\n")
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	if string(body) != "plain ok" {
		t.Fatalf("plain answer %q", body)
	}
	// CONNECT and the first tunnel bytes in one write.
	fmt.Fprint(c, "CONNECT raw.arcfence.test:443 HTTP/1.1\r\nHost: raw.arcfence.test:443\r\n\r\nearly")
	resp, err = http.ReadResponse(br, &http.Request{Method: http.MethodConnect})
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("CONNECT after a plain request: %v %v", resp, err)
	}
	b := make([]byte, 5)
	if _, err := io.ReadFull(br, b); err != nil || string(b) != "early" {
		t.Fatalf("echo of the pipelined bytes: %q %v", b, err)
	}
}

// TestConnectLongHead: a CONNECT head longer than the fast path's buffer is
// handed to net/http with what was read, and the tunnel still works.
func TestConnectLongHead(t *testing.T) {
	leakCheck(t)
	e := newEnv(t, nil)
	e.rawOrigin("raw.arcfence.test", 443, echo)
	c := e.dialProxy()
	br := bufio.NewReader(c)
	fmt.Fprintf(c, "CONNECT raw.arcfence.test:443 HTTP/1.1\r\nHost: raw.arcfence.test:443\r\nX-Pad: %s\r\n\r\nearly",
		strings.Repeat("p", 3*headBufSize))
	resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodConnect})
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("long CONNECT head: %v %v", resp, err)
	}
	b := make([]byte, 5)
	if _, err := io.ReadFull(br, b); err != nil || string(b) != "early" {
		t.Fatalf("echo of the pipelined bytes: %q %v", b, err)
	}
}

func TestParseConnectHead(t *testing.T) {
	for _, tc := range []struct {
		head string
		auth string
		ok   bool
	}{
		{"CONNECT a.example:443 HTTP/1.1\r\nHost: a.example:443\r\n\r\n", "a.example:443", true},
		{"CONNECT a.example:443 HTTP/1.0\r\n\r\n", "a.example:443", true},
		{"CONNECT [2001:db8::1]:443 HTTP/1.1\r\n\r\n", "[2001:db8::1]:443", true},
		{"CONNECT a.example HTTP/1.1\r\n\r\n", "", false},       // no port: net/http's
		{"CONNECT a.example:+443 HTTP/1.1\r\n\r\n", "", false},  // net/http refuses it
		{"CONNECT a@b.example:443 HTTP/1.1\r\n\r\n", "", false}, // userinfo: net/http's
		{"CONNECT [fe80::1%25eth0]:443 HTTP/1.1\r\n\r\n", "", false},
		{"CONNECT a.example:443 HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", "", false},
		{"CONNECT a.example:443 HTTP/1.1\r\nContent-Length: 3\r\n\r\n", "", false},
		{"CONNECT a.example:443 HTTP/1.1\r\n folded: x\r\n\r\n", "", false},
		{"CONNECT a.example:443 HTTP/2.0\r\n\r\n", "", false},
		{"GET http://a.example/ HTTP/1.1\r\n\r\n", "", false},
		{"CONNECT a.example:443 HTTP/1.1\r\nX: a\x00b\r\n\r\n", "", false},
	} {
		auth, _, ok := parseConnectHead([]byte(tc.head))
		if ok != tc.ok || string(auth) != tc.auth {
			t.Errorf("%q: got (%q, %v), want (%q, %v)", tc.head, auth, ok, tc.auth, tc.ok)
		}
	}
}

// TestSNIForIPTarget: a tunnel to an IP address (admitted by an address
// entry) takes a ClientHello naming an allowed name, not another name.
func TestSNIForIPTarget(t *testing.T) {
	leakCheck(t)
	e := newEnv(t, func(c *envConfig) { c.Allow = append(c.Allow, "127.0.0.14:443") })
	e.tlsOrigin("raw.arcfence.test", protoHandler())
	for _, tc := range []struct {
		sni string
		ok  bool
	}{{"management.azure.com", true}, {"evil.example", false}, {"", true}} {
		c := e.tunnel("127.0.0.14:443")
		tc2 := tls.Client(c, &tls.Config{ServerName: tc.sni, InsecureSkipVerify: true})
		err := tc2.Handshake()
		if tc.ok && err != nil {
			t.Errorf("SNI %q: %v", tc.sni, err)
		}
		if !tc.ok && (err == nil || !strings.Contains(err.Error(), "access denied")) {
			t.Errorf("SNI %q: %v, want access denied", tc.sni, err)
		}
		_ = tc2.Close()
	}
	e.logs.find(t, map[string]any{"msg": "denied", "host": "127.0.0.14", "reason": "sni-mismatch"})
}

// TestSettingsNeedPositiveLimits: settings whose header or dial timeout or
// header size is zero (which would answer every connection 408 or every
// dial 504) are refused at New and at Reload.
func TestSettingsNeedPositiveLimits(t *testing.T) {
	good := testConfig().settings(t)
	for _, edit := range []func(*Settings){
		func(s *Settings) { s.Limits.HeaderTimeout = 0 },
		func(s *Settings) { s.Limits.DialTimeout = 0 },
		func(s *Settings) { s.Limits.MaxHeaderBytes = 0 },
	} {
		st := good
		edit(&st)
		if _, err := New(Options{Settings: st}); err == nil {
			t.Errorf("New accepted %+v", st.Limits)
		}
	}
	if _, err := New(Options{Settings: good}); err != nil {
		t.Fatalf("the test's own settings: %v", err)
	}
}

package proxy

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"testing"

	"github.com/miekg/dns"
	"github.com/rs/zerolog"

	"github.com/arcfence/arcfence/dnsfilter"
	"github.com/arcfence/arcfence/policy"
)

// The learned-address tests (issue 13 finding 1): a real DNS filter hands
// out learnedAddr for learnedName (a *.his.arc.azure.com:443 TLS row) and
// 127.0.0.16 for microsoft.com (the pkiops path row); the proxy consults
// the filter for IP-literal destinations.
const (
	learnedName = "learned.his.arc.azure.com"
	learnedAddr = "127.0.0.21"
)

// learnedEnv is a proxy with dns.admit_learned_addresses on (learn mode when
// learn is set) whose LearnedAddrs is a running dnsfilter.Filter that uses
// the env's stub resolver as its upstream. Dials to learnedAddr go to a TLS
// origin for learnedName on 443 and to an echo origin on every other port,
// whose connections are counted: the caller asserts on them.
type learnedEnv struct {
	*env
	filter *dnsfilter.Filter
	mu     sync.Mutex
	echoed int // connections the echo origin got
}

func newLearnedEnv(t *testing.T, learn bool) *learnedEnv {
	t.Helper()
	e := newEnv(t, func(c *envConfig) {
		c.AdmitLearned = true
		if learn {
			c.Mode = policy.ModeLearn
		}
	})
	e.dns.set(learnedName, learnedAddr)
	le := &learnedEnv{env: e}

	pol, err := policy.Compile(e.cfg.Config, nil)
	if err != nil {
		t.Fatal(err)
	}
	f, err := dnsfilter.New(dnsfilter.Options{Listen: "127.0.0.1:0", Upstreams: []string{e.dns.addr},
		Policy: pol, Logger: zerolog.New(zerolog.NewTestWriter(t))})
	if err != nil {
		t.Fatal(err)
	}
	errc := make(chan error, 1)
	go func() { errc <- f.Run(context.Background()) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), wait)
		defer cancel()
		_ = f.Shutdown(ctx)
		if err := <-errc; err != nil {
			t.Errorf("filter Run: %v", err)
		}
	})
	le.filter = f
	e.s.learned = f

	// The TLS origin for learnedName on 443.
	ln, err := net.Listen("tcp", learnedAddr+":0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: protoHandler(), TLSConfig: &tls.Config{Certificates: []tls.Certificate{e.ca.Leaf(t, learnedName)}}}
	go func() { _ = srv.ServeTLS(ln, "", "") }()
	t.Cleanup(func() { _ = srv.Close() })
	// The counting echo origin on every other port tried.
	eln, err := net.Listen("tcp", learnedAddr+":0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	go func() {
		for {
			c, err := eln.Accept()
			if err != nil {
				return
			}
			le.mu.Lock()
			le.echoed++
			le.mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				echo(c)
			}()
		}
	}()
	t.Cleanup(func() { _ = eln.Close(); wg.Wait() })
	a := netip.MustParseAddr(learnedAddr)
	e.mu.Lock()
	e.remap[netip.AddrPortFrom(a, 443)] = netip.MustParseAddrPort(ln.Addr().String())
	for _, port := range []uint16{80, 9090, 8084} {
		e.remap[netip.AddrPortFrom(a, port)] = netip.MustParseAddrPort(eln.Addr().String())
	}
	e.mu.Unlock()
	return le
}

// resolve asks the filter for name's A record, as an agent would.
func (le *learnedEnv) resolve(t *testing.T, name string) {
	t.Helper()
	c := &dns.Client{Net: "udp", Timeout: wait}
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(name), dns.TypeA)
	r, _, err := c.Exchange(m, le.filter.Addr())
	if err != nil {
		t.Fatal(err)
	}
	if r.Rcode != dns.RcodeSuccess || len(r.Answer) != 1 {
		t.Fatalf("filter answer for %s: %v", name, r)
	}
}

// echoConns returns the connections the echo origin got.
func (le *learnedEnv) echoConns() int {
	le.mu.Lock()
	defer le.mu.Unlock()
	return le.echoed
}

// TestLearnedAddressBoundToName: an address the filter handed out for a
// name is admitted only where the policy admits that name: its ports, its
// TLS-only property (not-tls and the SNI check as for the name), its path
// row over plain HTTP. Each refused variant is one the issue found admitted.
func TestLearnedAddressBoundToName(t *testing.T) {
	leakCheck(t)
	le := newLearnedEnv(t, false)
	le.plainOrigin("microsoft.com", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, "cert at "+r.URL.Path)
	}))
	le.resolve(t, learnedName)
	le.resolve(t, "microsoft.com")

	refused := []struct {
		name, req, host string
		port            int
	}{
		{"connect-other-port-80", "CONNECT " + learnedAddr + ":80 HTTP/1.1\r\nHost: x\r\n\r\n", learnedAddr, 80},
		{"connect-other-port-9090", "CONNECT " + learnedAddr + ":9090 HTTP/1.1\r\nHost: x\r\n\r\n", learnedAddr, 9090},
		{"connect-mapped-other-port", "CONNECT [::ffff:" + learnedAddr + "]:80 HTTP/1.1\r\nHost: x\r\n\r\n", "::ffff:" + learnedAddr, 80},
		{"plain-get-tls-row", "GET http://" + learnedAddr + "/anything HTTP/1.1\r\nHost: " + learnedAddr + "\r\n\r\n", learnedAddr, 80},
		{"plain-get-outside-path-row", "GET http://127.0.0.16/other HTTP/1.1\r\nHost: 127.0.0.16\r\n\r\n", "127.0.0.16", 80},
		{"connect-path-row-on-80", "CONNECT 127.0.0.16:80 HTTP/1.1\r\nHost: x\r\n\r\n", "127.0.0.16", 80},
		{"connect-not-learned", "CONNECT 127.0.0.22:443 HTTP/1.1\r\nHost: x\r\n\r\n", "127.0.0.22", 443},
	}
	for _, tc := range refused {
		t.Run(tc.name, func(t *testing.T) {
			runAdvCase(t, le.env, advCase{req: tc.req, status: http.StatusForbidden, reason: policy.IPLiteral, host: tc.host, port: tc.port})
			le.logs.find(t, map[string]any{"msg": "denied", "host": tc.host, "port": tc.port, "reason": "ip-literal", "mode": "enforce"})
		})
	}

	t.Run("connect-443-plain-bytes", func(t *testing.T) {
		c := le.tunnel(learnedAddr + ":443")
		fmt.Fprintf(c, "GET / HTTP/1.1\r\nHost: %s\r\n\r\n", learnedAddr)
		br := bufio.NewReader(c)
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		le.refusal(t, resp, learnedAddr, 443, policy.NotTLS)
		closedAfter(t, c, br)
	})
	t.Run("connect-443-sni-of-another-name", func(t *testing.T) {
		// management.azure.com is allowed on 443, but this address was
		// never handed out for it.
		c := le.tunnel(learnedAddr + ":443")
		tc := tls.Client(c, &tls.Config{ServerName: "management.azure.com", RootCAs: le.ca.Pool})
		if err := tc.Handshake(); err == nil || !strings.Contains(err.Error(), "access denied") {
			t.Fatalf("handshake error %v, want access denied", err)
		}
		le.logs.find(t, map[string]any{"msg": "denied", "host": learnedAddr, "port": 443, "reason": "sni-mismatch"})
	})
	if n := le.echoConns(); n != 0 {
		t.Fatalf("a refused destination was dialed %d times", n)
	}

	for _, target := range []string{learnedAddr + ":443", "[::ffff:" + learnedAddr + "]:443"} {
		t.Run("connect-tls-for-the-name/"+target, func(t *testing.T) {
			c := le.tunnel(target)
			tc := tls.Client(c, &tls.Config{ServerName: learnedName, RootCAs: le.ca.Pool})
			if err := tc.Handshake(); err != nil {
				t.Fatalf("handshake naming %s: %v", learnedName, err)
			}
			_ = tc.Close()
			host := strings.Trim(target[:strings.LastIndexByte(target, ':')], "[]")
			le.logs.find(t, map[string]any{"msg": msgTunnelClosed, "host": host, "port": 443,
				"rule": "*.his.arc.azure.com:443 (dns:learned-address " + learnedName + ")"})
		})
	}
	t.Run("plain-get-under-path-row", func(t *testing.T) {
		resp, err := le.client(false).Get("http://127.0.0.16/pkiops/certs/x.crt")
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusOK || string(b) != "cert at /pkiops/certs/x.crt" {
			t.Fatalf("%s %q", resp.Status, b)
		}
	})
}

// TestLearnedAddressLearnMode: in learn mode a learned address on a port
// its name lacks is admitted and logged as "would deny" (ip-literal), and
// plain bytes on its TLS row as "would deny" (not-tls), as for any
// destination learn mode lets through.
func TestLearnedAddressLearnMode(t *testing.T) {
	leakCheck(t)
	le := newLearnedEnv(t, true)
	le.resolve(t, learnedName)

	c := le.tunnel(learnedAddr + ":9090")
	fmt.Fprint(c, "ping")
	b := make([]byte, 4)
	if _, err := io.ReadFull(c, b); err != nil || string(b) != "ping" {
		t.Fatalf("echo %q %v", b, err)
	}
	le.logs.find(t, map[string]any{"msg": "would deny", "host": learnedAddr, "port": 9090, "reason": "ip-literal", "mode": "learn"})

	c = le.tunnel(learnedAddr + ":443")
	fmt.Fprint(c, "GET / HTTP/1.1\r\n\r\n")
	le.logs.find(t, map[string]any{"msg": "would deny", "host": learnedAddr, "port": 443, "reason": "not-tls", "mode": "learn"})
	_ = c.Close()
	if n := le.echoConns(); n != 1 {
		t.Fatalf("echo origin got %d connections, want 1", n)
	}
}

package proxy

import (
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"testing"

	"github.com/arcfence/arcfence/policy"
)

// testGateway is the Arc gateway endpoint of these tests, served on its
// own loopback address.
const (
	testGateway     = "contoso.gw.arc.azure.com"
	testGatewayAddr = "127.0.0.19"
)

// gatewayEnv is a proxy with connection gateway for servers (revision
// 2026-08) and an HTTPS origin standing in for the gateway endpoint.
func gatewayEnv(t *testing.T) *env {
	t.Helper()
	e := newEnv(t, func(c *envConfig) {
		c.Revision = policy.Revision202608
		c.Connection = policy.ConnectionGateway
		c.GatewayEndpoint = "https://" + testGateway + "/"
	})
	e.dns.set(testGateway, testGatewayAddr)
	ln, err := net.Listen("tcp", net.JoinHostPort(testGatewayAddr, "0"))
	if err != nil {
		t.Fatal(err)
	}
	cert := e.ca.Leaf(t, testGateway)
	srv := &http.Server{Handler: protoHandler(), TLSConfig: &tls.Config{Certificates: []tls.Certificate{cert}}}
	go func() { _ = srv.ServeTLS(ln, "", "") }()
	t.Cleanup(func() { _ = srv.Close() })
	e.mu.Lock()
	e.remap[netip.AddrPortFrom(netip.MustParseAddr(testGatewayAddr), 443)] = netip.MustParseAddrPort(ln.Addr().String())
	e.mu.Unlock()
	return e
}

// TestGatewayEndpointThroughProxy: under connection gateway the proxy
// admits a CONNECT to the gateway endpoint and checks its SNI like any
// TLS row, and refuses a direct row the gateway replaces.
func TestGatewayEndpointThroughProxy(t *testing.T) {
	leakCheck(t)
	e := gatewayEnv(t)
	t.Run("admitted", func(t *testing.T) {
		cl := e.client(false)
		resp, err := cl.Get("https://" + testGateway + "/")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusOK || string(body) != "HTTP/1.1 "+testGateway+" /" {
			t.Fatalf("GET through the gateway endpoint: %s %q", resp.Status, body)
		}
		cl.CloseIdleConnections()
		e.logs.find(t, map[string]any{"msg": "tunnel closed", "host": testGateway, "port": 443, "offering": "servers", "rule": testGateway + ":443"})
	})
	t.Run("sni-mismatch", func(t *testing.T) {
		c := e.tunnel(testGateway + ":443")
		tc := tls.Client(c, &tls.Config{ServerName: "other.gw.arc.azure.com", RootCAs: e.ca.Pool})
		err := tc.Handshake()
		if err == nil || !strings.Contains(err.Error(), "access denied") {
			t.Fatalf("handshake error %v, want access denied", err)
		}
		e.logs.find(t, map[string]any{"msg": "denied", "host": testGateway, "port": 443, "reason": "sni-mismatch"})
	})
	t.Run("replaced-direct-row", func(t *testing.T) {
		direct := e.cfg.Config
		direct.Connection, direct.GatewayEndpoint = "", ""
		dp, err := policy.Compile(direct, nil)
		if err != nil {
			t.Fatal(err)
		}
		for _, target := range []string{"a1.guestnotificationservice.azure.com:443", "eastus2.guestconfiguration.azure.com:443"} {
			host, _, _ := strings.Cut(target, ":")
			if d := dp.Decide(policy.Dest{Host: host, Port: 443}); !d.Allowed() {
				t.Fatalf("%s is no direct row of servers (%s)", target, d.Reason)
			}
			_, _, resp := e.connect(target)
			if resp.StatusCode != http.StatusForbidden || resp.Header.Get("X-Arcfence-Reason") != "not-in-allowlist" {
				t.Errorf("CONNECT %s: %s, reason %q; want 403 not-in-allowlist", target, resp.Status, resp.Header.Get("X-Arcfence-Reason"))
			}
		}
	})
	t.Run("other-gateway", func(t *testing.T) {
		_, _, resp := e.connect("other.gw.arc.azure.com:443")
		if resp.StatusCode != http.StatusForbidden || resp.Header.Get("X-Arcfence-Reason") != "not-in-allowlist" {
			t.Errorf("CONNECT to another gateway: %s, reason %q", resp.Status, resp.Header.Get("X-Arcfence-Reason"))
		}
	})
}

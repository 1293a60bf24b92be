package proxy

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/arcfence/arcfence/policy"
)

// profileEnv is a proxy whose default profile serves 127.0.0.1 (it allows
// raw.arcfence.test and plain.arcfence.test:80), with the profile
// "appliance" for 127.0.0.2 (servers only, enforce) and "learner" for
// 127.0.0.4 (servers only, learn mode); 127.0.0.3 is in no profile.
func profileEnv(t *testing.T) *env {
	e := newEnv(t, func(c *envConfig) {
		c.Clients = prefixes("127.0.0.1/32")
		servers := policy.Config{Revision: policy.Revision202401, Regions: []string{"eastus2"}, Offerings: []string{policy.OfferingServers}}
		c.Named = []namedProfile{
			{Name: "appliance", Config: servers, Clients: prefixes("127.0.0.2/32")},
			{Name: "learner", Config: servers, Mode: policy.ModeLearn, Clients: prefixes("127.0.0.4/32")},
		}
	})
	e.rawOrigin("raw.arcfence.test", 443, echo)
	return e
}

// connectFrom sends a CONNECT from the loopback address src and returns
// the connection and the answer.
func connectFrom(t *testing.T, e *env, src, target string) (net.Conn, *bufio.Reader, *http.Response) {
	t.Helper()
	d := net.Dialer{Timeout: wait, LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
	c, err := d.Dial("tcp", e.addr)
	if err != nil {
		t.Fatal(err)
	}
	_ = c.SetDeadline(time.Now().Add(wait))
	t.Cleanup(func() { _ = c.Close() })
	fmt.Fprintf(c, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n", target, target)
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodConnect})
	if err != nil {
		t.Fatalf("CONNECT %s from %s: %v", target, src, err)
	}
	return c, br, resp
}

// admittedFrom CONNECTs from src and fails unless the answer is 200.
func admittedFrom(t *testing.T, e *env, src, target string) (net.Conn, *bufio.Reader) {
	t.Helper()
	c, br, resp := connectFrom(t, e, src, target)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("CONNECT %s from %s: %s", target, src, resp.Status)
	}
	return c, br
}

// tunnelEchoes checks that a tunnel carries bytes both ways.
func tunnelEchoes(t *testing.T, c net.Conn, br *bufio.Reader) {
	t.Helper()
	if _, err := c.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 4)
	if _, err := io.ReadFull(br, b); err != nil || string(b) != "ping" {
		t.Fatalf("echo: %q, %v", b, err)
	}
}

// TestProfilesConnect: the same destination gets a different answer per
// source address, and the lines name the profile that decided.
func TestProfilesConnect(t *testing.T) {
	leakCheck(t)
	e := profileEnv(t)
	const target = "raw.arcfence.test:443"

	c, br := admittedFrom(t, e, "127.0.0.1", target)
	tunnelEchoes(t, c, br)
	_ = c.Close()
	e.logs.find(t, map[string]any{"msg": "tunnel closed", "client": "127.0.0.1", "host": "raw.arcfence.test", "profile": "default"})

	_, _, resp := connectFrom(t, e, "127.0.0.2", target)
	if resp.StatusCode != http.StatusForbidden || resp.Header.Get("X-Arcfence-Reason") != "not-in-allowlist" {
		t.Fatalf("appliance profile: %s %q, want 403 not-in-allowlist", resp.Status, resp.Header.Get("X-Arcfence-Reason"))
	}
	e.logs.find(t, map[string]any{"msg": "denied", "client": "127.0.0.2", "host": "raw.arcfence.test", "reason": "not-in-allowlist", "profile": "appliance", "mode": "enforce"})

	// A profile in learn mode while the rest enforce.
	c, br = admittedFrom(t, e, "127.0.0.4", target)
	tunnelEchoes(t, c, br)
	e.logs.find(t, map[string]any{"msg": "would deny", "client": "127.0.0.4", "host": "raw.arcfence.test", "profile": "learner", "mode": "learn"})

	_, _, resp = connectFrom(t, e, "127.0.0.3", target)
	if resp.Header.Get("X-Arcfence-Reason") != "client-not-allowed" {
		t.Fatalf("no profile: %s %q, want client-not-allowed", resp.Status, resp.Header.Get("X-Arcfence-Reason"))
	}
	m := e.logs.find(t, map[string]any{"msg": "denied", "client": "127.0.0.3", "reason": "client-not-allowed"})
	if p, ok := m["profile"]; ok {
		t.Errorf("client in no profile logged with profile %v", p)
	}
}

// TestProfilesPlain: plain HTTP is decided with the client's profile too.
func TestProfilesPlain(t *testing.T) {
	leakCheck(t)
	e := profileEnv(t)
	e.plainOrigin("plain.arcfence.test", http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok") }))
	for _, c := range []struct {
		src, profile string
		want         int
	}{{"127.0.0.1", "default", http.StatusOK}, {"127.0.0.2", "appliance", http.StatusForbidden}} {
		tr := &http.Transport{Proxy: http.ProxyURL(e.url), DialContext: (&net.Dialer{Timeout: wait, LocalAddr: &net.TCPAddr{IP: net.ParseIP(c.src)}}).DialContext}
		t.Cleanup(tr.CloseIdleConnections)
		resp, err := (&http.Client{Transport: tr, Timeout: wait}).Get("http://plain.arcfence.test/x")
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		_ = resp.Body.Close()
		if resp.StatusCode != c.want {
			t.Errorf("GET from %s: %s, want %d", c.src, resp.Status, c.want)
		}
	}
	e.logs.find(t, map[string]any{"msg": "denied", "client": "127.0.0.2", "host": "plain.arcfence.test", "port": 80, "profile": "appliance"})
}

// TestProfilesReload: a reload that changes a profile applies to new
// connections; a tunnel opened before it keeps its decision.
func TestProfilesReload(t *testing.T) {
	leakCheck(t)
	e := profileEnv(t)
	const target = "raw.arcfence.test:443"
	old, oldBR := admittedFrom(t, e, "127.0.0.1", target)
	// The reload moves raw.arcfence.test from the default profile to
	// the appliance profile.
	cfg := e.cfg
	cfg.Config.Allow = []string{"plain.arcfence.test:80"}
	cfg.Named = append([]namedProfile(nil), cfg.Named...)
	cfg.Named[0].Config.Allow = []string{"raw.arcfence.test"}
	if err := e.s.Reload(cfg.settings(t)); err != nil {
		t.Fatal(err)
	}
	tunnelEchoes(t, old, oldBR) // the tunnel opened before the reload still carries bytes
	c, br := admittedFrom(t, e, "127.0.0.2", target)
	tunnelEchoes(t, c, br)
	_, _, resp := connectFrom(t, e, "127.0.0.1", target)
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("default after reload: %s, want 403", resp.Status)
	}
}

// TestProfilesWebsocket: a websocket client (gorilla, which CONNECTs for
// ws:// through a proxy) is decided with its profile, and the lines name
// the profile. The absolute-form upgrade path shares precheck with plain
// HTTP (TestProfilesPlain).
func TestProfilesWebsocket(t *testing.T) {
	leakCheck(t)
	e := profileEnv(t)
	e.plainOrigin("plain.arcfence.test", wsEcho())
	for _, c := range []struct {
		src, profile string
		ok           bool
	}{{"127.0.0.1", "default", true}, {"127.0.0.2", "appliance", false}} {
		d := websocket.Dialer{
			Proxy:            http.ProxyURL(e.url),
			HandshakeTimeout: wait,
			NetDial: func(network, addr string) (net.Conn, error) {
				return (&net.Dialer{Timeout: wait, LocalAddr: &net.TCPAddr{IP: net.ParseIP(c.src)}}).Dial(network, addr)
			},
		}
		// ws:// through an HTTP proxy is sent as a CONNECT by gorilla; the
		// plain.arcfence.test:80 entry admits it for the default profile.
		ws, resp, err := d.Dial("ws://plain.arcfence.test/ws", nil)
		if !c.ok {
			if err == nil {
				_ = ws.Close()
				t.Fatalf("from %s: websocket admitted, want a refusal", c.src)
			}
			e.logs.find(t, map[string]any{"msg": "denied", "client": c.src, "host": "plain.arcfence.test", "port": 80, "profile": c.profile})
			continue
		}
		if err != nil {
			t.Fatalf("from %s: %v", c.src, err)
		}
		if resp.StatusCode != http.StatusSwitchingProtocols {
			t.Fatalf("from %s: %s", c.src, resp.Status)
		}
		exchange(t, ws, 0, 20)
		_ = ws.Close()
		e.logs.find(t, map[string]any{"msg": msgTunnelClosed, "client": c.src, "host": "plain.arcfence.test", "profile": c.profile})
	}
}

package check

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/rs/zerolog"

	"github.com/arcfence/arcfence/internal/config"
	"github.com/arcfence/arcfence/policy"
	"github.com/arcfence/arcfence/proxy"
)

// stubResolver answers A queries for the names in a with their address and
// NXDOMAIN for every other name, on a loopback UDP port.
func stubResolver(t *testing.T, a map[string]string) string {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	started := make(chan struct{})
	srv := &dns.Server{PacketConn: pc, NotifyStartedFunc: func() { close(started) },
		Handler: dns.HandlerFunc(func(w dns.ResponseWriter, q *dns.Msg) {
			m := new(dns.Msg)
			m.SetReply(q)
			name := strings.ToLower(q.Question[0].Name)
			mu.Lock()
			ip, ok := a[strings.TrimSuffix(name, ".")]
			mu.Unlock()
			switch {
			case !ok:
				m.Rcode = dns.RcodeNameError
			case q.Question[0].Qtype == dns.TypeA:
				rr, _ := dns.NewRR(fmt.Sprintf("%s 60 IN A %s", name, ip))
				m.Answer = append(m.Answer, rr)
			}
			_ = w.WriteMsg(m)
		})}
	go func() { _ = srv.ActivateAndServe() }()
	select {
	case <-started:
	case <-time.After(10 * time.Second):
		t.Fatal("dns stub did not start")
	}
	t.Cleanup(func() { _ = srv.Shutdown() })
	return pc.LocalAddr().String()
}

// TestCheckThroughArcfence runs the checker through the real proxy package
// on loopback: catalog names do not resolve (the stub resolver knows none),
// allow entries lead to loopback origins that answer, present a wrong
// certificate, refuse, never answer, or are denied by a deny entry.
func TestCheckThroughArcfence(t *testing.T) {
	l := newLab(t)
	release := make(chan struct{})
	var releaseOnce sync.Once
	releaseAll := func() { releaseOnce.Do(func() { close(release) }) }
	defer releaseAll()
	port := func(ln net.Listener) int { return ln.Addr().(*net.TCPAddr).Port }

	good := l.listen()
	l.serve(good, func(c net.Conn) { tlsServe(c, l.ca.ServerConfig(t, "good.arcfence.test")) })
	wrong := l.listen()
	l.serve(wrong, func(c net.Conn) { tlsServe(c, l.ca.ServerConfig(t, "other.example")) })
	silent := l.listen()
	l.serve(silent, func(c net.Conn) {
		select {
		case <-release:
		case <-time.After(30 * time.Second):
		}
	})
	closedLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := port(closedLn)
	closedLn.Close()

	names := map[string]string{}
	for _, n := range []string{"good", "wrong", "silent", "closed", "denied", "unlisted"} {
		names[n+".arcfence.test"] = "127.0.0.1"
	}
	cfg := config.Default()
	cfg.Listen = "127.0.0.1:0"
	cfg.Regions = []string{"eastus2"}
	cfg.Offerings = []string{policy.OfferingESU}
	cfg.Resolver = stubResolver(t, names)
	cfg.AllowRanges = []string{"127.0.0.0/8"}
	cfg.Limits.DialTimeout = 5 * time.Second
	hp := func(h string, p int) string { return h + ":" + strconv.Itoa(p) }
	cfg.Allow = []string{
		hp("good.arcfence.test", port(good)), hp("wrong.arcfence.test", port(wrong)),
		hp("closed.arcfence.test", closed), hp("denied.arcfence.test", port(good)),
		hp("silent.arcfence.test", port(silent)),
	}
	cfg.Deny = []string{"denied.arcfence.test"}
	rt, err := config.Build(&cfg)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := proxy.New(proxy.Options{Settings: rt.Proxy, Logger: zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel)})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	defer func() {
		// the silent origin holds its half-closed tunnel open until released
		releaseAll()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("proxy shutdown: %v", err)
		}
		select {
		case <-served:
		case <-time.After(10 * time.Second):
			t.Error("Serve did not return")
		}
	}()

	targets, _, err := Targets(rt.Policy().Rules(), nil)
	if err != nil {
		t.Fatal(err)
	}
	c := Checker{Proxy: &url.URL{Scheme: "http", Host: ln.Addr().String()}, RootCAs: l.ca.Pool, Timeout: longTimeout}
	var slow []Target
	for i, tg := range targets {
		if tg.Host == "silent.arcfence.test" {
			slow = append(slow, tg)
			targets = append(targets[:i], targets[i+1:]...)
			break
		}
	}
	if len(slow) != 1 {
		t.Fatalf("no target for the silent origin in %v", targets)
	}
	// a name the allowlist does not hold (not a target Targets would make)
	targets = append(targets, Target{Host: "unlisted.arcfence.test", Port: port(good), Scheme: "https", Required: true})
	results := c.Run(context.Background(), targets)
	c.Timeout = shortTimeout
	results = append(results, c.Check(context.Background(), slow[0]))

	byHost := map[string]Result{}
	for _, r := range results {
		byHost[r.Host] = r
	}
	exp := map[string]want{
		"good.arcfence.test":     {true, true, "", "good.arcfence.test"},
		"wrong.arcfence.test":    {true, false, "certificate is valid for other.example", "other.example"},
		"closed.arcfence.test":   {false, false, "proxy answered 502", ""},
		"denied.arcfence.test":   {false, false, "proxy refused: 403 Forbidden (explicit-deny)", ""},
		"silent.arcfence.test":   {true, false, "timed out after", ""},
		"unlisted.arcfence.test": {false, false, "proxy refused: 403 Forbidden (not-in-allowlist)", ""},
		"management.azure.com":   {false, false, "proxy answered 502", ""},
	}
	for h, w := range exp {
		r, ok := byHost[h]
		if !ok {
			t.Errorf("no result for %s", h)
			continue
		}
		// a timeout may strike before or after the tunnel is up
		reachableOK := r.Reachable == w.reachable || strings.HasPrefix(w.err, "timed out")
		if !reachableOK || r.TLSOK != w.tlsOK || !strings.Contains(r.Error, w.err) ||
			(w.err == "") != (r.Error == "") || strings.Join(r.CertNames, ",") != w.names {
			t.Errorf("%s: reachable=%v tls=%v names=%v err=%q; want reachable=%v tls=%v names=%v err~%q",
				h, r.Reachable, r.TLSOK, r.CertNames, r.Error, w.reachable, w.tlsOK, w.names, w.err)
		}
	}
	if !Failed(results) {
		t.Error("Failed = false")
	}
}

func tlsServe(c net.Conn, cfg *tls.Config) {
	c.SetDeadline(time.Now().Add(10 * time.Second))
	tc := tls.Server(c, cfg)
	if tc.Handshake() == nil {
		buf := make([]byte, 512)
		for {
			if _, err := tc.Read(buf); err != nil {
				return
			}
		}
	}
}

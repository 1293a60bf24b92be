package dnsfilter

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/rs/zerolog"

	"github.com/arcfence/arcfence/policy"
	"github.com/arcfence/arcfence/proxy"
)

// echoServer accepts loopback TCP connections and echoes them.
func echoServer(t *testing.T) string {
	return tcpServer(t, func(c net.Conn) {
		c.SetDeadline(time.Now().Add(10 * time.Second))
		io.Copy(c, c)
	})
}

// tcpServer accepts loopback TCP connections until the test ends and hands
// each to fn on its own goroutine, closing it after; it returns the address.
func tcpServer(t *testing.T, fn func(net.Conn)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				fn(c)
			}()
		}
	}()
	t.Cleanup(func() { ln.Close(); <-done })
	return ln.Addr().String()
}

// startProxy runs the proxy with the filter as its LearnedAddrs and allow
// as its extra allow entries.
func startProxy(t *testing.T, f *Filter, admit bool, allow ...string) string {
	t.Helper()
	pol, err := policy.Compile(policy.Config{Regions: []string{"eastus2"}, Offerings: []string{"servers"}, Allow: allow}, nil)
	if err != nil {
		t.Fatal(err)
	}
	st := proxy.Settings{
		Profiles: policy.NewProfiles(&policy.Profile{Name: policy.DefaultProfile, Policy: pol},
			[]netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}),
		AdmitLearned: admit,
		AllowRanges:  []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}, // the origin is on loopback
		SNI:          proxy.SNIOff,
		Limits:       proxy.Limits{HeaderTimeout: 10 * time.Second, MaxHeaderBytes: 32 << 10, DialTimeout: 10 * time.Second},
	}
	s, err := proxy.New(proxy.Options{Settings: st, Logger: zerolog.New(zerolog.NewTestWriter(t)), LearnedAddrs: f})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- s.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		s.Shutdown(ctx)
		select {
		case <-served:
		case <-time.After(10 * time.Second):
			t.Error("proxy did not stop")
		}
	})
	return ln.Addr().String()
}

// connect CONNECTs through the proxy; on 200 it checks an echo round trip.
func connect(t *testing.T, proxyAddr, target string) (int, string) {
	t.Helper()
	c, err := net.DialTimeout("tcp", proxyAddr, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprintf(c, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n", target, target)
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodConnect})
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusOK {
		fmt.Fprint(c, "ping")
		b := make([]byte, 4)
		if _, err := io.ReadFull(br, b); err != nil || string(b) != "ping" {
			t.Fatalf("tunnel echo %q %v", b, err)
		}
	}
	return resp.StatusCode, resp.Header.Get(proxy.HeaderReason)
}

// TestLearnedAddressThroughProxy: an IP-literal CONNECT is admitted only
// when dns.admit_learned_addresses is on, only within the TTL of the answer
// the filter handed out for an allowed name, and only where the policy
// admits that name (issue 13 finding 1: every port was admitted). The
// name's row here is an allow entry on the echo origin's port; the proxy
// package's TestLearnedAddressBoundToName covers the catalog's TLS and path
// rows.
func TestLearnedAddressThroughProxy(t *testing.T) {
	e := startFilter(t, Options{CacheSize: 100})
	origin := echoServer(t)
	_, port, _ := net.SplitHostPort(origin)
	on := startProxy(t, e.f, true, strings.TrimSuffix(nameLoop, ".")+":"+port)
	off := startProxy(t, e.f, false, strings.TrimSuffix(nameLoop, ".")+":"+port)

	if code, reason := connect(t, on, origin); code != http.StatusForbidden || reason != "ip-literal" {
		t.Fatalf("before the DNS answer: %d %s, want 403 ip-literal", code, reason)
	}
	r := ask(t, e.f.Addr(), "udp", question(nameLoop, dns.TypeA, true))
	if len(r.Answer) != 1 {
		t.Fatalf("answer %v", r.Answer)
	}
	if code, reason := connect(t, on, origin); code != http.StatusOK {
		t.Errorf("learned address, option on: %d %s, want 200", code, reason)
	}
	if code, reason := connect(t, off, origin); code != http.StatusForbidden || reason != "ip-literal" {
		t.Errorf("learned address, option off: %d %s, want 403 ip-literal", code, reason)
	}
	// The name is admitted on the origin's port only: the learned address
	// on any other port, or as an IPv4-mapped address on another port, is
	// refused before any dial.
	for _, target := range []string{"127.0.0.1:80", "127.0.0.1:9090", "127.0.0.1:8443", "[::ffff:127.0.0.1]:80"} {
		if code, reason := connect(t, on, target); code != http.StatusForbidden || reason != "ip-literal" {
			t.Errorf("learned address on another port %s: %d %s, want 403 ip-literal", target, code, reason)
		}
	}
	if code, reason := connect(t, on, "[::ffff:127.0.0.1]:"+port); code != http.StatusOK {
		t.Errorf("learned address, IPv4-mapped: %d %s, want 200", code, reason)
	}
	e.clock.Advance(61 * time.Second)
	if code, reason := connect(t, on, origin); code != http.StatusForbidden || reason != "ip-literal" {
		t.Errorf("after the TTL: %d %s, want 403 ip-literal", code, reason)
	}
}

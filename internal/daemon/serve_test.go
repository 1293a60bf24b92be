//go:build unix

package daemon

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// syncBuf is a goroutine-safe log sink.
type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// eventually polls cond for up to 10 s.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// connectStatus sends a CONNECT through the proxy and returns the status
// and the reason header (the connection is closed).
func connectStatus(t *testing.T, proxyAddr, target string) (int, string) {
	t.Helper()
	c, err := net.DialTimeout("tcp", proxyAddr, 5*time.Second)
	if err != nil {
		return 0, err.Error()
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprintf(c, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n", target, target)
	resp, err := http.ReadResponse(bufio.NewReader(c), &http.Request{Method: http.MethodConnect})
	if err != nil {
		return 0, err.Error()
	}
	return resp.StatusCode, resp.Header.Get("X-Arcfence-Reason")
}

func TestServeReloadAndShutdown(t *testing.T) {
	// An echo origin on loopback, reached through an address entry.
	origin := echoOrigin(t)
	proxyAddr := freePort(t)
	adminAddr := freePort(t)
	dir := t.TempDir()
	file := filepath.Join(dir, "arcfence.yaml")
	base := fmt.Sprintf("listen: %s\nadmin: {listen: %q}\nallow_ranges: [127.0.0.0/8]\nresolver: 127.0.0.1:9\n"+
		"limits: {dial_timeout: 1s, shutdown_grace: 5s}\nallow: [%q", proxyAddr, adminAddr, origin)
	reloadOK := func() string {
		resp, err := http.Get("http://" + adminAddr + "/metrics")
		if err != nil {
			return err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		for _, l := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(l, "arcfence_config_last_reload_ok ") {
				return strings.TrimPrefix(l, "arcfence_config_last_reload_ok ")
			}
		}
		return "missing"
	}
	write := func(extra, tail string) {
		t.Helper()
		// Written aside and renamed, as config managers do.
		tmp := filepath.Join(dir, ".tmp")
		if err := os.WriteFile(tmp, []byte(base+extra+"]\n"+tail), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, file); err != nil {
			t.Fatal(err)
		}
	}
	write("", "")

	hup := make(chan os.Signal, 1) // keeps the test process alive on SIGHUP
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)

	src := flagSource(t, []string{"--config", file}...)
	logs := &syncBuf{}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- runServe(ctx, src, logs) }()
	eventually(t, "the proxy to serve", func() bool {
		st, _ := connectStatus(t, proxyAddr, "example.org:443")
		return st != 0
	})
	if st, r := connectStatus(t, proxyAddr, "example.org:443"); st != 403 || r != "not-in-allowlist" {
		t.Fatalf("before reload: %d %q", st, r)
	}

	// A tunnel stays open across reloads.
	tun, ping := openTunnel(t, proxyAddr, origin)
	ping()

	// File change: example.org becomes allowed (the dial then fails: 502/504,
	// not 403); the changed dns.cache_size, read only at start-up, is named.
	write(`, "example.org"`, "dns: {cache_size: 5}\n")
	eventually(t, "the file change to apply", func() bool {
		st, _ := connectStatus(t, proxyAddr, "example.org:443")
		return st == 502 || st == 504
	})
	eventually(t, "a restart warning naming dns.cache_size", func() bool {
		l := logs.String()
		return strings.Contains(l, `"keys":["dns.cache_size"]`) && strings.Contains(l, "take effect at restart")
	})
	ping()

	// A broken file: the running configuration stays.
	write(`, "example.org"`, "sni: sometimes\n")
	eventually(t, "the failed reload to be logged", func() bool {
		return strings.Contains(logs.String(), "config reload failed")
	})
	if st, _ := connectStatus(t, proxyAddr, "example.org:443"); st != 502 && st != 504 {
		t.Fatalf("after a failed reload: %d", st)
	}
	if !strings.Contains(logs.String(), `"level":"error"`) {
		t.Fatal("failed reload not logged at error level")
	}
	if v := reloadOK(); v != "0" {
		t.Fatalf("arcfence_config_last_reload_ok after a failed reload: %s", v)
	}
	ping()

	// SIGHUP re-reads a fixed file (written while watching, then forced).
	write("", "")
	if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the reload to deny example.org again", func() bool {
		st, r := connectStatus(t, proxyAddr, "example.org:443")
		return st == 403 && r == "not-in-allowlist"
	})
	if v := reloadOK(); v != "1" {
		t.Fatalf("arcfence_config_last_reload_ok after a good reload: %s", v)
	}
	ping()

	// Shutdown drains: the tunnel still works until it is closed, then serve exits 0.
	cancel()
	eventually(t, "the listener to close", func() bool {
		c, err := net.DialTimeout("tcp", proxyAddr, time.Second)
		if err != nil {
			return true
		}
		c.Close()
		return false
	})
	ping()
	tun.Close()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("serve: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("serve did not return after the last tunnel closed")
	}
	if !strings.Contains(logs.String(), "arcfence stopped") {
		t.Fatalf("no stop line in:\n%s", logs.String())
	}
}

func TestServeBadConfig(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(file, []byte("listen: 127.0.0.1:0\nsni: sometimes\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	src := flagSource(t, []string{"--config", file}...)
	err := runServe(context.Background(), src, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "sni") {
		t.Fatalf("bad config: %v", err)
	}
}

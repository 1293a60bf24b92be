//go:build unix

package daemon

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// openTunnel opens a CONNECT tunnel to target through the proxy at
// proxyAddr (closed with the test) and returns it with a ping that checks
// it still echoes.
func openTunnel(t *testing.T, proxyAddr, target string) (net.Conn, func()) {
	t.Helper()
	tun, err := net.DialTimeout("tcp", proxyAddr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tun.Close() })
	_ = tun.SetDeadline(time.Now().Add(2 * time.Minute))
	fmt.Fprintf(tun, "CONNECT %s HTTP/1.1\r\nHost: x\r\n\r\n", target)
	br := bufio.NewReader(tun)
	if resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodConnect}); err != nil || resp.StatusCode != 200 {
		t.Fatalf("tunnel: %v %v", resp, err)
	}
	return tun, func() {
		t.Helper()
		fmt.Fprint(tun, "ping")
		b := make([]byte, 4)
		if _, err := io.ReadFull(br, b); err != nil || string(b) != "ping" {
			t.Fatalf("tunnel echo %q %v", b, err)
		}
	}
}

// echoOrigin is a loopback echo server; it stops with the test.
func echoOrigin(t *testing.T) string {
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
			go func() { defer c.Close(); _, _ = io.Copy(c, c) }()
		}
	}()
	t.Cleanup(func() { ln.Close(); <-done })
	return ln.Addr().String()
}

// served is a running serve on a config file.
type served struct {
	t      *testing.T
	proxy  string
	origin string
	logs   *syncBuf
	cancel context.CancelFunc
	done   chan error
}

// serveFile starts runServe on file (already written) and waits until it
// answers.
func serveFile(t *testing.T, file, proxyAddr, origin string) *served {
	t.Helper()
	src := flagSource(t, []string{"--config", file}...)
	s := &served{t: t, proxy: proxyAddr, origin: origin, logs: &syncBuf{}, done: make(chan error, 1)}
	ctx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	go func() { s.done <- runServe(ctx, src, s.logs) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-s.done:
		case <-time.After(20 * time.Second):
			t.Error("serve did not stop")
		}
	})
	eventually(t, "the proxy to serve", func() bool {
		st, _ := connectStatus(t, proxyAddr, "example.org:443")
		return st != 0
	})
	return s
}

// fileConfig is a config admitting origin (an address entry) and, with
// extra, more allow entries.
func fileConfig(proxyAddr, origin, extra string) string {
	return fmt.Sprintf("listen: %s\nadmin: {listen: \"\"}\nallow_ranges: [127.0.0.0/8]\nresolver: 127.0.0.1:9\n"+
		"limits: {dial_timeout: 1s, shutdown_grace: 2s}\nallow: [%q%s]\n", proxyAddr, origin, extra)
}

// writeAtomic writes data next to file and renames it over file.
func writeAtomic(t *testing.T, file, data string) {
	t.Helper()
	tmp := file + ".tmp"
	if err := os.WriteFile(tmp, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, file); err != nil {
		t.Fatal(err)
	}
}

// failures counts the failed-reload lines so far.
func (s *served) failures() int {
	return strings.Count(s.logs.String(), "config reload failed")
}

// reloads counts the successful reloads so far.
func (s *served) reloads() int {
	return strings.Count(s.logs.String(), `"msg":"config reloaded"`)
}

// originAllowed reports whether a CONNECT to the origin is admitted.
func (s *served) originAllowed() bool {
	st, _ := connectStatus(s.t, s.proxy, s.origin)
	return st == http.StatusOK
}

// TestServeConfigFileFaults: the config file is deleted, truncated, made
// unreadable or replaced by a symlink while serving. Each failure is logged
// once at error level with the file's problem, the running configuration
// stays (the origin stays admitted, example.org stays refused), and an
// open tunnel is untouched. A symlink to a good file is a valid change.
func TestServeConfigFileFaults(t *testing.T) {
	origin := echoOrigin(t)
	proxyAddr := freePort(t)
	dir := t.TempDir()
	file := filepath.Join(dir, "arcfence.yaml")
	good := fileConfig(proxyAddr, origin, "")
	writeAtomic(t, file, good)
	s := serveFile(t, file, proxyAddr, origin)
	if !s.originAllowed() {
		t.Fatal("origin not admitted at start")
	}

	_, ping := openTunnel(t, proxyAddr, origin)

	// restore writes a good file (with one more allow entry, so that it is
	// a change) and waits until it is applied.
	n := 0
	restore := func() {
		t.Helper()
		n++
		before := s.reloads()
		writeAtomic(t, file, fileConfig(proxyAddr, origin, fmt.Sprintf(", \"restored%d.example\"", n)))
		eventually(t, "the restored file to load", func() bool { return s.reloads() > before })
	}

	for _, tc := range []struct {
		name  string
		fault func(t *testing.T)
		msg   string // in the error line
	}{
		{name: "deleted", msg: "no such file", fault: func(t *testing.T) {
			if err := os.Remove(file); err != nil {
				t.Fatal(err)
			}
		}},
		{name: "truncated-mid-file", msg: "config file", fault: func(t *testing.T) {
			cut := strings.Index(good, "allow: [") + len("allow: [") + 4
			if err := os.WriteFile(file, []byte(good[:cut]), 0o644); err != nil {
				t.Fatal(err)
			}
		}},
		{name: "truncated-empty", msg: "empty", fault: func(t *testing.T) {
			// Opened with O_TRUNC and closed: a complete (empty) write. (A
			// bare truncate(2) closes nothing; it is a write in progress.)
			if err := os.WriteFile(file, nil, 0o644); err != nil {
				t.Fatal(err)
			}
		}},
		{name: "unreadable", msg: "config file", fault: func(t *testing.T) {
			if os.Geteuid() == 0 {
				// root reads a mode-000 file: make the path unreadable
				// by turning it into a directory instead.
				if err := os.Remove(file); err != nil {
					t.Fatal(err)
				}
				if err := os.Mkdir(file, 0o755); err != nil {
					t.Fatal(err)
				}
				return
			}
			if err := os.Chmod(file, 0); err != nil {
				t.Fatal(err)
			}
			writeAtomic(t, filepath.Join(dir, "poke"), "") // an event in the directory
			_ = os.Chtimes(file, time.Now(), time.Now())
		}},
		{name: "dangling-symlink", msg: "no such file", fault: func(t *testing.T) {
			if err := os.Remove(file); err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink(filepath.Join(dir, "missing.yaml"), file); err != nil {
				t.Fatal(err)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			failed := s.failures()
			tc.fault(t)
			eventually(t, "the failed reload to be logged", func() bool { return s.failures() > failed })
			if !s.originAllowed() {
				t.Fatal("the running configuration changed: origin no longer admitted")
			}
			if st, r := connectStatus(t, proxyAddr, "example.org:443"); st != 403 || r != "not-in-allowlist" {
				t.Fatalf("example.org: %d %q", st, r)
			}
			ping()
			line := ""
			for _, l := range strings.Split(s.logs.String(), "\n") {
				if strings.Contains(l, "config reload failed") {
					line = l
				}
			}
			if !strings.Contains(line, `"level":"error"`) || !strings.Contains(line, tc.msg) {
				t.Errorf("failure line %s: want level error and %q", line, tc.msg)
			}
			// Put a good file back (a directory in its place first goes).
			if fi, err := os.Lstat(file); err == nil && fi.IsDir() {
				_ = os.Remove(file)
			}
			_ = os.Chmod(file, 0o644)
			restore()
			if got := s.failures() - failed; got != 1 {
				t.Errorf("%d failure lines for one fault, want 1", got)
			}
			ping()
		})
	}

	t.Run("symlink-to-good-file", func(t *testing.T) {
		other := filepath.Join(dir, "other.yaml")
		if err := os.WriteFile(other, []byte(fileConfig(proxyAddr, origin, `, "example.org"`)), 0o644); err != nil {
			t.Fatal(err)
		}
		tmp := file + ".link"
		if err := os.Symlink(other, tmp); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, file); err != nil {
			t.Fatal(err)
		}
		eventually(t, "the symlinked file to apply", func() bool {
			st, _ := connectStatus(t, proxyAddr, "example.org:443")
			return st == 502 || st == 504
		})
		ping()
	})
}

// TestServeConfigMapSwap: Kubernetes updates a mounted ConfigMap by
// swapping the ..data symlink in the volume; the file arcfence was given
// (arcfence.yaml -> ..data/arcfence.yaml) is itself never written. The new
// contents must be applied.
func TestServeConfigMapSwap(t *testing.T) {
	origin := echoOrigin(t)
	proxyAddr := freePort(t)
	dir := t.TempDir()
	version := func(name, data string) {
		t.Helper()
		if err := os.Mkdir(filepath.Join(dir, name), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name, "arcfence.yaml"), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
		// ..data -> name, swapped atomically as the kubelet does.
		tmp := filepath.Join(dir, "..data_tmp")
		if err := os.Symlink(name, tmp); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, filepath.Join(dir, "..data")); err != nil {
			t.Fatal(err)
		}
	}
	version("..2026_11_28_a", fileConfig(proxyAddr, origin, ""))
	file := filepath.Join(dir, "arcfence.yaml")
	if err := os.Symlink(filepath.Join("..data", "arcfence.yaml"), file); err != nil {
		t.Fatal(err)
	}
	s := serveFile(t, file, proxyAddr, origin)
	if st, r := connectStatus(t, proxyAddr, "example.org:443"); st != 403 || r != "not-in-allowlist" {
		t.Fatalf("before the swap: %d %q", st, r)
	}
	version("..2026_11_28_b", fileConfig(proxyAddr, origin, `, "example.org"`))
	eventually(t, "the swapped ConfigMap to apply", func() bool {
		st, _ := connectStatus(t, proxyAddr, "example.org:443")
		return st == 502 || st == 504
	})
	_ = s
}

// TestServeConfigFIFOShutdown: a config path replaced by a symlink to a
// FIFO makes the reload's read block; SIGTERM (here: the context) must
// still stop serve.
func TestServeConfigFIFOShutdown(t *testing.T) {
	origin := echoOrigin(t)
	proxyAddr := freePort(t)
	dir := t.TempDir()
	file := filepath.Join(dir, "arcfence.yaml")
	writeAtomic(t, file, fileConfig(proxyAddr, origin, ""))
	s := serveFile(t, file, proxyAddr, origin)
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Skipf("mkfifo: %v", err)
	}
	// Unblock a reader stuck on the FIFO when the test ends, whatever happens.
	t.Cleanup(func() {
		if f, err := os.OpenFile(fifo, os.O_WRONLY|syscall.O_NONBLOCK, 0); err == nil {
			f.Close()
		}
	})
	tmp := file + ".link"
	if err := os.Symlink(fifo, tmp); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, file); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second) // let the watcher fire and the reload block (a bound, not an assertion)
	if !s.originAllowed() {
		t.Fatal("proxy stopped admitting while a reload was blocked")
	}
	s.cancel()
	select {
	case err := <-s.done:
		if err != nil {
			t.Fatalf("serve: %v", err)
		}
		s.done <- nil // for the cleanup
	case <-time.After(10 * time.Second):
		t.Fatal("serve did not stop while a reload was blocked on the config file")
	}
}

// TestServeAdminPortTaken: the admin port already in use at start-up is a
// clear error naming admin.listen; the listeners bound before it are
// released. (cmd/arcfence tests the binary's exit.)
func TestServeAdminPortTaken(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()

	t.Run("releases-listeners", func(t *testing.T) {
		proxyAddr := freePort(t)
		dnsAddr := freePort(t)
		src := flagSource(t, []string{"--listen", proxyAddr, "--admin-listen", taken.Addr().String(),
			"--dns-listen", dnsAddr, "--dns-upstream", "127.0.0.1:9", "--resolver", "127.0.0.1:9"}...)
		err := runServe(context.Background(), src, io.Discard)
		if err == nil || !strings.Contains(err.Error(), "admin.listen "+taken.Addr().String()) || !strings.Contains(err.Error(), "already in use") {
			t.Fatalf("runServe: %v, want an error naming admin.listen and the address in use", err)
		}
		ln, err := net.Listen("tcp", proxyAddr)
		if err != nil {
			t.Fatalf("proxy listener not released: %v", err)
		}
		ln.Close()
		pc, err := net.ListenPacket("udp", dnsAddr)
		if err != nil {
			t.Fatalf("DNS listener not released: %v", err)
		}
		pc.Close()
	})
}

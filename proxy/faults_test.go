//go:build unix

package proxy

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"go.uber.org/goleak"

	"github.com/arcfence/arcfence/internal/audit"
	"github.com/arcfence/arcfence/internal/metrics"
)

// TestMain checks, after all the package's tests, that none left a
// goroutine behind (each test also checks itself with leakCheck). Unlike
// goleak.VerifyTestMain it gives goroutines that are on their way out
// (a stub's late answer, a closing connection) up to 10 s on a loaded
// machine before calling them leaked.
func TestMain(m *testing.M) {
	code := m.Run()
	if code == 0 {
		deadline := time.Now().Add(10 * time.Second)
		for {
			err := goleak.Find()
			if err == nil {
				break
			}
			if time.Now().After(deadline) {
				fmt.Fprintf(os.Stderr, "goleak: goroutines left after a successful run: %v\n", err)
				code = 1
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	os.Exit(code)
}

// silentOrigin accepts connections for name on port and never reads or
// answers; they are closed when the test ends.
func (e *env) silentOrigin(name string, port int) {
	e.t.Helper()
	stop := make(chan struct{})
	e.rawOrigin(name, port, func(c net.Conn) { <-stop })
	e.t.Cleanup(func() { close(stop) }) // runs before rawOrigin's wait
}

// TestFaultOriginSilentPlain: a plain-HTTP origin that accepts and never
// answers gets the client a 504 in bounded time, not a hang.
func TestFaultOriginSilentPlain(t *testing.T) {
	leakCheck(t)
	e := newEnv(t, func(c *envConfig) { c.Limits.DialTimeout = 300 * time.Millisecond })
	e.silentOrigin("plain.arcfence.test", 80)
	c := e.dialProxy()
	fmt.Fprintf(c, "GET http://plain.arcfence.test/x HTTP/1.1\r\nHost: plain.arcfence.test\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("no answer from the proxy: %v", err)
	}
	if resp.StatusCode != http.StatusGatewayTimeout {
		t.Fatalf("status %d, want 504", resp.StatusCode)
	}
}

// TestFaultOriginSilentWebsocket: a websocket upgrade to an origin that
// accepts and never answers gets 504 after the dial timeout.
func TestFaultOriginSilentWebsocket(t *testing.T) {
	leakCheck(t)
	e := newEnv(t, func(c *envConfig) { c.Limits.DialTimeout = 300 * time.Millisecond })
	e.silentOrigin("plain.arcfence.test", 80)
	c := e.dialProxy()
	fmt.Fprintf(c, "GET http://plain.arcfence.test/ws HTTP/1.1\r\nHost: plain.arcfence.test\r\nConnection: Upgrade\r\n"+
		"Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("no answer from the proxy: %v", err)
	}
	if resp.StatusCode != http.StatusGatewayTimeout {
		t.Fatalf("status %d, want 504", resp.StatusCode)
	}
	e.waitReleased(t)
}

// TestFaultOriginSilentTunnel: a CONNECT tunnel to an origin that accepts
// and never answers is closed by tunnel_idle_timeout, and released.
func TestFaultOriginSilentTunnel(t *testing.T) {
	leakCheck(t)
	e := newEnv(t, func(c *envConfig) { c.Limits.TunnelIdleTimeout = 300 * time.Millisecond })
	e.silentOrigin("raw.arcfence.test", 443)
	c := e.tunnel("raw.arcfence.test:443")
	fmt.Fprint(c, "anyone there?")
	if _, err := readAllBounded(c); isTimeout(err) {
		t.Fatal("tunnel to a silent origin not closed by the idle timeout")
	}
	e.waitReleased(t)
	e.logs.find(t, map[string]any{"msg": msgTunnelClosed, "end": "idle timeout"})
}

// streamOrigin reads one byte from every connection (so that the proxy's
// dial has completed: a reset that raced it would fail the CONNECT with 502
// instead of reaching the client mid-stream), then writes chunks until a
// write fails, or until n bytes were written and then resets the
// connection (n > 0).
func streamOrigin(n int, wrote chan<- struct{}) func(net.Conn) {
	return func(c net.Conn) {
		chunk := make([]byte, 64<<10)
		total := 0
		_ = c.SetDeadline(time.Now().Add(wait))
		if _, err := io.ReadFull(c, chunk[:1]); err != nil {
			return
		}
		for n <= 0 || total < n {
			k, err := c.Write(chunk)
			total += k
			if err != nil {
				return
			}
		}
		if wrote != nil {
			wrote <- struct{}{}
		}
		_ = c.(*net.TCPConn).SetLinger(0)
		_ = c.Close()
	}
}

// TestFaultOriginResetMidStream: an origin that resets while data is in
// flight reaches the client as a reset (never a clean end that would pass
// for a complete answer), and the tunnel is released.
func TestFaultOriginResetMidStream(t *testing.T) {
	leakCheck(t)
	e := newEnv(t, nil)
	wrote := make(chan struct{}, 1)
	e.rawOrigin("raw.arcfence.test", 443, streamOrigin(1<<20, wrote))
	c := e.tunnel("raw.arcfence.test:443")
	fmt.Fprint(c, "g")
	// Let the origin fill the pipe and reset before reading anything.
	select {
	case <-wrote:
	case <-time.After(wait):
		t.Fatal("origin did not write")
	}
	n, err := io.Copy(io.Discard, c)
	if err == nil {
		t.Fatalf("clean end after %d bytes: the origin's reset was turned into an EOF", n)
	}
	if isTimeout(err) {
		t.Fatalf("client hung after %d bytes", n)
	}
	if !errors.Is(err, syscall.ECONNRESET) {
		t.Logf("client saw %v after %d bytes (not a reset)", err, n)
	}
	e.waitReleased(t)
}

// TestFaultClientResetMidStream: a client that resets while the origin is
// sending gets the origin's side closed and the tunnel released.
func TestFaultClientResetMidStream(t *testing.T) {
	leakCheck(t)
	e := newEnv(t, nil)
	ended := make(chan error, 1)
	e.rawOrigin("raw.arcfence.test", 443, func(c net.Conn) {
		chunk := make([]byte, 64<<10)
		_ = c.SetDeadline(time.Now().Add(wait))
		for {
			if _, err := c.Write(chunk); err != nil {
				ended <- err
				return
			}
		}
	})
	c := e.tunnel("raw.arcfence.test:443")
	b := make([]byte, 128<<10)
	if _, err := io.ReadFull(c, b); err != nil {
		t.Fatal(err)
	}
	_ = c.(*bufConn).Conn.(*net.TCPConn).SetLinger(0)
	_ = c.Close()
	select {
	case err := <-ended:
		if isTimeout(err) {
			t.Fatal("origin's writes blocked until its deadline: the proxy kept the origin side open")
		}
	case <-time.After(2 * wait):
		t.Fatal("origin never saw the end")
	}
	e.waitReleased(t)
}

// TestFaultClientVanishes: a client that disappears without FIN or RST
// (its socket stays open, it neither reads nor writes, as when its host
// drops off the network) while the origin streams: the proxy's writes to it
// back up, tunnel_idle_timeout closes the tunnel, and the origin sees the
// end.
func TestFaultClientVanishes(t *testing.T) {
	for _, tc := range []struct {
		name  string
		first string // what the client sent before vanishing
	}{
		{"after-first-bytes", "hello"},
		{"before-first-bytes", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.first == "" {
			}
			leakCheck(t)
			e := newEnv(t, func(c *envConfig) { c.Limits.TunnelIdleTimeout = 300 * time.Millisecond })
			ended := make(chan error, 1)
			e.rawOrigin("raw.arcfence.test", 443, func(c net.Conn) {
				chunk := make([]byte, 64<<10)
				_ = c.SetDeadline(time.Now().Add(3 * wait))
				for {
					if _, err := c.Write(chunk); err != nil {
						ended <- err
						return
					}
				}
			})
			c := e.tunnel("raw.arcfence.test:443")
			defer c.Close() // only at the end: until then the client has "vanished"
			if tc.first != "" {
				fmt.Fprint(c, tc.first)
			}
			select {
			case err := <-ended:
				if isTimeout(err) {
					t.Fatal("the origin's writes blocked until its own deadline: the tunnel outlived tunnel_idle_timeout")
				}
			case <-time.After(3 * wait):
				t.Fatal("tunnel to a vanished client never closed")
			}
			e.waitReleased(t)
			e.logs.find(t, map[string]any{"msg": msgTunnelClosed, "host": "raw.arcfence.test"})
		})
	}
}

// TestFaultVanishedPeersDetected: without tunnel_idle_timeout (the
// default, as servicebus websockets stay open for hours) a peer that
// vanishes is found by TCP keepalive: both sockets of a tunnel have it on.
func TestFaultVanishedPeersDetected(t *testing.T) {
	leakCheck(t)
	e := newEnv(t, nil)
	e.rawOrigin("raw.arcfence.test", 443, echo)
	c := e.tunnel("raw.arcfence.test:443")
	echoes(t, e, c, bufio.NewReader(c))
	e.s.mu.Lock()
	var tun *tunnel
	for t := range e.s.tunnels {
		tun = t
	}
	e.s.mu.Unlock()
	if tun == nil {
		t.Fatal("no tunnel tracked")
	}
	for name, conn := range map[string]net.Conn{"client": tun.client, "origin": tun.origin} {
		tc, ok := conn.(*net.TCPConn)
		if !ok {
			t.Fatalf("%s side is %T", name, conn)
		}
		rc, err := tc.SyscallConn()
		if err != nil {
			t.Fatal(err)
		}
		var on int
		var serr error
		_ = rc.Control(func(fd uintptr) {
			on, serr = syscall.GetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_KEEPALIVE)
		})
		if serr != nil {
			t.Fatal(serr)
		}
		if on == 0 {
			t.Errorf("%s side of the tunnel has no TCP keepalive: a vanished peer holds it forever", name)
		}
	}
}

// blockingWriter is a log destination that blocks every write until
// released, like a stderr pipe nobody reads.
type blockingWriter struct {
	release chan struct{}
	once    sync.Once
	blocked atomic.Int32
}

func (w *blockingWriter) Write(p []byte) (int, error) {
	w.blocked.Add(1)
	defer w.blocked.Add(-1)
	<-w.release
	return len(p), nil
}

func (w *blockingWriter) unblock() { w.once.Do(func() { close(w.release) }) }

// logProxy starts a second proxy next to e's, wired as serve wires it (a
// folding audit log on the same logger) but logging to w (a writer that
// blocks or fails), and points e's helpers at it. A *blockingWriter is
// released before the proxy shuts down.
func (e *env) logProxy(t *testing.T, w io.Writer) *Server {
	t.Helper()
	cfg := e.cfg
	cfg.TunnelsInfo = true
	log := zerolog.New(w).Level(zerolog.InfoLevel)
	al := audit.NewWithOptions(log, audit.Options{FoldWindow: time.Minute})
	s, err := New(Options{Settings: cfg.settings(t), Logger: log, Audit: al, Metrics: metrics.New()})
	if err != nil {
		t.Fatal(err)
	}
	s.dialHook = e.s.dialHook
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- s.Serve(ln) }()
	t.Cleanup(func() {
		if b, ok := w.(*blockingWriter); ok {
			b.unblock()
		}
		ctx, cancel := context.WithTimeout(context.Background(), wait)
		defer cancel()
		_ = s.Shutdown(ctx)
		<-served
		al.Close()
	})
	e.addr = ln.Addr().String()
	return s
}

// TestFaultBlockedLogWriter: when the log destination blocks, tunnels keep
// opening, carrying data and closing, and refusals keep being answered.
func TestFaultBlockedLogWriter(t *testing.T) {
	leakCheck(t)
	e := newEnv(t, nil)
	e.rawOrigin("raw.arcfence.test", 443, echo)
	w := &blockingWriter{release: make(chan struct{})}
	e.logProxy(t, w)
	for i := 0; i < 10; i++ {
		c := e.tunnel("raw.arcfence.test:443")
		echoes(t, e, c, bufio.NewReader(c))
		_ = c.Close() // its close line blocks in the writer
		_, br, resp := e.connect("example.org:443")
		if resp.StatusCode != http.StatusForbidden || resp.Header.Get(HeaderReason) != "not-in-allowlist" {
			t.Fatalf("refusal with a blocked log: %s %q", resp.Status, resp.Header.Get(HeaderReason))
		}
		_, _ = io.ReadAll(br)
	}
	if w.blocked.Load() == 0 {
		t.Fatal("nothing was blocked in the writer: the test did not exercise a blocked log")
	}
}

// failingWriter is a log destination whose every write fails (a full
// disk, a closed pipe).
type failingWriter struct{ writes atomic.Int64 }

func (w *failingWriter) Write(p []byte) (int, error) {
	w.writes.Add(1)
	return 0, syscall.ENOSPC
}

// TestFaultFailingLogWriter: when every log write fails, tunnels, refusals
// and failed dials are all still answered.
func TestFaultFailingLogWriter(t *testing.T) {
	leakCheck(t)
	e := newEnv(t, nil)
	e.rawOrigin("raw.arcfence.test", 443, echo)
	w := &failingWriter{}
	e.logProxy(t, w)
	for i := 0; i < 5; i++ {
		c := e.tunnel("raw.arcfence.test:443")
		echoes(t, e, c, bufio.NewReader(c))
		_ = c.Close()
		if _, _, resp := e.connect("example.org:443"); resp.StatusCode != http.StatusForbidden {
			t.Fatalf("refusal with a failing log: %s", resp.Status)
		}
		if _, _, resp := e.connect("nowhere.his.arc.azure.com:443"); resp.StatusCode != http.StatusBadGateway {
			t.Fatalf("failed dial with a failing log: %s", resp.Status)
		}
	}
	deadline := time.Now().Add(wait)
	for w.writes.Load() == 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if w.writes.Load() == 0 {
		t.Fatal("nothing was written: the test did not exercise a failing log")
	}
}

// TestFaultBlockedLogWriterDialFailure: a failed dial is answered (502)
// even when the log destination blocks.
func TestFaultBlockedLogWriterDialFailure(t *testing.T) {
	leakCheck(t)
	e := newEnv(t, nil)
	w := &blockingWriter{release: make(chan struct{})}
	e.logProxy(t, w)
	_, _, resp := e.connect("nowhere.his.arc.azure.com:443")
	if resp.StatusCode != http.StatusBadGateway {
		t.Fatalf("status %d, want 502", resp.StatusCode)
	}
}

// TestFaultBlockedLogWriterShutdown: Shutdown returns once its context is
// done even when tunnel close lines are stuck in a blocked log writer.
func TestFaultBlockedLogWriterShutdown(t *testing.T) {
	leakCheck(t)
	e := newEnv(t, nil)
	e.rawOrigin("raw.arcfence.test", 443, echo)
	w := &blockingWriter{release: make(chan struct{})}
	s := e.logProxy(t, w)
	c := e.tunnel("raw.arcfence.test:443")
	echoes(t, e, c, bufio.NewReader(c))
	_ = c.Close()
	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		defer cancel()
		done <- s.Shutdown(ctx)
	}()
	select {
	case <-done:
	case <-time.After(wait):
		w.unblock()
		<-done
		t.Fatal("Shutdown did not return after its grace while the log writer blocked")
	}
}

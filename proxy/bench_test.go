package proxy

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"runtime"
	"testing"
	"time"
)

// sinkOrigin accepts connections for name on port 443, counts what it reads
// and answers the count when the client half-closes.
func (e *env) sinkOrigin(name string) {
	e.rawOrigin(name, 443, func(c net.Conn) {
		n, _ := io.Copy(io.Discard, c)
		fmt.Fprintf(c, "%d", n)
	})
}

// pump writes n chunks to c, half-closes, and checks the origin's count.
func pump(tb testing.TB, c net.Conn, chunk []byte, n int) {
	for i := 0; i < n; i++ {
		if _, err := c.Write(chunk); err != nil {
			tb.Fatal(err)
		}
	}
	closeWrite(c)
	b, err := readAllBounded(c)
	if err != nil {
		tb.Fatal(err)
	}
	if want := fmt.Sprint(len(chunk) * n); string(b) != want {
		tb.Fatalf("origin read %s bytes, want %s", b, want)
	}
}

// BenchmarkTunnel measures one tunnel's throughput (client to origin) on
// loopback; compare with BenchmarkDirect.
func BenchmarkTunnel(b *testing.B) {
	e := newEnv(b, nil)
	e.sinkOrigin("raw.arcfence.test")
	chunk := make([]byte, 128<<10)
	b.SetBytes(int64(len(chunk)))
	b.ReportAllocs()
	c := e.tunnel("raw.arcfence.test:443")
	_ = c.SetDeadline(time.Time{})
	b.ResetTimer()
	pump(b, c, chunk, b.N)
}

// BenchmarkDirect is BenchmarkTunnel without the proxy: the limit.
func BenchmarkDirect(b *testing.B) {
	e := newEnv(b, nil)
	ln := e.listenOn("raw.arcfence.test")
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		n, _ := io.Copy(io.Discard, c)
		fmt.Fprintf(c, "%d", n)
	}()
	b.Cleanup(func() { ln.Close() })
	chunk := make([]byte, 128<<10)
	b.SetBytes(int64(len(chunk)))
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	b.ResetTimer()
	pump(b, c, chunk, b.N)
}

// BenchmarkConnectRoundTrip measures CONNECT, one echoed byte and close:
// to a name the proxy resolves (through the loopback DNS stub), and to an
// IP literal admitted by an allow rule, as the peer harness does it.
func BenchmarkConnectRoundTrip(b *testing.B) {
	b.Run("name", func(b *testing.B) {
		e := newEnv(b, nil)
		e.rawOrigin("raw.arcfence.test", 443, echo)
		connectRounds(b, e, "raw.arcfence.test:443")
	})
	b.Run("ip", func(b *testing.B) {
		ip := testNames["raw.arcfence.test"]
		e := newEnv(b, func(c *envConfig) {
			c.Allow = append(c.Allow, ip+":443")
			c.TunnelsInfo = false // the shipped default: no line per tunnel
		})
		e.rawOrigin("raw.arcfence.test", 443, echo)
		connectRounds(b, e, ip+":443")
	})
}

// connectRounds runs b.N CONNECT + echo + close rounds to target.
func connectRounds(b *testing.B, e *env, target string) {
	req := []byte("CONNECT " + target + " HTTP/1.1\r\nHost: " + target + "\r\n\r\n")
	const okLen = len(established11)
	buf := make([]byte, okLen+1)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		c, err := net.Dial("tcp", e.addr)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := c.Write(req); err != nil {
			b.Fatal(err)
		}
		if _, err := io.ReadFull(c, buf[:okLen]); err != nil {
			b.Fatal(err)
		}
		if _, err := c.Write([]byte{'x'}); err != nil {
			b.Fatal(err)
		}
		if _, err := io.ReadFull(c, buf[:1]); err != nil {
			b.Fatal(err)
		}
		c.Close()
	}
}

func BenchmarkParseClientHello(b *testing.B) {
	in := clientHello(b, "management.azure.com")
	scratch := make([]byte, 0, maxHelloBytes)
	b.SetBytes(int64(len(in)))
	b.ReportAllocs()
	var n int
	for i := 0; i < b.N; i++ {
		sni, _ := parseClientHello(in, scratch)
		n += len(sni)
	}
	if n != b.N*len("management.azure.com") {
		b.Fatal("wrong name")
	}
}

// openFDs counts this process's open descriptors.
func openFDs(t testing.TB) int {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skip("no /proc/self/fd")
	}
	return len(ents)
}

// TestIdleTunnelCost holds idle tunnels that each echoed once and checks
// that the proxy keeps at most 3 descriptors per idle tunnel (its two
// sockets; no splice pipes). Memory per tunnel is reported, not asserted.
func TestIdleTunnelCost(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("descriptor counting and splice are Linux's")
	}
	leakCheck(t)
	e := newEnv(t, nil)
	e.rawOrigin("raw.arcfence.test", 443, echo)
	const n = 200
	conns := make([]net.Conn, 0, n)
	runtime.GC()
	var m0 runtime.MemStats
	runtime.ReadMemStats(&m0)
	before := openFDs(t)
	for i := 0; i < n; i++ {
		c, br, resp := e.connect("raw.arcfence.test:443")
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("tunnel %d: %s", i, resp.Status)
		}
		fmt.Fprint(c, "ping")
		b := make([]byte, 4)
		if _, err := io.ReadFull(br, b); err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
	}
	// Let every direction go back to waiting.
	time.Sleep(100 * time.Millisecond)
	runtime.GC()
	var m1 runtime.MemStats
	runtime.ReadMemStats(&m1)
	after := openFDs(t)
	// This process holds, per tunnel, the test client's socket and the
	// origin's accepted socket besides the proxy's own.
	proxyFDs := float64(after-before-2*n) / n
	mem := float64(int64(m1.HeapInuse+m1.StackInuse)-int64(m0.HeapInuse+m0.StackInuse)) / n / 1024
	t.Logf("%d idle tunnels: %.2f proxy descriptors per tunnel; %.1f KiB Go heap+stack per tunnel (proxy, test client and origin together)",
		n, proxyFDs, mem)
	if proxyFDs > 3 {
		t.Fatalf("%.2f descriptors per idle tunnel, want at most 3", proxyFDs)
	}
	for _, c := range conns {
		fmt.Fprint(c, "pong")
	}
	for i, c := range conns {
		b := make([]byte, 4)
		if _, err := io.ReadFull(bufio.NewReader(c), b); err != nil || string(b) != "pong" {
			t.Fatalf("tunnel %d after the hold: %q %v", i, b, err)
		}
		c.Close()
	}
}

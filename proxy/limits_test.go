package proxy

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/arcfence/arcfence/policy"
)

// dialFrom opens a connection to the proxy from the loopback address from
// (127.0.0.0/8 is all local), so that tests can play several clients.
func (e *env) dialFrom(from string) net.Conn {
	e.t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}, Timeout: wait}
	c, err := d.Dial("tcp", e.addr)
	if err != nil {
		e.t.Fatal(err)
	}
	_ = c.SetDeadline(time.Now().Add(3 * wait))
	e.t.Cleanup(func() { _ = c.Close() })
	return c
}

// burstResult is one CONNECT of a burst.
type burstResult struct {
	from string
	c    net.Conn
	br   *bufio.Reader
	resp *http.Response
	err  error
}

// burst sends n CONNECTs to target from each address in froms at once
// (all connected first, then released together) and returns the answers.
func (e *env) burst(target string, n int, froms ...string) []burstResult {
	e.t.Helper()
	var conns []burstResult
	for _, from := range froms {
		for i := 0; i < n; i++ {
			conns = append(conns, burstResult{from: from, c: e.dialFrom(from)})
		}
	}
	req := []byte("CONNECT " + target + " HTTP/1.1\r\nHost: " + target + "\r\n\r\n")
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range conns {
		wg.Add(1)
		go func(r *burstResult) {
			defer wg.Done()
			<-start
			if _, err := r.c.Write(req); err != nil {
				r.err = err
				return
			}
			r.br = bufio.NewReader(r.c)
			r.resp, r.err = http.ReadResponse(r.br, &http.Request{Method: http.MethodConnect})
		}(&conns[i])
	}
	close(start)
	wg.Wait()
	return conns
}

// tally counts a burst's answers by client: 200s, and 429s that carry
// Retry-After and limit-exceeded; anything else fails the test.
func tally(t *testing.T, rs []burstResult) (ok, limited map[string]int) {
	t.Helper()
	ok, limited = map[string]int{}, map[string]int{}
	for _, r := range rs {
		if r.err != nil {
			t.Fatalf("CONNECT from %s: %v", r.from, r.err)
		}
		switch r.resp.StatusCode {
		case http.StatusOK:
			ok[r.from]++
		case http.StatusTooManyRequests:
			if r.resp.Header.Get("Retry-After") == "" {
				t.Errorf("429 without Retry-After")
			}
			if got := r.resp.Header.Get(HeaderReason); got != policy.LimitExceeded.String() {
				t.Errorf("429 with reason %q", got)
			}
			body, _ := io.ReadAll(r.resp.Body)
			if want := denyBody("raw.arcfence.test", 443, policy.LimitExceeded); string(body) != want {
				t.Errorf("429 body %q, want %q", body, want)
			}
			limited[r.from]++
		default:
			t.Fatalf("CONNECT from %s: %s", r.from, r.resp.Status)
		}
	}
	return ok, limited
}

// closeAll closes a burst's connections and waits (bounded) for the proxy
// to release every tunnel and every reservation.
func (e *env) closeAll(t *testing.T, rs []burstResult) {
	t.Helper()
	for _, r := range rs {
		_ = r.c.Close()
	}
	e.waitReleased(t)
}

// waitReleased waits until the proxy holds no tunnel and no reservation.
func (e *env) waitReleased(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(wait)
	for {
		e.s.mu.Lock()
		n, count, clients := len(e.s.tunnels), e.s.count, len(e.s.perClient)
		e.s.mu.Unlock()
		if n == 0 && count == 0 && clients == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after closing: %d tunnels, %d reserved, %d clients counted", n, count, clients)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestLimitPerClientExactUnderBurst: of 40 simultaneous CONNECTs from one
// client with max_tunnels_per_client 5, exactly 5 are admitted and 35 get
// 429 with Retry-After; after they close, the next burst again gets exactly 5.
func TestLimitPerClientExactUnderBurst(t *testing.T) {
	leakCheck(t)
	e := newEnv(t, func(c *envConfig) { c.Limits.MaxTunnelsPerClient = 5 })
	e.rawOrigin("raw.arcfence.test", 443, echo)
	for round := 0; round < 2; round++ {
		rs := e.burst("raw.arcfence.test:443", 40, "127.0.0.2")
		ok, limited := tally(t, rs)
		if ok["127.0.0.2"] != 5 || limited["127.0.0.2"] != 35 {
			t.Fatalf("round %d: %d admitted, %d limited; want exactly 5 and 35", round, ok["127.0.0.2"], limited["127.0.0.2"])
		}
		if n := e.s.ActiveTunnels(); n != 5 {
			t.Fatalf("round %d: %d active tunnels, want 5", round, n)
		}
		e.closeAll(t, rs)
	}
	e.logs.find(t, map[string]any{"msg": "denied", "reason": "limit-exceeded", "client": "127.0.0.2"})
}

// TestLimitTotalExactUnderBurst: three clients bursting together against
// max_tunnels 8 and max_tunnels_per_client 5: exactly 8 admitted in all,
// none over 5 per client.
func TestLimitTotalExactUnderBurst(t *testing.T) {
	leakCheck(t)
	e := newEnv(t, func(c *envConfig) {
		c.Limits.MaxTunnels = 8
		c.Limits.MaxTunnelsPerClient = 5
	})
	e.rawOrigin("raw.arcfence.test", 443, echo)
	froms := []string{"127.0.0.2", "127.0.0.3", "127.0.0.4"}
	rs := e.burst("raw.arcfence.test:443", 10, froms...)
	ok, limited := tally(t, rs)
	total := 0
	for _, f := range froms {
		total += ok[f]
		if ok[f] > 5 {
			t.Errorf("%s: %d admitted, over its limit of 5", f, ok[f])
		}
		if ok[f]+limited[f] != 10 {
			t.Errorf("%s: %d answers, want 10", f, ok[f]+limited[f])
		}
	}
	if total != 8 {
		t.Fatalf("%d admitted in all (%v), want exactly 8", total, ok)
	}
	// The admitted tunnels all work.
	for _, r := range rs {
		if r.resp.StatusCode == http.StatusOK {
			echoes(t, e, r.c, r.br)
		}
	}
	e.closeAll(t, rs)
}

// TestLimitClientAtLimitDoesNotBlockOthers: while one client holds its
// limit and keeps hammering (every attempt answered 429), another client
// opens, uses and closes tunnels, and the first client's tunnels keep
// working.
func TestLimitClientAtLimitDoesNotBlockOthers(t *testing.T) {
	leakCheck(t)
	e := newEnv(t, func(c *envConfig) { c.Limits.MaxTunnelsPerClient = 3 })
	e.rawOrigin("raw.arcfence.test", 443, echo)
	held := e.burst("raw.arcfence.test:443", 3, "127.0.0.2")
	if ok, _ := tally(t, held); ok["127.0.0.2"] != 3 {
		t.Fatalf("%d admitted, want 3", ok["127.0.0.2"])
	}
	stop := make(chan struct{})
	var hammer sync.WaitGroup
	var mu sync.Mutex
	var hammered, wrong int
	for w := 0; w < 4; w++ {
		hammer.Add(1)
		go func() {
			defer hammer.Done()
			req := []byte("CONNECT raw.arcfence.test:443 HTTP/1.1\r\nHost: x\r\n\r\n")
			d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.2")}, Timeout: wait}
			for i := 0; i < 500; i++ {
				select {
				case <-stop:
					return
				default:
				}
				c, err := d.Dial("tcp", e.addr)
				if err != nil {
					continue
				}
				_ = c.SetDeadline(time.Now().Add(wait))
				_, _ = c.Write(req)
				resp, err := http.ReadResponse(bufio.NewReader(c), &http.Request{Method: http.MethodConnect})
				mu.Lock()
				if err == nil && resp.StatusCode == http.StatusTooManyRequests {
					hammered++
				} else {
					wrong++
				}
				mu.Unlock()
				_ = c.Close()
			}
		}()
	}
	for i := 0; i < 20; i++ {
		c := e.dialFrom("127.0.0.3")
		fmt.Fprintf(c, "CONNECT raw.arcfence.test:443 HTTP/1.1\r\nHost: x\r\n\r\n")
		br := bufio.NewReader(c)
		resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodConnect})
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("other client, tunnel %d: %v %v", i, resp, err)
		}
		echoes(t, e, c, br)
		_ = c.Close()
	}
	for _, r := range held {
		echoes(t, e, r.c, r.br)
	}
	close(stop)
	hammer.Wait()
	if wrong > 0 || hammered == 0 {
		t.Fatalf("client at its limit: %d answered 429, %d otherwise", hammered, wrong)
	}
	e.closeAll(t, held)
}

// TestLimitAccountingAfterFailures: reservations are returned on every
// path that does not end in a tunnel (dial refused, guard refusal, name not
// found, client gone before the answer), so that failures cannot eat a
// client's allowance.
func TestLimitAccountingAfterFailures(t *testing.T) {
	leakCheck(t)
	e := newEnv(t, func(c *envConfig) {
		c.Limits.MaxTunnelsPerClient = 2
		c.Limits.DialTimeout = 300 * time.Millisecond
	})
	// refused.his.arc.azure.com's origin refuses connections.
	ln := e.listenOn("refused.his.arc.azure.com")
	closed := ln.Addr().String()
	_ = ln.Close()
	e.route("refused.his.arc.azure.com", 443, closed)
	e.rawOrigin("raw.arcfence.test", 443, echo)
	for _, tc := range []struct {
		target string
		status int
	}{
		{"refused.his.arc.azure.com:443", http.StatusBadGateway},
		{"nowhere.his.arc.azure.com:443", http.StatusBadGateway},
		{"private.his.arc.azure.com:443", http.StatusForbidden},
	} {
		// A reservation is held while its dial runs, so some of the burst
		// may be limited; none may succeed, and all must be returned.
		rs := e.burst(tc.target, 10, "127.0.0.2")
		failed := 0
		for _, r := range rs {
			switch {
			case r.err != nil:
				t.Fatalf("%s: %v", tc.target, r.err)
			case r.resp.StatusCode == tc.status:
				failed++
			case r.resp.StatusCode != http.StatusTooManyRequests:
				t.Fatalf("%s: %s, want %d or 429", tc.target, r.resp.Status, tc.status)
			}
		}
		if failed == 0 {
			t.Fatalf("%s: no attempt reached the dial", tc.target)
		}
		e.closeAll(t, rs)
	}
	// Clients that vanish (reset) once the proxy has dialed for them: the
	// reservation is taken before the dial, so it is counted by then.
	accepted := make(chan struct{}, 10)
	e.rawOrigin("gbl.his.arc.azure.com", 443, func(c net.Conn) {
		accepted <- struct{}{}
		_, _ = io.Copy(io.Discard, c)
	})
	for i := 0; i < 10; i++ {
		c := e.dialFrom("127.0.0.2")
		fmt.Fprintf(c, "CONNECT gbl.his.arc.azure.com:443 HTTP/1.1\r\nHost: x\r\n\r\n")
		select {
		case <-accepted:
		case <-time.After(wait):
			t.Fatal("origin not dialed")
		}
		_ = c.(*net.TCPConn).SetLinger(0)
		_ = c.Close()
	}
	e.waitReleased(t)
	// The whole allowance is still there.
	rs := e.burst("raw.arcfence.test:443", 4, "127.0.0.2")
	if ok, limited := tally(t, rs); ok["127.0.0.2"] != 2 || limited["127.0.0.2"] != 2 {
		t.Fatalf("after failures: %d admitted, %d limited; want 2 and 2", ok["127.0.0.2"], limited["127.0.0.2"])
	}
	e.closeAll(t, rs)
}

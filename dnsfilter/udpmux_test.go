package dnsfilter

import (
	"context"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// TestUDPMuxRotatesSockets: each socket serves muxUses queries and is then
// replaced by a fresh one (a new source port); retired sockets close once
// their answers are in, and concurrent queries all get their own answer.
func TestUDPMuxRotatesSockets(t *testing.T) {
	st := startStub(t)
	ua, err := net.ResolveUDPAddr("udp", st.addr)
	if err != nil {
		t.Fatal(err)
	}
	m := newUDPMux(ua)
	defer m.close()
	ports := map[int]bool{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	const workers, per = 8, (2*muxUses*muxSockets + 100) / 8
	errs := make(chan error, workers)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			wire, qsec := packQuery(t, question(nameA, dns.TypeA, true))
			for i := 0; i < per; i++ {
				b, err := m.exchange(context.Background(), wire, qsec, time.Now().Add(5*time.Second))
				if err != nil {
					errs <- err
					return
				}
				var r dns.Msg
				if err := r.Unpack(b); err != nil || len(r.Answer) != 1 {
					errs <- errMismatch
					return
				}
			}
		}()
	}
	// Sample the sockets' ports while the load runs.
	stop := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		for {
			m.mu.Lock()
			for _, s := range m.socks {
				if s != nil {
					mu.Lock()
					ports[s.conn.LocalAddr().(*net.UDPAddr).Port] = true
					mu.Unlock()
				}
			}
			m.mu.Unlock()
			select {
			case <-stop:
				return
			case <-time.After(time.Millisecond):
			}
		}
	}()
	wg.Wait()
	close(stop)
	<-sampled
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if len(ports) <= muxSockets {
		t.Errorf("sockets not rotated: %d source ports seen", len(ports))
	}
	m.mu.Lock()
	open := len(m.all)
	m.mu.Unlock()
	if open > muxSockets {
		t.Errorf("%d sockets open, want at most %d (retired ones closed)", open, muxSockets)
	}
}

// TestUDPMuxTimeout: a query the upstream never answers times out and
// frees its ID.
func TestUDPMuxTimeout(t *testing.T) {
	ua, err := net.ResolveUDPAddr("udp", blackhole(t))
	if err != nil {
		t.Fatal(err)
	}
	m := newUDPMux(ua)
	defer m.close()
	wire, qsec := packQuery(t, question(nameA, dns.TypeA, false))
	_, err = m.exchange(context.Background(), wire, qsec, time.Now().Add(50*time.Millisecond))
	if err != errTimeout {
		t.Fatalf("err %v, want timeout", err)
	}
	for _, s := range m.socks {
		if s != nil && len(s.pending) != 0 {
			t.Errorf("timed-out query still pending")
		}
	}
}

// packQuery returns q's wire form and its question section.
func packQuery(t *testing.T, q *dns.Msg) (wire, qsec []byte) {
	wire, err := q.Pack()
	if err != nil {
		t.Fatal(err)
	}
	end, ok := skipName(wire, 12)
	if !ok {
		t.Fatal("bad question")
	}
	return wire, wire[12 : end+4]
}

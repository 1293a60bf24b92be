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

// TestUDPMuxDropsForgedQuestion: a datagram with the query's ID but another
// question, arriving before the real answer, is dropped and the real answer
// still gets through.
func TestUDPMuxDropsForgedQuestion(t *testing.T) {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 4096)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			var q dns.Msg
			if q.Unpack(buf[:n]) != nil {
				continue
			}
			forged := new(dns.Msg)
			forged.SetQuestion("evil.example.", dns.TypeA)
			forged.Id, forged.Response = q.Id, true
			forged.Answer = append(forged.Answer, mustRR("evil.example. 60 IN A 192.0.2.66"))
			real := new(dns.Msg)
			real.SetReply(&q)
			real.Answer = append(real.Answer, mustRR(q.Question[0].Name+" 60 IN A 203.0.113.10"))
			for _, m := range []*dns.Msg{forged, real} {
				b, _ := m.Pack()
				pc.WriteTo(b, from)
			}
		}
	}()
	defer func() { pc.Close(); <-done }()
	m := newUDPMux(pc.LocalAddr().(*net.UDPAddr))
	defer m.close()
	wire, qsec := packQuery(t, question(nameA, dns.TypeA, false))
	b, err := m.exchange(context.Background(), wire, qsec, time.Now().Add(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	var r dns.Msg
	if err := r.Unpack(b); err != nil || len(r.Answer) != 1 || r.Answer[0].(*dns.A).A.String() != "203.0.113.10" {
		t.Fatalf("answer %v %v, want the real one", &r, err)
	}
}

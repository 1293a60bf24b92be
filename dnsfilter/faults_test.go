package dnsfilter

import (
	"encoding/binary"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// poison is the address a misbehaving upstream slips into its bad answers;
// it must never reach a client.
const poison = "192.0.2.66"

// badUpstream is a raw DNS upstream on loopback (UDP and TCP, one port)
// whose answers are made by reply: each returned packet is sent in order.
type badUpstream struct {
	addr  string
	reply func(q *dns.Msg, raw []byte) [][]byte
	mu    sync.Mutex
	seen  int
}

func startBadUpstream(t *testing.T, reply func(q *dns.Msg, raw []byte) [][]byte) *badUpstream {
	t.Helper()
	u := &badUpstream{reply: reply}
	var pc net.PacketConn
	var ln net.Listener
	for try := 0; ; try++ {
		var err error
		if pc, err = net.ListenPacket("udp", "127.0.0.1:0"); err != nil {
			t.Fatal(err)
		}
		if ln, err = net.Listen("tcp", pc.LocalAddr().String()); err == nil {
			break
		}
		pc.Close()
		if try > 10 {
			t.Fatal(err)
		}
	}
	u.addr = pc.LocalAddr().String()
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		buf := make([]byte, 65535)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			for _, p := range u.answer(buf[:n]) {
				_, _ = pc.WriteTo(p, from)
			}
		}
	}()
	go func() {
		defer wg.Done()
		var cw sync.WaitGroup
		defer cw.Wait()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			cw.Add(1)
			go func() {
				defer cw.Done()
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(5 * time.Second))
				var l [2]byte
				if _, err := io.ReadFull(c, l[:]); err != nil {
					return
				}
				q := make([]byte, binary.BigEndian.Uint16(l[:]))
				if _, err := io.ReadFull(c, q); err != nil {
					return
				}
				for _, p := range u.answer(q) {
					var pl [2]byte
					binary.BigEndian.PutUint16(pl[:], uint16(len(p)))
					_, _ = c.Write(append(pl[:], p...))
				}
			}()
		}
	}()
	t.Cleanup(func() {
		pc.Close()
		ln.Close()
		wg.Wait()
	})
	return u
}

func (u *badUpstream) answer(raw []byte) [][]byte {
	q := new(dns.Msg)
	if err := q.Unpack(raw); err != nil || len(q.Question) != 1 {
		return nil
	}
	u.mu.Lock()
	u.seen++
	u.mu.Unlock()
	return u.reply(q, raw)
}

func (u *badUpstream) queries() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.seen
}

// answerFor is a proper answer to q with one A record for name.
func answerFor(t *testing.T, q *dns.Msg, name, addr string) *dns.Msg {
	m := new(dns.Msg)
	m.SetReply(q)
	if name != q.Question[0].Name {
		m.Question[0].Name = name
	}
	m.Answer = append(m.Answer, mustRR(name+" 60 IN A "+addr))
	return m
}

func pack(m *dns.Msg) []byte {
	b, err := m.Pack()
	if err != nil {
		panic(err)
	}
	return b
}

// noPoison fails when an answer carries the poison address.
func noPoison(t *testing.T, r *dns.Msg) {
	t.Helper()
	for _, rr := range append(append([]dns.RR{}, r.Answer...), r.Extra...) {
		if a, ok := rr.(*dns.A); ok && a.A.String() == poison {
			t.Fatalf("a forged upstream answer reached the client: %v", rr)
		}
	}
}

// TestUpstreamMisbehaves: an upstream that answers garbage, with another
// ID, for another name or type, or with a query instead of a response,
// never gets its bytes to the client: the query fails over to the next
// upstream, or gets SERVFAIL in bounded time, over UDP and TCP.
func TestUpstreamMisbehaves(t *testing.T) {
	cases := []struct {
		name  string
		reply func(t *testing.T, q *dns.Msg, raw []byte) [][]byte
	}{
		{"garbage", func(t *testing.T, q *dns.Msg, raw []byte) [][]byte {
			return [][]byte{[]byte("\x00\x01not dns at all"), {0x12}, append(raw[:2:2], make([]byte, 10)...)}
		}},
		{"header-only-response", func(t *testing.T, q *dns.Msg, raw []byte) [][]byte {
			h := make([]byte, 12)
			copy(h, raw[:2])
			h[2] = 0x81 // QR, RD
			h[3] = 0x80 // RA
			return [][]byte{h}
		}},
		{"other-id", func(t *testing.T, q *dns.Msg, raw []byte) [][]byte {
			m := answerFor(t, q, q.Question[0].Name, poison)
			m.Id = q.Id ^ 0x5a5a
			return [][]byte{pack(m)}
		}},
		{"other-name", func(t *testing.T, q *dns.Msg, raw []byte) [][]byte {
			return [][]byte{pack(answerFor(t, q, "evil.example.", poison))}
		}},
		{"other-type", func(t *testing.T, q *dns.Msg, raw []byte) [][]byte {
			m := answerFor(t, q, q.Question[0].Name, poison)
			m.Question[0].Qtype = dns.TypeMX
			return [][]byte{pack(m)}
		}},
		{"not-a-response", func(t *testing.T, q *dns.Msg, raw []byte) [][]byte {
			m := answerFor(t, q, q.Question[0].Name, poison)
			m.Response = false
			return [][]byte{pack(m)}
		}},
		{"two-questions", func(t *testing.T, q *dns.Msg, raw []byte) [][]byte {
			m := answerFor(t, q, q.Question[0].Name, poison)
			m.Question = append(m.Question, dns.Question{Name: "evil.example.", Qtype: dns.TypeA, Qclass: dns.ClassINET})
			return [][]byte{pack(m)}
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			bad := startBadUpstream(t, func(q *dns.Msg, raw []byte) [][]byte { return tc.reply(t, q, raw) })
			t.Run("alone", func(t *testing.T) {
				e := startFilter(t, Options{Upstreams: []string{bad.addr}, Timeout: 500 * time.Millisecond,
					QueryTimeout: 3 * time.Second})
				for _, netw := range []string{"udp", "tcp"} {
					r := ask(t, e.f.Addr(), netw, question(nameA, dns.TypeA, true))
					noPoison(t, r)
					if r.Rcode != dns.RcodeServerFailure {
						t.Fatalf("%s: %s %v, want SERVFAIL", netw, dns.RcodeToString[r.Rcode], r.Answer)
					}
				}
				if bad.queries() == 0 {
					t.Fatal("the bad upstream was never asked")
				}
			})
			t.Run("failover", func(t *testing.T) {
				good := startStub(t)
				e := startFilter(t, Options{Upstreams: []string{bad.addr, good.addr}, Timeout: 500 * time.Millisecond,
					QueryTimeout: 3 * time.Second})
				for _, netw := range []string{"udp", "tcp"} {
					r := ask(t, e.f.Addr(), netw, question(nameA, dns.TypeA, true))
					noPoison(t, r)
					if r.Rcode != dns.RcodeSuccess || len(r.Answer) != 1 || r.Answer[0].(*dns.A).A.String() != "203.0.113.10" {
						t.Fatalf("%s: %s %v, want the good upstream's answer", netw, dns.RcodeToString[r.Rcode], r.Answer)
					}
				}
			})
		})
	}
}

// TestUpstreamSpoofThenAnswer: forged answers (another ID, a query) that
// arrive before the real one are skipped; the real answer is used.
func TestUpstreamSpoofThenAnswer(t *testing.T) {
	bad := startBadUpstream(t, func(q *dns.Msg, raw []byte) [][]byte {
		otherID := answerFor(t, q, q.Question[0].Name, poison)
		otherID.Id = q.Id + 1
		query := answerFor(t, q, q.Question[0].Name, poison)
		query.Response = false
		return [][]byte{pack(otherID), pack(query), pack(answerFor(t, q, q.Question[0].Name, "203.0.113.10"))}
	})
	e := startFilter(t, Options{Upstreams: []string{bad.addr}, Timeout: time.Second})
	r := ask(t, e.f.Addr(), "udp", question(nameA, dns.TypeA, true))
	noPoison(t, r)
	if r.Rcode != dns.RcodeSuccess || len(r.Answer) != 1 {
		t.Fatalf("%s %v, want the real answer", dns.RcodeToString[r.Rcode], r.Answer)
	}
}

// TestUpstreamTCPTruncatedStream: a TCP upstream that announces more bytes
// than it sends, or closes at once, fails the attempt in bounded time.
func TestUpstreamTCPTruncatedStream(t *testing.T) {
	for _, tc := range []struct {
		name string
		send []byte
	}{
		{"close-at-once", nil},
		{"short-length", []byte{0x01}},
		{"short-body", []byte{0x01, 0x00, 0xde, 0xad}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			up := tcpServer(t, func(c net.Conn) { _, _ = c.Write(tc.send) })
			e := startFilter(t, Options{Upstreams: []string{up}, Timeout: 200 * time.Millisecond,
				QueryTimeout: 3 * time.Second})
			r := ask(t, e.f.Addr(), "tcp", question(nameA, dns.TypeA, true))
			if r.Rcode != dns.RcodeServerFailure {
				t.Fatalf("%s, want SERVFAIL", dns.RcodeToString[r.Rcode])
			}
		})
	}
}

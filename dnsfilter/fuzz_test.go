package dnsfilter

import (
	"encoding/binary"
	"io"
	"net"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// FuzzHandler sends arbitrary packets to a running filter (over TCP, whose
// queries are served in order, followed by a sentinel query) and checks:
// no panic; at most one answer per packet; no answer at all to a packet
// that does not parse as a DNS message; and, through the handler directly
// with a UDP writer, never an answer larger than the client may receive.
// The seed corpus is testdata/fuzz/FuzzHandler; plain `go test` runs it.
func FuzzHandler(f *testing.F) {
	e := startFilter(f, Options{CacheSize: 100, Timeout: 50 * time.Millisecond, QueryTimeout: 200 * time.Millisecond})
	sentinel := question("sentinel.fuzz.invalid.", dns.TypeA, false)
	sentinel.Id = 0xBEEF
	sw, _ := sentinel.Pack()
	f.Fuzz(func(t *testing.T, pkt []byte) {
		if len(pkt) > 0xffff {
			return
		}
		var m dns.Msg
		parses := m.Unpack(pkt) == nil && wellFormed(pkt)

		answers := exchangeWithSentinel(t, e.f.Addr(), pkt, sw)
		if len(answers) > 1 {
			t.Fatalf("%d answers to one packet", len(answers))
		}
		if !parses && len(answers) > 0 {
			t.Fatalf("answered garbage (%d bytes) with %d bytes", len(pkt), len(answers[0]))
		}

		if parses {
			w := &captureWriter{}
			e.f.ServeDNS(w, &m)
			if len(w.writes) > 1 {
				t.Fatalf("%d writes", len(w.writes))
			}
			limit := dns.MinMsgSize
			if o := m.IsEdns0(); o != nil {
				limit = max(limit, min(int(o.UDPSize()), maxUDPSize))
			}
			for _, b := range w.writes {
				if len(b) > limit {
					t.Fatalf("UDP answer of %d bytes, client limit %d", len(b), limit)
				}
				var r dns.Msg
				if err := r.Unpack(b); err != nil {
					t.Fatalf("answer does not parse: %v", err)
				}
				if r.Id != m.Id {
					t.Fatalf("answer ID %d, query ID %d", r.Id, m.Id)
				}
			}
		}
	})
}

// exchangeWithSentinel writes pkt then the sentinel over a new TCP
// connection and returns the answers read before the sentinel's.
func exchangeWithSentinel(t *testing.T, addr string, pkt, sentinel []byte) [][]byte {
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	out := make([]byte, 0, 4+len(pkt)+len(sentinel))
	out = binary.BigEndian.AppendUint16(out, uint16(len(pkt)))
	out = append(out, pkt...)
	out = binary.BigEndian.AppendUint16(out, uint16(len(sentinel)))
	out = append(out, sentinel...)
	if _, err := conn.Write(out); err != nil {
		t.Fatal(err)
	}
	var answers [][]byte
	for i := 0; i < 3; i++ {
		var l [2]byte
		if _, err := io.ReadFull(conn, l[:]); err != nil {
			t.Fatalf("reading answer: %v", err)
		}
		b := make([]byte, binary.BigEndian.Uint16(l[:]))
		if _, err := io.ReadFull(conn, b); err != nil {
			t.Fatalf("reading answer: %v", err)
		}
		var r dns.Msg
		if r.Unpack(b) == nil && r.Id == 0xBEEF && len(r.Question) == 1 && r.Question[0].Name == "sentinel.fuzz.invalid." {
			return answers
		}
		answers = append(answers, b)
	}
	t.Fatal("sentinel never answered")
	return nil
}

// captureWriter is a dns.ResponseWriter on a UDP "connection" that keeps
// what is written.
type captureWriter struct{ writes [][]byte }

func (c *captureWriter) LocalAddr() net.Addr {
	return &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 53}
}
func (c *captureWriter) RemoteAddr() net.Addr {
	return &net.UDPAddr{IP: net.IPv4(127, 0, 0, 2), Port: 40000}
}
func (c *captureWriter) WriteMsg(m *dns.Msg) error {
	b, err := m.Pack()
	if err != nil {
		return err
	}
	_, err = c.Write(b)
	return err
}
func (c *captureWriter) Write(b []byte) (int, error) {
	c.writes = append(c.writes, append([]byte(nil), b...))
	return len(b), nil
}
func (c *captureWriter) Close() error        { return nil }
func (c *captureWriter) TsigStatus() error   { return nil }
func (c *captureWriter) TsigTimersOnly(bool) {}
func (c *captureWriter) Hijack()             {}

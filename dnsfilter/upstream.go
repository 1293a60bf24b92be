package dnsfilter

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"
)

// downFor is how long an upstream that timed out or failed is tried after
// the healthy ones.
const downFor = 10 * time.Second

// upstream is one resolver.
type upstream struct {
	addr      string
	udpAddr   *net.UDPAddr
	tcp       *dns.Client
	downUntil atomic.Int64 // Unix ns; 0 = healthy
}

var (
	errTimeout  = errors.New("upstream timeout")
	errMismatch = errors.New("upstream answer does not match the question")
)

// parseUpstreams turns dns.upstream entries into upstreams; with none it
// reads the nameservers of resolvConf.
func parseUpstreams(list []string, resolvConf string) ([]*upstream, error) {
	var addrs []string
	for _, s := range list {
		s = strings.TrimSpace(s)
		if s == "" {
			continue
		}
		addrs = append(addrs, s)
	}
	if len(addrs) == 0 {
		if resolvConf == "" {
			resolvConf = DefaultResolvConf
		}
		cc, err := dns.ClientConfigFromFile(resolvConf)
		if err != nil {
			return nil, fmt.Errorf("dnsfilter: dns.upstream is empty and %s cannot be read: %w", resolvConf, err)
		}
		for _, s := range cc.Servers {
			addrs = append(addrs, net.JoinHostPort(s, cc.Port))
		}
		if len(addrs) == 0 {
			return nil, fmt.Errorf("dnsfilter: dns.upstream is empty and %s names no nameserver", resolvConf)
		}
	}
	ups := make([]*upstream, 0, len(addrs))
	for _, s := range addrs {
		ap, err := netip.ParseAddrPort(s)
		if err != nil {
			a, err2 := netip.ParseAddr(strings.Trim(s, "[]"))
			if err2 != nil {
				return nil, fmt.Errorf("dnsfilter: dns.upstream %q: want IP:port or IP (port 53)", s)
			}
			ap = netip.AddrPortFrom(a, 53)
		}
		if ap.Port() == 0 {
			return nil, fmt.Errorf("dnsfilter: dns.upstream %q: port 0", s)
		}
		ap = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
		ups = append(ups, &upstream{
			addr:    ap.String(),
			udpAddr: net.UDPAddrFromAddrPort(ap),
			tcp:     &dns.Client{Net: "tcp"},
		})
	}
	return ups, nil
}

func upstreamAddrs(ups []*upstream) []string {
	out := make([]string, len(ups))
	for i, u := range ups {
		out[i] = u.addr
	}
	return out
}

// forward sends q to the upstreams, in order of health and configuration,
// until one answers with something other than SERVFAIL, within the query
// timeout and the attempt bound. A truncated UDP answer is retried over TCP
// (and returned with TC when TCP fails, so the client retries itself).
// overTCP sends over TCP from the start (the client came over TCP).
func (f *Filter) forward(q *dns.Msg, overTCP bool) (*dns.Msg, error) {
	ctx, cancel := context.WithTimeout(f.baseCtx, f.queryTimeout)
	defer cancel()
	var order [8]*upstream
	ups := f.pickOrder(order[:0])
	var last error = errTimeout
	var servfail *dns.Msg
	for i := 0; i < f.attempts; i++ {
		if ctx.Err() != nil {
			break
		}
		u := ups[i%len(ups)]
		q.Id = dns.Id()
		var r *dns.Msg
		var err error
		if overTCP {
			r, err = f.exchangeTCP(ctx, u, q)
		} else {
			r, err = f.exchangeUDP(ctx, u, q)
			if err == nil && r.Truncated {
				if rt, errt := f.exchangeTCP(ctx, u, q); errt == nil {
					r = rt
				}
			}
		}
		if err != nil {
			last = err
			u.downUntil.Store(f.now().Add(downFor).UnixNano())
			f.log.Debug().Err(err).Str("upstream", u.addr).Str("name", q.Question[0].Name).Msg("dns upstream failed")
			continue
		}
		u.downUntil.Store(0)
		if r.Rcode == dns.RcodeServerFailure {
			servfail = r
			continue
		}
		return r, nil
	}
	if servfail != nil {
		return servfail, nil
	}
	return nil, last
}

// pickOrder appends the upstreams to dst, healthy ones first, each group in
// configured order.
func (f *Filter) pickOrder(dst []*upstream) []*upstream {
	now := f.now().UnixNano()
	for _, u := range f.ups {
		if u.downUntil.Load() <= now {
			dst = append(dst, u)
		}
	}
	if len(dst) == len(f.ups) {
		return dst
	}
	for _, u := range f.ups {
		if u.downUntil.Load() > now {
			dst = append(dst, u)
		}
	}
	return dst
}

// exchangeUDP sends q over a fresh connected UDP socket (a new random source
// port per query) and reads until an answer with q's ID and question
// arrives or the attempt times out.
func (f *Filter) exchangeUDP(ctx context.Context, u *upstream, q *dns.Msg) (*dns.Msg, error) {
	bp := f.bufs.Get().(*[]byte)
	defer f.bufs.Put(bp)
	buf := (*bp)[:cap(*bp)]
	out, err := q.PackBuffer(buf)
	if err != nil {
		return nil, err
	}
	conn, err := net.DialUDP("udp", nil, u.udpAddr)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	deadline := time.Now().Add(f.timeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	conn.SetDeadline(deadline)
	if _, err := conn.Write(out); err != nil {
		return nil, err
	}
	// A bounded number of stray datagrams (late answers, spoofing attempts)
	// is skipped.
	for i := 0; i < 16; i++ {
		n, err := conn.Read(buf)
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				return nil, errTimeout
			}
			return nil, err
		}
		if n < 12 || binary.BigEndian.Uint16(buf) != q.Id {
			continue
		}
		r := new(dns.Msg)
		if err := r.Unpack(buf[:n]); err != nil {
			if n == len(buf) {
				// Filled the buffer: treat as truncated.
				r.Truncated = true
				r.Question = q.Question
				return r, nil
			}
			continue
		}
		if !sameQuestion(r, q) {
			continue
		}
		return r, nil
	}
	return nil, errMismatch
}

// exchangeTCP sends q over TCP.
func (f *Filter) exchangeTCP(ctx context.Context, u *upstream, q *dns.Msg) (*dns.Msg, error) {
	tctx, cancel := context.WithTimeout(ctx, f.timeout)
	defer cancel()
	r, _, err := u.tcp.ExchangeContext(tctx, q, u.addr)
	if err != nil {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return nil, errTimeout
		}
		return nil, err
	}
	if !sameQuestion(r, q) {
		return nil, errMismatch
	}
	return r, nil
}

func sameQuestion(r, q *dns.Msg) bool {
	if !r.Response || len(r.Question) != 1 {
		return false
	}
	a, b := r.Question[0], q.Question[0]
	return a.Qtype == b.Qtype && a.Qclass == b.Qclass && strings.EqualFold(a.Name, b.Name)
}

package dnsfilter

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/miekg/dns"

	"github.com/arcfence/arcfence/internal/audit"
)

// downFor is how long an upstream that timed out or failed is tried after
// the healthy ones.
const downFor = 10 * time.Second

// upstream is one resolver.
type upstream struct {
	addr      string
	udpAddr   *net.UDPAddr
	mux       *udpMux
	downUntil atomic.Int64 // Unix ns; 0 = healthy
}

var (
	errTimeout  = errors.New("upstream timeout")
	errMismatch = errors.New("upstream answer does not match the question")
	errBusy     = errors.New("too many queries in flight")
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
		ua := net.UDPAddrFromAddrPort(ap)
		ups = append(ups, &upstream{
			addr:    ap.String(),
			udpAddr: ua,
			mux:     newUDPMux(ua),
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

// forward sends the client's request req (see upstreamQuery; do is the
// client's DO bit) to the upstreams, in order of health and configuration,
// until one answers with something other than SERVFAIL, within the query
// timeout and the attempt bound, and returns the answer as received (wire
// form, the ID being the one forward chose). A truncated UDP answer is
// retried over TCP (and returned with TC when TCP fails, so the client
// retries itself). overTCP sends over TCP from the start (the client came
// over TCP).
func (f *Filter) forward(req *dns.Msg, do, overTCP bool) ([]byte, error) {
	if f.inFlight.Add(1) > f.maxInFlight {
		f.inFlight.Add(-1)
		return nil, errBusy
	}
	defer f.inFlight.Add(-1)
	// One deadline for the whole query; f.baseCtx ends on shutdown.
	ctx := f.baseCtx
	end := time.Now().Add(f.queryTimeout)
	bp := f.bufs.Get().(*[]byte)
	defer f.bufs.Put(bp)
	wire, err := upstreamQuery((*bp)[:cap(*bp)], req, do)
	if err != nil {
		return nil, err
	}
	// The question section: what an answer must echo.
	qend, ok := skipName(wire, 12)
	if !ok || qend+4 > len(wire) {
		return nil, errMismatch
	}
	qsec := wire[12 : qend+4]
	var order [8]*upstream
	ups := f.pickOrder(order[:0])
	var last error = errTimeout
	var servfail []byte
	for i := 0; i < f.attempts; i++ {
		if ctx.Err() != nil || !time.Now().Before(end) {
			break
		}
		u := ups[i%len(ups)]
		var r []byte
		var err error
		proto := protoUDP
		if overTCP {
			proto = protoTCP
			r, err = f.exchangeTCP(ctx, end, u, wire, qsec)
		} else {
			r, err = f.exchangeUDP(ctx, end, u, wire, qsec)
			if err == nil && r[2]&0x02 != 0 { // TC
				rt, errt := f.exchangeTCP(ctx, end, u, wire, qsec)
				if errt == nil {
					r = rt
				} else if ctx.Err() == nil {
					// The client gets the truncated answer and retries
					// over TCP itself; the upstream's TCP is still broken.
					f.upstreamFailed(u, protoTCP, errt)
				}
			}
		}
		if err != nil {
			last = err
			u.downUntil.Store(f.now().Add(downFor).UnixNano())
			if ctx.Err() == nil { // not a shutdown
				f.upstreamFailed(u, proto, err)
			}
			if e := f.log.Debug(); e.Enabled() {
				e.Err(err).Str("upstream", u.addr).Str("name", req.Question[0].Name).Msg("dns upstream attempt failed")
			}
			continue
		}
		u.downUntil.Store(0)
		if r[3]&0x0F == dns.RcodeServerFailure {
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

// Transports of upstream exchanges, as the proto label and log field say them.
const (
	protoUDP = "udp"
	protoTCP = "tcp"
)

// initUpstreamCounters creates the error counters of every upstream at 0,
// so that the first failure is an increase Prometheus sees.
func (f *Filter) initUpstreamCounters() {
	if f.metrics == nil {
		return
	}
	for _, u := range f.ups {
		f.metrics.DNSUpstreamErrors.WithLabelValues(u.addr, protoUDP)
		f.metrics.DNSUpstreamErrors.WithLabelValues(u.addr, protoTCP)
	}
}

// upstreamFailed counts a failed exchange with u over proto and hands it to
// the audit log, which writes it at warn level, folded by upstream, proto
// and cause.
func (f *Filter) upstreamFailed(u *upstream, proto string, err error) {
	if f.metrics != nil {
		f.metrics.DNSUpstreamErrors.WithLabelValues(u.addr, proto).Inc()
	}
	f.audit.UpstreamFailed(audit.UpstreamFailure{Upstream: u.addr, Proto: proto, Cause: failureCause(err)})
}

// failureCause names err by a short cause from a small set, without the
// addresses and ports a net.OpError carries, so repeats fold into one line.
func failureCause(err error) string {
	switch {
	case errors.Is(err, errTimeout):
		return "timeout"
	case errors.Is(err, errMismatch):
		return "answer does not match the question"
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connection refused"
	case errors.Is(err, syscall.ECONNRESET):
		return "connection reset"
	case errors.Is(err, syscall.EHOSTUNREACH), errors.Is(err, syscall.ENETUNREACH):
		return "unreachable"
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "connection closed before the answer"
	}
	var se *os.SyscallError
	if errors.As(err, &se) {
		return se.Err.Error()
	}
	return "error"
}

// upstreamQuery writes into buf the query sent upstream for the client's
// request r: its question as the client spelled it, its RD, CD and AD bits,
// and an OPT record with our UDP size and the client's DO bit (RFC 6891);
// the ID is set per attempt. It returns the wire form.
func upstreamQuery(buf []byte, r *dns.Msg, do bool) ([]byte, error) {
	b := buf[:12]
	clear(b)
	if r.RecursionDesired {
		b[2] |= 0x01
	}
	if r.AuthenticatedData {
		b[3] |= 0x20
	}
	if r.CheckingDisabled {
		b[3] |= 0x10
	}
	b[5], b[11] = 1, 1 // QDCOUNT, ARCOUNT
	qs := r.Question[0]
	off, err := dns.PackDomainName(qs.Name, buf, 12, nil, false)
	if err != nil || off+4+11 > len(buf) {
		return nil, errMismatch
	}
	b = buf[:off]
	b = binary.BigEndian.AppendUint16(b, qs.Qtype)
	b = binary.BigEndian.AppendUint16(b, qs.Qclass)
	var flags byte
	if do {
		flags = 0x80
	}
	return append(b, 0, 0, typeOPT, maxUDPSize>>8, maxUDPSize&0xFF, 0, 0, flags, 0, 0, 0), nil
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

// exchangeUDP sends the query over one of the upstream's multiplexed UDP
// sockets (see udpMux) and waits for the answer with its ID and question
// until the attempt times out.
func (f *Filter) exchangeUDP(ctx context.Context, end time.Time, u *upstream, wire, qsec []byte) ([]byte, error) {
	deadline := time.Now().Add(f.timeout)
	if end.Before(deadline) {
		deadline = end
	}
	return u.mux.exchange(ctx, wire, qsec, deadline)
}

// exchangeTCP sends the query over a new TCP connection (RFC 7766 framing)
// with a random ID and reads one answer.
func (f *Filter) exchangeTCP(ctx context.Context, end time.Time, u *upstream, wire, qsec []byte) ([]byte, error) {
	deadline := time.Now().Add(f.timeout)
	if end.Before(deadline) {
		deadline = end
	}
	d := net.Dialer{Deadline: deadline}
	conn, err := d.DialContext(ctx, "tcp", u.addr)
	if err != nil {
		return nil, timeoutOr(err)
	}
	defer conn.Close()
	conn.SetDeadline(deadline)
	id := uint16(rand.Uint32())
	out := make([]byte, 2+len(wire))
	binary.BigEndian.PutUint16(out, uint16(len(wire)))
	copy(out[2:], wire)
	binary.BigEndian.PutUint16(out[2:], id)
	if _, err := conn.Write(out); err != nil {
		return nil, timeoutOr(err)
	}
	var l [2]byte
	if _, err := io.ReadFull(conn, l[:]); err != nil {
		return nil, timeoutOr(err)
	}
	r := make([]byte, binary.BigEndian.Uint16(l[:]))
	if _, err := io.ReadFull(conn, r); err != nil {
		return nil, timeoutOr(err)
	}
	if !answers(r, id, qsec) {
		return nil, errMismatch
	}
	return r, nil
}

func timeoutOr(err error) error {
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return errTimeout
	}
	return err
}

// answers reports whether r is a response with ID id whose question section
// is qsec (the name compared without regard to ASCII case, DNS 0x20).
func answers(r []byte, id uint16, qsec []byte) bool {
	if len(r) < 12+len(qsec) || binary.BigEndian.Uint16(r) != id || r[2]&0x80 == 0 ||
		binary.BigEndian.Uint16(r[4:]) != 1 {
		return false
	}
	got := r[12 : 12+len(qsec)]
	for i := range qsec {
		a, b := got[i], qsec[i]
		if a != b && lowerByte(a) != lowerByte(b) {
			return false
		}
	}
	return true
}

func lowerByte(c byte) byte {
	if 'A' <= c && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}

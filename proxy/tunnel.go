package proxy

import (
	"errors"
	"io"
	"net"
	"net/netip"
	"os"
	"sync/atomic"
	"time"

	"github.com/arcfence/arcfence/internal/audit"
	"github.com/arcfence/arcfence/policy"
)

// Tunnel kinds, as logged.
const (
	kindConnect   = "connect"
	kindWebsocket = "websocket"
)

// bytesBatch is how many tunnel bytes a direction counts before it adds
// them to the bytes metric (and at its end).
const bytesBatch = 256 << 10

// genericBufSize is the user-space buffer of a direction that cannot splice
// (a TLS client connection).
const genericBufSize = 16 << 10

var (
	errIdle    = errors.New("idle timeout")
	errRefused = errors.New("refused by the ClientHello check")
	errHelloTO = errors.New("no ClientHello in time")
)

// tunnel is one relayed connection pair: a CONNECT tunnel or an upgraded
// websocket. It is created allowed and tracked by its Server until both
// directions end.
type tunnel struct {
	s        *Server
	st       *settings
	kind     string
	client   net.Conn // *net.TCPConn, or *tls.Conn on the TLS listener
	origin   *net.TCPConn
	clientIP netip.Addr
	id       connID // the client connection's
	dec      policy.Decision
	learned  string // the name learnedDecision admitted the tunnel as ("" = none): sniMatches checks the learned names
	// toOrigin are client bytes the request parser had already buffered;
	// toClient are origin bytes already read (a websocket's 101 answer).
	toOrigin, toClient []byte
	inspect            bool // run the ClientHello check on the client's first bytes
	start              time.Time
	dur                time.Duration // set by release

	up, down       int64 // bytes each way; each written by its own direction
	upErr, downErr error
	ended          atomic.Int32
	unreserved     bool // the limits no longer count it (Server.mu)
	aborted        atomic.Bool
	endReason      atomic.Pointer[string]
	lastActive     atomic.Int64 // unix nanoseconds; kept only with an idle timeout
	// spUp and spDown are the directions' splicers, part of the tunnel so
	// that a CONNECT allocates one object fewer per direction.
	spUp, spDown splicer
}

// run starts the two directions. The Server has already counted the tunnel
// in its WaitGroup (two goroutines). Both get fresh goroutines: carrying one
// on the accepting goroutine saved no measurable CPU but kept its grown
// stack parked (15 KiB instead of 9 KiB per idle tunnel).
func (t *tunnel) run() {
	if t.st.idleTO > 0 {
		t.lastActive.Store(time.Now().UnixNano())
	}
	go t.upward()
	go t.downward()
}

func (t *tunnel) upward() {
	var n int64
	var err error
	if t.inspect {
		n, err = t.checkHello()
	} else if len(t.toOrigin) > 0 {
		var k int
		k, err = t.origin.Write(t.toOrigin)
		n = int64(k)
	}
	t.toOrigin = nil
	if err == nil {
		var k int64
		k, err = t.relay(t.origin, t.client, true)
		n += k
	}
	t.up, t.upErr = n, err
	t.finish(t.end(true, err))
}

func (t *tunnel) downward() {
	var n int64
	var err error
	if len(t.toClient) > 0 {
		var k int
		k, err = t.client.Write(t.toClient)
		n = int64(k)
		t.toClient = nil
	}
	if err == nil {
		var k int64
		k, err = t.relay(t.client, t.origin, false)
		n += k
	}
	t.down, t.downErr = n, err
	t.finish(t.end(false, err))
}

// finish ends a direction's goroutine: it is done for Shutdown before the
// close line is written, so a stuck log writer cannot hold a shutdown.
func (t *tunnel) finish(last bool) {
	t.s.wg.Done()
	if last {
		t.logClose()
	}
}

// end finishes one direction: a clean EOF is propagated as a half-close,
// an error closes the whole tunnel. The second direction to end releases
// it and gets true (it then writes the close line).
func (t *tunnel) end(up bool, err error) bool {
	last := t.ended.Load() == 1
	if err == nil && !last {
		// (The last direction skips it: release closes both sockets at
		// once, and a close after EOF on both sides sends the FIN itself.)
		if up {
			_ = t.origin.CloseWrite()
		} else {
			closeWrite(t.client)
		}
	} else if err != nil && !errors.Is(err, net.ErrClosed) {
		t.abort(!errors.Is(err, errRefused), "")
	}
	if t.ended.Add(1) == 2 {
		t.release()
		return true
	}
	return false
}

// abort closes both connections, with a reset (RST) when reset is true so
// that a peer's reset reaches the other side as one. why, when not empty,
// is logged as the tunnel's end reason.
func (t *tunnel) abort(reset bool, why string) {
	if why != "" {
		t.endReason.CompareAndSwap(nil, &why)
	}
	if !t.aborted.CompareAndSwap(false, true) {
		return
	}
	if reset {
		_ = t.origin.SetLinger(0)
		if tc, ok := t.client.(*net.TCPConn); ok {
			_ = tc.SetLinger(0)
		}
	}
	_ = t.client.Close()
	_ = t.origin.Close()
}

// release closes what is left and untracks the tunnel.
func (t *tunnel) release() {
	_ = t.client.Close()
	_ = t.origin.Close()
	t.dur = time.Since(t.start)
	t.s.untrack(t)
	t.s.m.tunnelClosed(t.dur)
}

// logClose writes the tunnel's close line.
func (t *tunnel) logClose() {
	d := t.dur
	var e = t.s.log.Debug()
	if t.st.tunnelsInfo {
		e = t.s.log.Info()
	}
	if !e.Enabled() {
		return
	}
	logConn(e.Str(fieldComponent, audit.ComponentProxy).
		Str(fieldKind, t.kind).
		Str(audit.FieldClient, t.clientIP.String()), t.id).
		Str(audit.FieldHost, t.dec.Host).
		Int(audit.FieldPort, t.dec.Port).
		Str(fieldRule, t.dec.Rule).
		Str(fieldOffering, t.dec.Offering).
		Str(audit.FieldProfile, t.st.profile).
		Int64(fieldBytesUp, t.up).
		Int64(fieldBytesDown, t.down).
		Float64(fieldDuration, d.Seconds())
	if r := t.endReason.Load(); r != nil {
		e.Str(fieldEnd, *r)
	} else if err := firstErr(t.upErr, t.downErr); err != nil {
		e.Str(fieldEnd, err.Error())
	}
	e.Str(fieldMsg, msgTunnelClosed).Send()
}

func firstErr(a, b error) error {
	for _, e := range []error{a, b} {
		if e != nil && !errors.Is(e, net.ErrClosed) {
			return e
		}
	}
	return nil
}

// relay copies src to dst until EOF (nil error) or failure, splicing when
// both are TCP sockets.
func (t *tunnel) relay(dst, src net.Conn, up bool) (int64, error) {
	if spliceSupported {
		ds, ok1 := dst.(*net.TCPConn)
		ss, ok2 := src.(*net.TCPConn)
		if ok1 && ok2 {
			n, err := t.relaySplice(ds, ss, up)
			if err != errSpliceUnsupported {
				return n, err
			}
		}
	}
	return t.relayGeneric(dst, src, up)
}

func (t *tunnel) relaySplice(dst, src *net.TCPConn, up bool) (int64, error) {
	sp := &t.spDown
	if up {
		sp = &t.spUp
	}
	if err := sp.init(&t.s.pipes, src, dst); err != nil {
		return 0, errSpliceUnsupported
	}
	defer sp.release()
	idle := t.st.idleTO
	if idle > 0 {
		// A destination that takes no bytes for the idle time (a client gone
		// without FIN or RST while the origin sends) ends the tunnel too.
		sp.writeTimeout(dst, idle)
	}
	// Bytes reach the shared counter in batches: one atomic update per
	// chunk from every tunnel would contend on one cache line.
	var n, unflushed int64
	defer func() { t.s.m.addBytes(up, unflushed) }()
	for {
		if idle > 0 {
			_ = src.SetReadDeadline(time.Unix(0, t.lastActive.Load()).Add(idle))
		}
		k, eof, err := sp.step()
		if k > 0 {
			n += k
			if unflushed += k; unflushed >= bytesBatch {
				t.s.m.addBytes(up, unflushed)
				unflushed = 0
			}
			if idle > 0 {
				t.lastActive.Store(time.Now().UnixNano())
			}
		}
		switch {
		case eof:
			return n, nil
		case err == nil:
			continue
		case err == errSpliceUnsupported && n == 0:
			return 0, err
		case idle > 0 && sp.writeTimedOut():
			t.abort(false, errIdle.Error())
			return n, errIdle
		case idle > 0 && errors.Is(err, os.ErrDeadlineExceeded):
			if time.Since(time.Unix(0, t.lastActive.Load())) < idle {
				continue
			}
			t.abort(false, errIdle.Error())
			return n, errIdle
		}
		return n, err
	}
}

func (t *tunnel) relayGeneric(dst, src net.Conn, up bool) (int64, error) {
	bp := t.s.bufs.Get().(*[]byte)
	defer t.s.bufs.Put(bp)
	buf := *bp
	idle := t.st.idleTO
	var n int64
	for {
		if idle > 0 {
			_ = src.SetReadDeadline(time.Unix(0, t.lastActive.Load()).Add(idle))
		}
		k, rerr := src.Read(buf)
		if k > 0 {
			if idle > 0 {
				_ = dst.SetWriteDeadline(time.Now().Add(idle))
			}
			w, werr := dst.Write(buf[:k])
			n += int64(w)
			t.s.m.addBytes(up, int64(w))
			if idle > 0 {
				t.lastActive.Store(time.Now().UnixNano())
			}
			if werr != nil {
				if idle > 0 && errors.Is(werr, os.ErrDeadlineExceeded) {
					t.abort(false, errIdle.Error())
					return n, errIdle
				}
				return n, werr
			}
		}
		switch {
		case rerr == nil:
			continue
		case rerr == io.EOF:
			return n, nil
		case idle > 0 && errors.Is(rerr, os.ErrDeadlineExceeded):
			if time.Since(time.Unix(0, t.lastActive.Load())) < idle {
				continue
			}
			t.abort(false, errIdle.Error())
			return n, errIdle
		}
		return n, rerr
	}
}

// closeWrite half-closes c's sending side when it can.
func closeWrite(c net.Conn) {
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		_ = cw.CloseWrite()
		return
	}
}

// tlsAccessDenied is a TLS fatal alert record, access_denied (RFC 8446
// section 6.2), sent to a client whose ClientHello is refused so that its
// TLS stack reports a clear error instead of a bare close.
var tlsAccessDenied = []byte{0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x31}

// checkHello reads the client's first bytes (after what the request parser
// buffered), runs the SNI and not-tls checks and forwards the bytes read when
// the tunnel may go on. It returns the bytes forwarded.
func (t *tunnel) checkHello() (int64, error) {
	bp := t.s.hellos.Get().(*[]byte)
	defer t.s.hellos.Put(bp)
	h := firstBytes{b: append((*bp)[:0], t.toOrigin...)}
	if err := t.readHello(&h); err != nil {
		return 0, err
	}
	if (!h.eof || len(h.b) > 0) && !t.helloAdmitted(h.sni, h.st) {
		return 0, errRefused
	}
	var n int
	var err error
	if len(h.b) > 0 {
		n, err = t.origin.Write(h.b)
		t.s.m.addBytes(true, int64(n))
	}
	if err == nil && h.eof {
		// The client closed its side right after its first bytes: relay
		// finds the EOF again and half-closes the origin.
		return int64(n), nil
	}
	return int64(n), err
}

// firstBytes is what readHello gathers of a tunnel's first bytes.
type firstBytes struct {
	b     []byte      // the bytes read (the parser's leftovers first)
	sni   []byte      // the ClientHello's server name, when st is helloOK
	st    helloStatus // what the bytes are
	eof   bool        // the client closed its side
	timed bool        // the hello deadline was armed
}

// readHello reads until h.b holds a whole ClientHello, bytes that are none,
// or the client's EOF; the hello deadline (limits.header_timeout, armed at
// the first byte, or at once on a TLS-only row) and the idle timeout bound
// the wait. An error has aborted the tunnel.
func (t *tunnel) readHello(h *firstBytes) error {
	var scratch []byte
	c := t.client
	arm := func() {
		if !h.timed {
			h.timed = true
			_ = c.SetReadDeadline(time.Now().Add(t.st.headerTO))
		}
	}
	if t.dec.TLSOnly {
		// Agents speak TLS first on these rows: the hello must come in time.
		arm()
	}
	for {
		h.sni, h.st = parseClientHello(h.b, scratch)
		if h.st == helloNeedScratch {
			scratch = make([]byte, 0, maxHelloBytes)
			continue
		}
		if h.st != helloNeedMore {
			break
		}
		if len(h.b) > 0 {
			arm()
		}
		if len(h.b) == cap(h.b) {
			if cap(h.b) >= maxHelloBytes {
				h.st = helloNotTLS
				break
			}
			h.b = append(make([]byte, 0, min(2*cap(h.b), maxHelloBytes)), h.b...)
		}
		idle := t.st.idleTO > 0 && !h.timed
		if idle {
			// No first bytes yet and no hello deadline: the idle timeout
			// still bounds the wait (the other direction may be the active one).
			_ = c.SetReadDeadline(time.Unix(0, t.lastActive.Load()).Add(t.st.idleTO))
		}
		k, err := c.Read(h.b[len(h.b):cap(h.b)])
		h.b = h.b[:len(h.b)+k]
		if k > 0 && t.st.idleTO > 0 {
			t.lastActive.Store(time.Now().UnixNano())
		}
		if err == nil {
			continue
		}
		if err == io.EOF {
			h.eof = true
			break
		}
		if errors.Is(err, os.ErrDeadlineExceeded) {
			if idle {
				if time.Since(time.Unix(0, t.lastActive.Load())) < t.st.idleTO {
					continue
				}
				t.abort(false, errIdle.Error())
				return errIdle
			}
			t.abort(false, errHelloTO.Error())
			return errHelloTO
		}
		return err
	}
	if h.timed || t.st.idleTO > 0 {
		_ = c.SetReadDeadline(time.Time{})
	}
	return nil
}

// helloAdmitted runs the not-tls and SNI checks on first bytes of status
// st (sni: the hello's server name); false means the tunnel was refused.
func (t *tunnel) helloAdmitted(sni []byte, st helloStatus) bool {
	switch st {
	case helloNotTLS:
		return !t.dec.TLSOnly || t.refuseInTunnel(policy.NotTLS)
	case helloOK:
		return sni == nil || t.sniMatches(sni) || t.refuseInTunnel(policy.SNIMismatch)
	case helloSNIList:
		return t.refuseInTunnel(policy.SNIMismatch)
	}
	return true
}

// sniMatches reports whether a ClientHello's server name fits the tunnel:
// the CONNECT target itself; for a tunnel to an address the DNS filter
// handed out, a name it was handed out for that the policy admits on the
// tunnel's port; for another tunnel to an IP literal, a name the policy
// admits on that port.
func (t *tunnel) sniMatches(sni []byte) bool {
	if t.learned != "" {
		// The name the tunnel was admitted as first: it holds even when
		// its TTL ran out since the CONNECT; then any other learned name.
		return sameHost(sni, t.learned) || t.s.learnedSNI(t.st, t.dec.Addr, sni, t.dec.Port)
	}
	if t.dec.Addr.IsValid() {
		d := t.st.pol.Decide(policy.Dest{Host: string(sni), Port: t.dec.Port})
		return d.Allowed()
	}
	return sameHost(sni, t.dec.Host)
}

// refuseInTunnel handles a refusal found in a tunnel's first bytes. It
// reports whether the tunnel may go on (learn mode, sni: log).
func (t *tunnel) refuseInTunnel(r policy.Reason) bool {
	proceed := t.st.learn || t.st.sni == SNILog
	t.s.refused(t.st, t.clientIP, t.id, t.dec.Host, t.dec.Port, r, proceed)
	if proceed {
		return true
	}
	if r == policy.SNIMismatch {
		_ = t.client.SetWriteDeadline(time.Now().Add(t.st.headerTO))
		_, _ = t.client.Write(tlsAccessDenied)
	} else {
		refusal(t.dec.Host, t.dec.Port, r).writeTo(t.client, false)
	}
	why := r.String()
	t.abort(false, why)
	return false
}

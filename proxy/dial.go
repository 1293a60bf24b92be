package proxy

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"time"

	"github.com/arcfence/arcfence/policy"
)

// minAttempt is the least time one address of several gets when dialing.
const minAttempt = 2 * time.Second

// keepAlive turns TCP keep-alive on with the system's timings (on Linux
// probes after 2 h idle): dead peers of long-lived idle tunnels are found,
// at the cost of one setsockopt per socket instead of Go's four.
func keepAlive() net.KeepAliveConfig {
	return net.KeepAliveConfig{Enable: true, Idle: -1, Interval: -1, Count: -1}
}

// Listen opens a TCP listener for Serve whose accepted connections get
// keepAlive (Go's default would set its own timings with four system calls
// per connection).
func Listen(ctx context.Context, addr string) (net.Listener, error) {
	lc := net.ListenConfig{KeepAliveConfig: keepAlive()}
	return lc.Listen(ctx, "tcp", addr)
}

// dialOrigin resolves the decision's host (an IP literal is its own
// address), checks every address with the guard and dials the checked
// addresses in turn, never resolving twice. Errors are a *guardError when
// an address is refused, a *dialError otherwise.
func (s *Server) dialOrigin(ctx context.Context, st *settings, d policy.Decision) (*net.TCPConn, error) {
	start := time.Now()
	ctx, cancel := context.WithTimeout(ctx, st.dialTO)
	defer cancel()
	var addrs []netip.Addr
	var one [1]netip.Addr
	if d.Addr.IsValid() {
		one[0] = d.Addr
		addrs = one[:]
	} else if a, err := netip.ParseAddr(d.Host); err == nil {
		one[0] = a
		addrs = one[:]
	} else {
		addrs, err = st.resolver.LookupNetIP(ctx, "ip", d.Host)
		if err != nil {
			var de *net.DNSError
			if st.resolverAddr != "" && errors.As(err, &de) {
				// Go's resolver names resolv.conf's server even when the
				// query went to the configured one.
				named := *de
				named.Server = st.resolverAddr
				err = &named
			}
			return nil, s.dialFailure(d, err)
		}
		if len(addrs) == 0 {
			return nil, s.dialFailure(d, errNoAddresses)
		}
	}
	for _, a := range addrs {
		if !addrAllowed(a, d.PrivateOK, st.allowRanges) {
			return nil, &guardError{host: d.Host, port: d.Port}
		}
	}
	dialer := net.Dialer{KeepAliveConfig: keepAlive()}
	var lastErr error
	for i, a := range addrs {
		actx := ctx
		if left := len(addrs) - i; left > 1 {
			if dl, ok := ctx.Deadline(); ok {
				part := time.Until(dl) / time.Duration(left)
				if part < minAttempt {
					part = minAttempt
				}
				var c context.CancelFunc
				actx, c = context.WithTimeout(ctx, part)
				defer c()
			}
		}
		ap := netip.AddrPortFrom(a.Unmap(), uint16(d.Port))
		if s.dialHook != nil {
			ap = s.dialHook(ap)
		}
		// Not Dialer.DialTCP(ctx, "tcp", netip.AddrPort{}, ap): it turns the
		// zero local address into a non-nil *TCPAddr and binds port 0 before
		// connecting, so every origin connection holds an ephemeral port of
		// its own. Under the peer harness's CONNECT churn that ran out of
		// ports: 35% 502s and 8 ms of proxy CPU per CONNECT (bind's port
		// search), against 0 errors and ~250 µs with DialContext.
		c, err := dialer.DialContext(actx, "tcp", ap.String())
		if err == nil {
			s.m.dialed(time.Since(start))
			return c.(*net.TCPConn), nil
		}
		lastErr = err
		if ctx.Err() != nil {
			break
		}
	}
	return nil, s.dialFailure(d, lastErr)
}

// dialFailure is the error of a failed resolution or dial to d, counted in
// arcfence_dial_errors_total by the status it is answered with (for every
// dial: CONNECT, websocket and plain HTTP), before any answer is written.
func (s *Server) dialFailure(d policy.Decision, err error) error {
	de := &dialError{host: d.Host, port: d.Port, err: err}
	s.m.dialFailed(failure(de).code)
	return de
}

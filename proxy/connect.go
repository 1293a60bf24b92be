package proxy

import (
	"context"
	"net"
	"net/http"
	"net/netip"
	"time"

	"github.com/arcfence/arcfence/internal/audit"
	"github.com/arcfence/arcfence/policy"
)

const (
	established10 = "HTTP/1.0 200 Connection established\r\n\r\n"
	established11 = "HTTP/1.1 200 Connection established\r\n\r\n"
)

// answerer is where a request is answered: the fast path's connection
// (*rawWriter) or net/http's (*httpAnswerer).
type answerer interface {
	// answer writes a; the connection is closed after it.
	answer(a answer)
	// take takes the connection over for a tunnel. It returns the raw
	// connection and the client bytes already read behind the request (a
	// pipelined ClientHello).
	take() (net.Conn, []byte, error)
}

// httpAnswerer answers a request net/http read.
type httpAnswerer struct {
	w http.ResponseWriter
	r *http.Request
}

func (h *httpAnswerer) answer(a answer) { answerHTTP(h.w, h.r, a) }

func (h *httpAnswerer) take() (net.Conn, []byte, error) {
	conn, brw, err := http.NewResponseController(h.w).Hijack()
	if err != nil {
		return nil, nil, err
	}
	raw, rest := unwrap(conn)
	if n := brw.Reader.Buffered(); n > 0 {
		b, _ := brw.Reader.Peek(n)
		rest = append(rest[:len(rest):len(rest)], b...)
	}
	return raw, rest, nil
}

// serveConnect decides a CONNECT of authority, dials the checked address,
// answers 200 and hands the connection to a tunnel; or answers
// 403/429/502/504. ctx bounds the dial with the dial timeout: the Server's
// own context, never a request's (net/http cancels that at the client's
// half-close, which would lose the bytes sent before it). id is the client
// connection's id.
func (s *Server) serveConnect(ctx context.Context, w answerer, authority string, proto10 bool, st *settings, client netip.Addr, id connID) {
	host, port, reason := policy.SplitHostPort(authority)
	st, ok := s.precheck(w, st, client, id, host, port, reason)
	if !ok {
		return
	}
	d, ok, learned := s.admit(st, client, id, policy.Dest{Host: host, Port: port})
	if !ok {
		w.answer(refusal(d.Host, d.Port, d.Reason))
		return
	}
	if !s.reserve(st, client) {
		s.refused(st, client, id, d.Host, d.Port, policy.LimitExceeded, false)
		w.answer(refusal(d.Host, d.Port, policy.LimitExceeded))
		return
	}
	origin, err := s.dialOrigin(ctx, st, d)
	if err != nil {
		s.unreserve(client)
		s.dialFailed(w, st, client, id, d, err)
		return
	}
	t := &tunnel{
		s:        s,
		st:       st,
		kind:     kindConnect,
		origin:   origin,
		clientIP: client,
		id:       id,
		dec:      d,
		learned:  learned,
		inspect:  st.sni != SNIOff,
		start:    time.Now(),
	}
	conn, rest, err := w.take()
	if err != nil {
		// Not reachable with net/http's HTTP/1 server.
		s.unreserve(client)
		_ = origin.Close()
		w.answer(status(http.StatusInternalServerError, causeInternal, "cannot take over the connection"))
		return
	}
	t.client = conn
	if !s.trackOrRefuse(t) {
		return
	}
	t.toOrigin = rest
	line := established11
	if proto10 {
		line = established10
	}
	if _, err := t.client.Write([]byte(line)); err != nil {
		t.abort(false, "client gone")
	}
	if rw, ok := w.(*rawWriter); ok {
		rw.handedOver() // the tunnel is tracked on its own from here
	}
	t.run()
}

// dialFailed answers and logs a failed resolution, guard refusal or dial:
// a refusal line for the guard's private-address, a "dial failed" line
// with the answer's status and cause otherwise.
func (s *Server) dialFailed(w answerer, st *settings, client netip.Addr, id connID, d policy.Decision, err error) {
	a := failure(err)
	// Answer first: a slow log writer must not hold the client's answer.
	w.answer(a)
	if a.reason != policy.ReasonNone {
		s.refused(st, client, id, d.Host, d.Port, a.reason, false)
		return
	}
	s.failed(client, id, d, a, err, "dial failed")
}

// failed writes the line of a dial or forward that failed with err and was
// answered with a.
func (s *Server) failed(client netip.Addr, id connID, d policy.Decision, a answer, err error, msg string) {
	if e := s.log.Info(); e.Enabled() {
		logConn(e.Str(fieldComponent, audit.ComponentProxy).
			Str(audit.FieldClient, client.String()).
			Str(audit.FieldHost, d.Host).
			Int(audit.FieldPort, d.Port), id).
			Int(fieldStatus, a.code).
			Str(fieldCause, a.cause).
			Str(fieldError, err.Error()).
			Str(fieldMsg, msg).Send()
	}
}

// shuttingDown answers a connection taken over while the server shuts down.
var shuttingDown = status(http.StatusServiceUnavailable, causeShuttingDown, "shutting down")

// precheck picks the client's profile and refuses a request whose client
// is in no profile or whose authority did not parse (reason), answering
// and logging it; it returns the view of the client's profile (which
// decides the rest of the connection) and whether the request may go on
// to the policy decision. CONNECT and plain HTTP share it so both refuse
// the same way.
func (s *Server) precheck(w answerer, st *settings, client netip.Addr, id connID, host string, port int, reason policy.Reason) (*settings, bool) {
	pst, inProfile := st.forClient(client)
	if reason != policy.ReasonNone {
		s.refused(pst, client, id, host, port, reason, false)
		w.answer(refusal(host, port, reason))
		return pst, false
	}
	if !inProfile {
		if h, ok := policy.NormalizeHost(host); ok {
			host = h
		}
		s.refused(pst, client, id, host, port, policy.ClientNotAllowed, false)
		w.answer(refusal(host, port, policy.ClientNotAllowed))
		return pst, false
	}
	return pst, true
}

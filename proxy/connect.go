package proxy

import (
	"context"
	"errors"
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

// serveConnect decides a CONNECT of authority, dials the checked address,
// answers 200 and hands the connection to a tunnel; or answers
// 403/429/502/504. w is net/http's ResponseWriter, or a *rawWriter on the
// fast path; ctx bounds the dial.
func (s *Server) serveConnect(ctx context.Context, w http.ResponseWriter, authority string, proto10 bool, st *settings, client netip.Addr) {
	host, port, reason := policy.SplitHostPort(authority)
	if !s.precheck(w, st, client, host, port, reason) {
		return
	}
	d, ok := s.admit(st, client, st.pol.Decide(policy.Dest{Host: host, Port: port}), "")
	if !ok {
		writeDeny(w, d.Host, d.Port, d.Reason)
		return
	}
	if !s.reserve(st, client) {
		s.refused(client, d.Host, d.Port, policy.LimitExceeded, false)
		writeDeny(w, d.Host, d.Port, policy.LimitExceeded)
		return
	}
	origin, err := s.dialOrigin(ctx, st, d)
	if err != nil {
		s.unreserve(client)
		s.dialFailed(w, client, d, err)
		return
	}
	t := &tunnel{
		s:        s,
		st:       st,
		kind:     kindConnect,
		origin:   origin,
		clientIP: client,
		dec:      d,
		inspect:  st.sni != sniOff,
		start:    time.Now(),
	}
	conn, rest, err := takeConn(w)
	if err != nil {
		// Not reachable with net/http's HTTP/1 server.
		s.unreserve(client)
		_ = origin.Close()
		writeStatus(w, http.StatusInternalServerError, "cannot take over the connection")
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

// dialFailed answers and logs a failed resolution, guard refusal or dial.
func (s *Server) dialFailed(w http.ResponseWriter, client netip.Addr, d policy.Decision, err error) {
	var ge *guardError
	if errors.As(err, &ge) {
		writeDeny(w, d.Host, d.Port, policy.PrivateAddress)
		s.refused(client, d.Host, d.Port, policy.PrivateAddress, false)
		return
	}
	code := statusOf(err)
	s.m.dialFailed(code)
	// Answer first: a slow log writer must not hold the client's answer.
	writeDialError(w, err)
	if e := s.log.Info(); e.Enabled() {
		e.Str(fieldComponent, audit.ComponentProxy).
			Str(audit.FieldClient, client.String()).
			Str(audit.FieldHost, d.Host).
			Int(audit.FieldPort, d.Port).
			Int(fieldStatus, code).
			Str(fieldError, err.Error()).
			Str(fieldMsg, "dial failed").Send()
	}
}

// response503 answers a connection taken over while the server shuts down.
const response503 = "HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain; charset=utf-8\r\n" +
	"Connection: close\r\nContent-Length: 24\r\n\r\narcfence: shutting down\n"

// takeConn takes the client connection over from w: the raw connection of
// the fast path, or net/http's, hijacked. It returns the client bytes
// already read behind the request (a pipelined ClientHello).
func takeConn(w http.ResponseWriter) (net.Conn, []byte, error) {
	if rw, ok := w.(*rawWriter); ok {
		rw.taken = true
		return rw.conn, rw.rest, nil
	}
	conn, brw, err := http.NewResponseController(w).Hijack()
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

// precheck refuses a request whose authority did not parse (reason) or
// whose client is outside clients, answering and logging it; it reports
// whether the request may go on to the policy decision. CONNECT and plain
// HTTP share it so both refuse the same way.
func (s *Server) precheck(w http.ResponseWriter, st *settings, client netip.Addr, host string, port int, reason policy.Reason) bool {
	if reason != policy.ReasonNone {
		s.refused(client, host, port, reason, false)
		writeDeny(w, host, port, reason)
		return false
	}
	if !st.clientAllowed(client) {
		if h, ok := policy.NormalizeHost(host); ok {
			host = h
		}
		s.refused(client, host, port, policy.ClientNotAllowed, false)
		writeDeny(w, host, port, policy.ClientNotAllowed)
		return false
	}
	return true
}

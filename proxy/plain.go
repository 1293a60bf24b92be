package proxy

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"path"
	"strings"
	"sync/atomic"
	"time"

	"github.com/elazarl/goproxy"

	"github.com/arcfence/arcfence/policy"
)

// newGoproxy builds the goproxy server for plain-HTTP forwarding with none
// of its defaults left: no environment proxy, no TLS verification skipped,
// no CA, no MITM, no ConnectDial. It never receives a CONNECT (the Server
// handles those first); should one reach it, it is refused.
func newGoproxy(s *Server) *goproxy.ProxyHttpServer {
	gp := goproxy.NewProxyHttpServer()
	gp.Tr = s.tr
	gp.ConnectDial = nil
	gp.ConnectDialWithReq = func(*http.Request, string, string) (net.Conn, error) {
		return nil, errors.New("arcfence: goproxy must not dial CONNECT targets")
	}
	gp.Logger = debugWriter{s.log}
	gp.Verbose = false
	gp.KeepAcceptEncoding = true
	gp.AllowHTTP2 = false
	gp.NonproxyHandler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		answerHTTP(w, r, status(http.StatusBadRequest, causeNotProxy,
			"not a proxy request: send an absolute http:// URL or CONNECT"))
	})
	gp.OnRequest().HandleConnectFunc(func(host string, ctx *goproxy.ProxyCtx) (*goproxy.ConnectAction, string) {
		ctx.Resp = goproxy.NewResponse(ctx.Req, goproxy.ContentTypeText, http.StatusForbidden, "arcfence: denied\n")
		return goproxy.RejectConnect, host
	})
	gp.OnRequest().DoFunc(func(r *http.Request, ctx *goproxy.ProxyCtx) (*http.Request, *http.Response) {
		removeHopByHop(r.Header, false)
		ctx.RoundTripper = s.rt
		return r, nil
	})
	gp.OnResponse().DoFunc(func(resp *http.Response, _ *goproxy.ProxyCtx) *http.Response {
		if resp != nil {
			removeHopByHop(resp.Header, false)
		}
		return resp
	})
	return gp
}

// hopByHop are the headers of one connection (RFC 9110 section 7.6.1),
// never forwarded.
var hopByHop = []string{"Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate",
	"Proxy-Authorization", "Te", "Trailer", "Transfer-Encoding", "Upgrade"}

// removeHopByHop deletes hop-by-hop headers and those that Connection
// names. keepUpgrade keeps Connection and Upgrade (a websocket handshake).
func removeHopByHop(h http.Header, keepUpgrade bool) {
	for _, v := range h.Values("Connection") {
		for _, f := range strings.Split(v, ",") {
			if f = strings.TrimSpace(f); f != "" && !(keepUpgrade && strings.EqualFold(f, "upgrade")) {
				h.Del(f)
			}
		}
	}
	for _, k := range hopByHop {
		if keepUpgrade && (k == "Connection" || k == "Upgrade") {
			continue
		}
		if k == "Te" && strings.EqualFold(strings.TrimSpace(h.Get(k)), "trailers") {
			continue // as httputil.ReverseProxy: trailers support is end to end
		}
		h.Del(k)
	}
}

// plainKey carries the decision of a plain request to the transport's dialer.
type plainKey struct{}

type plainDest struct {
	st  *settings
	dec policy.Decision
	// ans, when set by roundTrip, is the answer to a forward that failed
	// with failed; plainWriter writes it instead of goproxy's answer and
	// servePlain logs it once it is out.
	ans    *answer
	failed error
	// bodyLate is set when the client's body did not come in time.
	bodyLate atomic.Bool
}

// plainWriter is the ResponseWriter goproxy answers a plain request on:
// when the forward failed, arcfence's answer (with its reason phrase) goes
// out instead of goproxy's copy of the placeholder response.
type plainWriter struct {
	http.ResponseWriter
	pd   *plainDest
	r    *http.Request // the client's request
	done bool
}

// WriteHeader implements http.ResponseWriter.
func (w *plainWriter) WriteHeader(code int) {
	if w.pd.ans == nil {
		w.ResponseWriter.WriteHeader(code)
		return
	}
	if !w.done {
		w.done = true
		answerHTTP(w.ResponseWriter, w.r, *w.pd.ans)
	}
}

// Write implements http.ResponseWriter.
func (w *plainWriter) Write(p []byte) (int, error) {
	if w.pd.ans == nil {
		return w.ResponseWriter.Write(p)
	}
	w.WriteHeader(0)
	return len(p), nil
}

// Flush implements http.Flusher.
func (w *plainWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok && w.pd.ans == nil {
		f.Flush()
	}
}

// Unwrap returns the ResponseWriter under w (for http.ResponseController).
func (w *plainWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// idleBody bounds every read of a plain request's body by the header
// timeout: a client that stops sending in the middle of its body is
// answered 408 and closed instead of holding its connection (and its place
// in the limits) for as long as it likes. A timer, not a read deadline of
// the body's own, ends the wait: it marks the body late before it cuts the
// read, so that roundTrip, woken by the failure, finds the mark.
type idleBody struct {
	io.ReadCloser
	cc    *clientConn
	idle  time.Duration
	pd    *plainDest
	timer *time.Timer
}

func newIdleBody(body io.ReadCloser, cc *clientConn, idle time.Duration, pd *plainDest) *idleBody {
	b := &idleBody{ReadCloser: body, cc: cc, idle: idle, pd: pd}
	b.timer = time.AfterFunc(idle, b.expire)
	b.timer.Stop()
	return b
}

// expire marks the body late and cuts the read under way.
func (b *idleBody) expire() {
	b.pd.bodyLate.Store(true)
	_ = b.cc.Conn.SetReadDeadline(time.Unix(1, 0))
}

// Read implements io.Reader.
func (b *idleBody) Read(p []byte) (int, error) {
	b.timer.Reset(b.idle)
	n, err := b.ReadCloser.Read(p)
	b.timer.Stop()
	return n, err
}

// Close implements io.Closer.
func (b *idleBody) Close() error {
	b.timer.Stop()
	return b.ReadCloser.Close()
}

// servePlain decides an absolute-form request and forwards it, or relays it
// as a websocket when it asks for one.
func (s *Server) servePlain(w http.ResponseWriter, r *http.Request, st *settings, client netip.Addr, cc *clientConn) {
	id := cc.connID()
	ha := &httpAnswerer{w: w, r: r}
	if !r.URL.IsAbs() {
		s.gp.NonproxyHandler.ServeHTTP(w, r)
		return
	}
	if !strings.EqualFold(r.URL.Scheme, "http") {
		ha.answer(status(http.StatusBadRequest, causeScheme, "only http:// URLs are forwarded; use CONNECT for "+r.URL.Scheme))
		return
	}
	host, port := r.URL.Host, 80
	var reason policy.Reason
	if r.URL.Port() != "" {
		host, port, reason = policy.SplitHostPort(r.URL.Host)
	} else if strings.HasSuffix(host, ":") {
		host, reason = strings.TrimSuffix(host, ":"), policy.InvalidPort
	}
	st, ok := s.precheck(ha, st, client, id, host, port, reason)
	if !ok {
		return
	}
	path := cleanPath(r.URL.Path)
	d, ok, _ := s.admit(st, client, id, policy.Dest{Host: host, Port: port, Path: path, Plain: true})
	if !ok {
		ha.answer(refusal(d.Host, d.Port, d.Reason))
		return
	}
	// RFC 9112 section 3.2.2: a proxy replaces Host with the target's
	// authority, so the origin serves the host that was decided on.
	r.Host = r.URL.Host
	if isWebsocket(r.Header) {
		s.dropSlot(cc) // the websocket is counted as a tunnel
		s.serveUpgrade(ha, r, st, client, id, d)
		return
	}
	if !s.holdSlot(cc, st, client) {
		s.refused(st, client, id, d.Host, d.Port, policy.LimitExceeded, false)
		ha.answer(refusal(d.Host, d.Port, policy.LimitExceeded))
		return
	}
	pd := &plainDest{st: st, dec: d}
	if cc != nil && r.Body != nil && r.Body != http.NoBody {
		b := newIdleBody(r.Body, cc, st.headerTO, pd)
		defer b.timer.Stop()
		r.Body = b
	}
	s.gp.ServeHTTP(&plainWriter{ResponseWriter: w, pd: pd, r: r}, r.WithContext(context.WithValue(r.Context(), plainKey{}, pd)))
	if pd.ans != nil && pd.failed != nil {
		s.failed(client, id, d, *pd.ans, pd.failed, "forward failed")
	}
}

// cleanPath is the path the policy checks: dot segments resolved as the
// origin will resolve them, so "/pkiops/certs/../x" is checked as "/x".
// Backslashes count as slashes, as IIS and other Windows-hosted origins
// read them ("/pkiops/certs/..\\x" is "/x" too).
func cleanPath(p string) string {
	if p == "" {
		return "/"
	}
	p = strings.ReplaceAll(p, "\\", "/")
	c := path.Clean(p)
	if strings.HasSuffix(p, "/") && c != "/" {
		c += "/"
	}
	return c
}

// dialPlain is the transport's dialer: it dials only what servePlain
// decided, through the guard.
func (s *Server) dialPlain(ctx context.Context, _, _ string) (net.Conn, error) {
	pd, _ := ctx.Value(plainKey{}).(*plainDest)
	if pd == nil {
		return nil, errors.New("arcfence: dial without a decision")
	}
	return s.dialOrigin(ctx, pd.st, pd.dec)
}

// roundTrip forwards a plain request and turns transport errors into
// arcfence's answers (408 for a late body, 403 private-address, 502, 504),
// which plainWriter writes in place of the placeholder returned here.
func (s *Server) roundTrip(req *http.Request, _ *goproxy.ProxyCtx) (*http.Response, error) {
	resp, err := s.tr.RoundTrip(req)
	if err == nil {
		return resp, nil
	}
	pd, _ := req.Context().Value(plainKey{}).(*plainDest)
	if pd == nil {
		return nil, err // not reachable: servePlain always sets it
	}
	var a answer
	switch {
	case pd.bodyLate.Load():
		a = status(http.StatusRequestTimeout, causeBodyTimeout, "request body not read in time")
		s.badRequest(remoteIP(req.RemoteAddr), clientConnOf(req.Context()).connID(), http.StatusRequestTimeout)
	default:
		a = failure(err)
		if a.reason != policy.ReasonNone {
			cc := clientConnOf(req.Context())
			s.refused(pd.st, remoteIP(req.RemoteAddr), cc.connID(), pd.dec.Host, pd.dec.Port, a.reason, false)
		} else {
			pd.failed = err // logged once the answer is out
		}
	}
	pd.ans = &a
	return &http.Response{StatusCode: a.code, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header: make(http.Header), Body: http.NoBody, Request: req}, nil
}

// isWebsocket reports whether a request asks for a websocket upgrade.
func isWebsocket(h http.Header) bool {
	return headerHas(h, "Connection", "upgrade") && headerHas(h, "Upgrade", "websocket")
}

func headerHas(h http.Header, name, token string) bool {
	for _, v := range h.Values(name) {
		for _, f := range strings.Split(v, ",") {
			if strings.EqualFold(strings.TrimSpace(f), token) {
				return true
			}
		}
	}
	return false
}

// serveUpgrade relays an absolute-form websocket upgrade: the request goes
// to the checked address; a 101 answer turns the connection into a tunnel,
// any other answer is passed back and the connection closed, so no further
// request can ride on an unchecked connection. Like a CONNECT, the dial is
// bounded by the Server's context and the dial timeout, not the request's.
func (s *Server) serveUpgrade(ha *httpAnswerer, r *http.Request, st *settings, client netip.Addr, id connID, d policy.Decision) {
	w := ha.w
	if !s.reserve(st, client) {
		s.refused(st, client, id, d.Host, d.Port, policy.LimitExceeded, false)
		ha.answer(refusal(d.Host, d.Port, policy.LimitExceeded))
		return
	}
	origin, err := s.dialOrigin(s.ctx, st, d)
	if err != nil {
		s.unreserve(client)
		s.dialFailed(ha, st, client, id, d, err)
		return
	}
	fail := func(a answer, err error) {
		s.unreserve(client)
		_ = origin.Close()
		ha.answer(a)
		if err != nil {
			s.failed(client, id, d, a, err, "websocket failed")
		}
	}
	out := r.Clone(r.Context())
	out.RequestURI = ""
	removeHopByHop(out.Header, true)
	out.Header.Set("Connection", "Upgrade")
	_ = origin.SetDeadline(time.Now().Add(st.dialTO))
	if err := out.Write(origin); err != nil {
		err = fmt.Errorf("websocket request to %s: %w", policy.FormatHostPort(d.Host, d.Port), err)
		fail(failure(err), err)
		return
	}
	br := bufio.NewReader(origin)
	resp, err := http.ReadResponse(br, out)
	if err != nil {
		err = fmt.Errorf("websocket answer from %s: %w", policy.FormatHostPort(d.Host, d.Port), err)
		fail(failure(err), err)
		return
	}
	_ = origin.SetDeadline(time.Time{})
	if resp.StatusCode != http.StatusSwitchingProtocols {
		defer resp.Body.Close()
		s.unreserve(client)
		removeHopByHop(resp.Header, false)
		for k, v := range resp.Header {
			w.Header()[k] = v
		}
		w.Header().Set("Connection", "close")
		w.WriteHeader(resp.StatusCode)
		_, _ = io.Copy(w, io.LimitReader(resp.Body, 1<<20))
		_ = origin.Close()
		return
	}
	raw, early, err := ha.take()
	if err != nil {
		fail(status(http.StatusInternalServerError, causeInternal, "cannot take over the connection"), nil)
		return
	}
	t := &tunnel{
		s:        s,
		st:       st,
		kind:     kindWebsocket,
		client:   raw,
		origin:   origin,
		clientIP: client,
		id:       id,
		dec:      d,
		start:    time.Now(),
	}
	if !s.trackOrRefuse(t) {
		return
	}
	var head bytes.Buffer
	head.WriteString("HTTP/1.1 101 Switching Protocols\r\n")
	_ = resp.Header.Write(&head)
	head.WriteString("\r\n")
	if n := br.Buffered(); n > 0 {
		b, _ := br.Peek(n)
		head.Write(b)
	}
	t.toClient = head.Bytes()
	t.toOrigin = early
	t.run()
}

package proxy

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/netip"
	"path"
	"strconv"
	"strings"
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
	gp.NonproxyHandler = http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		writeStatus(w, http.StatusBadRequest, "not a proxy request: send an absolute http:// URL or CONNECT")
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
	// failed is the transport error answered with 502/504, logged by
	// servePlain once the answer is written.
	failed error
}

// servePlain decides an absolute-form request and forwards it, or relays it
// as a websocket when it asks for one.
func (s *Server) servePlain(w http.ResponseWriter, r *http.Request, st *settings, client netip.Addr) {
	if !r.URL.IsAbs() {
		s.gp.NonproxyHandler.ServeHTTP(w, r)
		return
	}
	if !strings.EqualFold(r.URL.Scheme, "http") {
		writeStatus(w, http.StatusBadRequest, "only http:// URLs are forwarded; use CONNECT for "+r.URL.Scheme)
		return
	}
	host, port := r.URL.Host, 80
	var reason policy.Reason
	if r.URL.Port() != "" {
		host, port, reason = policy.SplitHostPort(r.URL.Host)
	} else if strings.HasSuffix(host, ":") {
		host, reason = strings.TrimSuffix(host, ":"), policy.InvalidPort
	}
	if !s.precheck(w, st, client, host, port, reason) {
		return
	}
	path := cleanPath(r.URL.Path)
	d, ok, _ := s.admit(st, client, policy.Dest{Host: host, Port: port, Path: path, Plain: true})
	if !ok {
		writeDeny(w, d.Host, d.Port, d.Reason)
		return
	}
	// RFC 9112 section 3.2.2: a proxy replaces Host with the target's
	// authority, so the origin serves the host that was decided on.
	r.Host = r.URL.Host
	if isWebsocket(r.Header) {
		s.serveUpgrade(w, r, st, client, d)
		return
	}
	pd := &plainDest{st: st, dec: d}
	s.gp.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), plainKey{}, pd)))
	if pd.failed != nil {
		if e := s.log.Info(); e.Enabled() {
			e.Str(fieldComponent, "proxy").Str("client", client.String()).Str("host", d.Host).
				Int("port", d.Port).Int(fieldStatus, statusOf(pd.failed)).Str(fieldError, pd.failed.Error()).
				Str(fieldMsg, "forward failed").Send()
		}
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
// arcfence's answers (403 private-address, 502, 504).
func (s *Server) roundTrip(req *http.Request, _ *goproxy.ProxyCtx) (*http.Response, error) {
	resp, err := s.tr.RoundTrip(req)
	if err == nil {
		return resp, nil
	}
	pd, _ := req.Context().Value(plainKey{}).(*plainDest)
	client := remoteIP(req.RemoteAddr)
	var ge *guardError
	if errors.As(err, &ge) && pd != nil {
		s.refused(client, pd.dec.Host, pd.dec.Port, policy.PrivateAddress, false)
		body := denyBody(pd.dec.Host, pd.dec.Port, policy.PrivateAddress)
		resp := textResponse(req, http.StatusForbidden, body)
		resp.Header.Set(HeaderReason, policy.PrivateAddress.String())
		return resp, nil
	}
	if pd != nil {
		pd.failed = err // logged once the answer is out
	}
	return textResponse(req, statusOf(err), "arcfence: "+err.Error()+"\n"), nil
}

func textResponse(req *http.Request, code int, body string) *http.Response {
	h := make(http.Header)
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("Connection", "close")
	return &http.Response{
		StatusCode:    code,
		Status:        strconv.Itoa(code) + " " + http.StatusText(code),
		Proto:         "HTTP/1.1",
		ProtoMajor:    1,
		ProtoMinor:    1,
		Header:        h,
		Body:          io.NopCloser(strings.NewReader(body)),
		ContentLength: int64(len(body)),
		Request:       req,
	}
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
// request can ride on an unchecked connection.
func (s *Server) serveUpgrade(w http.ResponseWriter, r *http.Request, st *settings, client netip.Addr, d policy.Decision) {
	if !s.reserve(st, client) {
		s.refused(client, d.Host, d.Port, policy.LimitExceeded, false)
		writeDeny(w, d.Host, d.Port, policy.LimitExceeded)
		return
	}
	origin, err := s.dialOrigin(r.Context(), st, d)
	if err != nil {
		s.unreserve(client)
		s.dialFailed(w, client, d, err)
		return
	}
	fail := func(code int, msg string) {
		s.unreserve(client)
		_ = origin.Close()
		writeStatus(w, code, msg)
	}
	out := r.Clone(r.Context())
	out.RequestURI = ""
	removeHopByHop(out.Header, true)
	out.Header.Set("Connection", "Upgrade")
	_ = origin.SetDeadline(time.Now().Add(st.dialTO))
	if err := out.Write(origin); err != nil {
		fail(http.StatusBadGateway, "websocket request to "+policy.FormatHostPort(d.Host, d.Port)+": "+err.Error())
		return
	}
	br := bufio.NewReader(origin)
	resp, err := http.ReadResponse(br, out)
	if err != nil {
		fail(statusOf(err), "websocket answer from "+policy.FormatHostPort(d.Host, d.Port)+": "+err.Error())
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
	conn, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		fail(http.StatusInternalServerError, "cannot take over the connection")
		return
	}
	raw, early := unwrap(conn)
	t := &tunnel{
		s:        s,
		st:       st,
		kind:     kindWebsocket,
		client:   raw,
		origin:   origin,
		clientIP: client,
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
	if n := brw.Reader.Buffered(); n > 0 {
		b, _ := brw.Reader.Peek(n)
		t.toOrigin = append(t.toOrigin[:len(t.toOrigin):len(t.toOrigin)], b...)
	}
	t.run()
}

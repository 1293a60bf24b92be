package proxy

import (
	"bytes"
	"errors"
	"net"
	"net/http"
	"net/netip"
	"os"
	"strings"
	"sync"
	"syscall"
	"time"
)

// The CONNECT fast path. A connection's first request is read here: when it
// is a well-formed CONNECT (nearly every connection of an Arc agent) it is
// decided and tunnelled without net/http, saving its request parsing,
// buffers, background read and hijack. Anything else — another method,
// anything unusual in the head, a head larger than the buffer — is handed
// to net/http with the bytes already read, and net/http answers as always
// (400, 431, plain HTTP, later requests on the connection).

// headBufSize is the fast path's buffer; a longer head goes to net/http.
const headBufSize = 2 << 10

// handoff is the net.Listener net/http serves: the fast path passes it the
// connections it does not handle.
type handoff struct {
	ch     chan net.Conn
	addr   net.Addr
	closed chan struct{}
	once   sync.Once
}

func newHandoff(addr net.Addr) *handoff {
	return &handoff{ch: make(chan net.Conn), addr: addr, closed: make(chan struct{})}
}

// Accept implements net.Listener.
func (h *handoff) Accept() (net.Conn, error) {
	select {
	case c := <-h.ch:
		return c, nil
	case <-h.closed:
		return nil, net.ErrClosed
	}
}

// Close implements net.Listener.
func (h *handoff) Close() error {
	h.once.Do(func() { close(h.closed) })
	return nil
}

// Addr implements net.Listener.
func (h *handoff) Addr() net.Addr { return h.addr }

// pass gives c to net/http, or closes it when net/http stopped.
func (h *handoff) pass(c net.Conn) {
	select {
	case h.ch <- c:
	case <-h.closed:
		_ = c.Close()
	}
}

// Serve accepts proxy clients (plain HTTP proxy protocol) on ln until
// Shutdown; it then returns nil. It may be called for several listeners.
func (s *Server) Serve(ln net.Listener) error {
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		_ = ln.Close()
		return nil
	}
	s.listeners[ln] = struct{}{}
	s.mu.Unlock()
	h := newHandoff(ln.Addr())
	served := make(chan error, 1)
	go func() { served <- s.http.Serve(h) }()
	var err error
	var delay time.Duration
	for {
		c, aerr := ln.Accept()
		if aerr == nil {
			delay = 0
			if !s.fastAdd() {
				_ = c.Close()
				continue
			}
			go s.serveConn(c, h)
			continue
		}
		if s.isClosing() {
			break
		}
		var ne net.Error
		if errors.As(aerr, &ne) && ne.Timeout() || errors.Is(aerr, syscall.EMFILE) || errors.Is(aerr, syscall.ENFILE) {
			// Out of descriptors or a transient failure: back off as net/http does.
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			s.log.Warn().Str(fieldComponent, "proxy").Str(fieldError, aerr.Error()).Str(fieldMsg, "accept failed; retrying").Send()
			time.Sleep(delay)
			continue
		}
		err = aerr
		break
	}
	s.mu.Lock()
	delete(s.listeners, ln)
	s.mu.Unlock()
	_ = h.Close()
	if herr := <-served; herr != nil && !errors.Is(herr, http.ErrServerClosed) && !errors.Is(herr, net.ErrClosed) && err == nil {
		err = herr
	}
	if s.isClosing() {
		return nil
	}
	return err
}

func (s *Server) isClosing() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closing
}

// fastAdd counts a connection in the fast path; false once closing.
func (s *Server) fastAdd() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing {
		return false
	}
	s.fastWG.Add(1)
	return true
}

// serveConn reads a new connection's first request head and serves it
// when it is a CONNECT; otherwise it hands the connection to net/http.
func (s *Server) serveConn(c net.Conn, h *handoff) {
	st := s.cur.Load()
	id := s.newConnID()
	s.fastTrack(c, true)
	bp := s.heads.Get().(*[]byte)
	buf := (*bp)[:headBufSize]
	n, end := 0, -1
	_ = c.SetReadDeadline(time.Now().Add(st.headerTO))
	for end < 0 {
		k, err := c.Read(buf[n:])
		n += k
		if i := bytes.Index(buf[max(0, n-k-3):n], crlfcrlf); i >= 0 {
			end = max(0, n-k-3) + i + 4
			break
		}
		if bareLF(buf[:n]) {
			break // LF-only line endings: net/http's to judge
		}
		if err != nil {
			s.fastTrack(c, false)
			if n > 0 && errors.Is(err, os.ErrDeadlineExceeded) {
				headerLate.writeTo(c, false)
				s.badRequest(remoteIP(c.RemoteAddr().String()), id, http.StatusRequestTimeout)
			}
			s.heads.Put(bp)
			_ = c.Close()
			s.fastWG.Done()
			return
		}
		if n == len(buf) {
			break
		}
	}
	s.fastTrack(c, false)
	authority, proto10, ok := parseConnectHead(buf[:max(end, 0)])
	if end < 0 || !ok {
		// Not a plain CONNECT: net/http reads it again from the copy.
		prefix := append([]byte(nil), buf[:n]...)
		s.heads.Put(bp)
		_ = c.SetReadDeadline(time.Time{})
		s.fastWG.Done()
		h.pass(&clientConn{Conn: c, s: s, id: id, prefix: prefix})
		return
	}
	var rest []byte
	if n > end {
		rest = append([]byte(nil), buf[end:n]...)
	}
	auth := string(authority)
	s.heads.Put(bp)
	_ = c.SetReadDeadline(time.Time{})
	client := netip.Addr{}
	if ta, ok := c.RemoteAddr().(*net.TCPAddr); ok {
		client = ta.AddrPort().Addr().Unmap()
	} else {
		client = remoteIP(c.RemoteAddr().String())
	}
	rw := &rawWriter{conn: c, rest: rest, proto10: proto10, s: s}
	s.serveConnect(s.ctx, rw, auth, proto10, st, client, id)
	if !rw.taken {
		_ = c.Close()
	}
	rw.handedOver()
}

// fastTrack registers (or forgets) a connection whose head is being read,
// so that Shutdown can interrupt the read.
func (s *Server) fastTrack(c net.Conn, on bool) {
	s.mu.Lock()
	if on {
		s.reading[c] = struct{}{}
		if s.closing {
			_ = c.SetReadDeadline(time.Unix(1, 0))
		}
	} else {
		delete(s.reading, c)
	}
	s.mu.Unlock()
}

var crlfcrlf = []byte("\r\n\r\n")

// bareLF reports whether b holds a '\n' not preceded by '\r'.
func bareLF(b []byte) bool {
	for i, c := range b {
		if c == '\n' && (i == 0 || b[i-1] != '\r') {
			return true
		}
	}
	return false
}

// parseConnectHead accepts exactly a simple CONNECT head, a strict subset
// of what net/http accepts: "CONNECT host:port HTTP/1.x" with a host of
// letters, digits, dots and hyphens (or a bracketed IPv6 address) and a
// decimal port; header lines of token names and plain values, at most one
// Host (of the same characters), no body framing, no Expect. Anything else
// goes to net/http, which answers it as it always does.
func parseConnectHead(b []byte) (authority []byte, proto10, ok bool) {
	const method = "CONNECT "
	if len(b) < len(method) || string(b[:len(method)]) != method {
		return nil, false, false
	}
	line, rest, found := bytes.Cut(b, crlf)
	if !found {
		return nil, false, false
	}
	line = line[len(method):]
	sp := bytes.IndexByte(line, ' ')
	if sp <= 0 {
		return nil, false, false
	}
	authority, proto := line[:sp], line[sp+1:]
	switch string(proto) {
	case "HTTP/1.1":
	case "HTTP/1.0":
		proto10 = true
	default:
		return nil, false, false
	}
	if !simpleAuthority(authority, true) {
		return nil, false, false
	}
	hosts := 0
	for {
		line, rest, found = bytes.Cut(rest, crlf)
		if !found {
			return nil, false, false
		}
		if len(line) == 0 {
			break
		}
		colon := bytes.IndexByte(line, ':')
		if colon <= 0 {
			return nil, false, false
		}
		name, value := line[:colon], line[colon+1:]
		for _, c := range name {
			if !tokenChar(c) {
				return nil, false, false
			}
		}
		for _, c := range value {
			if (c < ' ' && c != '\t') || c == 0x7f {
				return nil, false, false
			}
		}
		switch {
		case bytes.EqualFold(name, []byte("Host")):
			hosts++
			if hosts > 1 || !simpleAuthority(bytes.Trim(value, " \t"), false) {
				return nil, false, false
			}
		case bytes.EqualFold(name, []byte("Content-Length")), bytes.EqualFold(name, []byte("Transfer-Encoding")),
			bytes.EqualFold(name, []byte("Expect")):
			return nil, false, false
		}
	}
	return authority, proto10, len(rest) == 0
}

var crlf = []byte("\r\n")

// simpleAuthority reports whether a is host:port (port required when
// needPort) with a host of letters, digits, dots and hyphens, or a
// bracketed IPv6 address of hex digits, colons and dots.
func simpleAuthority(a []byte, needPort bool) bool {
	host, port := a, []byte(nil)
	if len(a) > 0 && a[0] == '[' {
		end := bytes.IndexByte(a, ']')
		if end < 0 {
			return false
		}
		for _, c := range a[1:end] {
			if !(c == ':' || c == '.' || '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F') {
				return false
			}
		}
		if ip, err := netip.ParseAddr(string(a[1:end])); err != nil || !ip.Is6() {
			return false // "[]", "[1.2.3.4]": net/http's to judge
		}
		host, port = a[:end+1], a[end+1:]
		if len(port) > 0 {
			if port[0] != ':' {
				return false
			}
			port = port[1:]
		} else if needPort {
			return false
		}
	} else {
		if i := bytes.LastIndexByte(a, ':'); i >= 0 {
			host, port = a[:i], a[i+1:]
		} else if needPort {
			return false
		}
		for _, c := range host {
			if !(c == '.' || c == '-' || '0' <= c && c <= '9' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z') {
				return false
			}
		}
	}
	if len(host) == 0 || (needPort || port != nil) && (len(port) == 0 || len(port) > 5) {
		return false
	}
	for _, c := range port {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// tokenChar reports whether c may appear in a header name (RFC 9110 token).
func tokenChar(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	return c < 0x7f && strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0
}

// rawWriter is the answerer of the fast path: it writes one answer on the
// raw connection (which serveConn then closes), or hands the connection to
// a tunnel.
type rawWriter struct {
	conn    net.Conn
	rest    []byte
	proto10 bool
	taken   bool
	s       *Server
	handed  bool
}

// handedOver ends the fast path's share of the connection: from here a
// tunnel (tracked on its own) or nothing holds it. Idempotent.
func (w *rawWriter) handedOver() {
	if !w.handed {
		w.handed = true
		w.s.fastWG.Done()
	}
}

func (w *rawWriter) answer(a answer) { a.writeTo(w.conn, w.proto10) }

func (w *rawWriter) take() (net.Conn, []byte, error) {
	w.taken = true
	return w.conn, w.rest, nil
}

package proxy

import (
	"bytes"
	"errors"
	"net"
	"net/http"
	"net/netip"
	"os"
	"strconv"
	"sync/atomic"

	"github.com/arcfence/arcfence/internal/audit"
)

// clientConn is a client connection while net/http reads requests from it:
// the per-connection state of a connection the fast path handed over. It
// answers 408 when the header timeout strikes in the middle of a request
// (net/http itself only closes the connection), puts arcfence's reason
// phrase on net/http's own error answers, and is unwrapped when the
// connection is hijacked for a tunnel, so that the tunnel can splice.
type clientConn struct {
	net.Conn
	s *Server
	// id is the connection's id, logged as conn.
	id connID
	// prefix are bytes the fast path read before handing the connection
	// to net/http; Read returns them first.
	prefix []byte
	// pending counts bytes read since the last response was written: a
	// timeout with pending bytes is a request that did not arrive in time.
	pending atomic.Int64
	// handling is true while net/http has a request of the connection in
	// hand (http.StateActive, set by Server.connState): a read deadline
	// that strikes then is not the header timeout (it is net/http aborting
	// its read behind the request, or a body's idle bound).
	handling atomic.Bool
	// slot is set while the connection holds a place in the tunnel limits
	// (plain-HTTP requests; see Server.holdSlot); slotIP is whose.
	slot   atomic.Bool
	slotIP netip.Addr
}

// The 408 in Read and the rewrite of net/http's error answers in Write are
// the only places arcfence watches net/http's traffic, because net/http
// offers no hook for either: it closes a connection whose head is late
// without a word, and answers a malformed or oversized head (400, 431, 501)
// itself before any handler runs. The fast path answers its own late heads
// (408) and hands net/http only the heads it does not take: longer than its
// buffer, not a simple CONNECT, and the later requests of a kept-alive
// connection.

// headerLate is the answer to a request head not read in time.
var headerLate = status(http.StatusRequestTimeout, causeHeaderTimeout, "request headers not read in time")

// Read implements net.Conn: the fast path's bytes first, then the
// connection's; a header timeout with a request under way answers 408.
func (c *clientConn) Read(p []byte) (int, error) {
	if len(c.prefix) > 0 {
		n := copy(p, c.prefix)
		c.prefix = c.prefix[n:]
		c.pending.Add(int64(n))
		return n, nil
	}
	n, err := c.Conn.Read(p)
	if n > 0 {
		c.pending.Add(int64(n))
	}
	if err != nil && !c.handling.Load() && errors.Is(err, os.ErrDeadlineExceeded) && c.pending.Load() > 0 {
		c.pending.Store(0)
		headerLate.writeTo(c.Conn, false)
		c.s.badRequest(remoteIP(c.RemoteAddr().String()), c.id, http.StatusRequestTimeout)
	}
	return n, err
}

// netHTTPErrorHeaders follow the status line of net/http's own error
// answers, and nothing else does: a handler's answer always carries Date.
const netHTTPErrorHeaders = "\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n\r\n"

// Write implements net.Conn; net/http's own error answers (always written
// whole, in one call) get arcfence's reason phrase and are logged.
func (c *clientConn) Write(p []byte) (int, error) {
	c.pending.Store(0)
	if len(p) > 12 && string(p[:9]) == "HTTP/1.1 " && (p[9] == '4' || p[9] == '5') {
		if i := bytes.Index(p, []byte(netHTTPErrorHeaders)); i > 12 && bytes.IndexByte(p[:i], '\n') < 0 {
			code, _ := strconv.Atoi(string(p[9:12]))
			_, err := c.Conn.Write(netHTTPAnswer(p, i, code))
			// Logged after the answer went out, so a slow log cannot hold it.
			c.s.badRequest(remoteIP(c.RemoteAddr().String()), c.id, code)
			if err != nil {
				return 0, err
			}
			return len(p), nil
		}
	}
	return c.Conn.Write(p)
}

// netHTTPAnswer rewrites the status line of net/http's error answer p
// (headers at i) to carry arcfence's cause after the standard text; net/http
// writes its detail after a colon ("400 Bad Request: missing required Host
// header"), which becomes the cause. Headers and body stay as they are.
func netHTTPAnswer(p []byte, i, code int) []byte {
	std := http.StatusText(code)
	cause := causeBadRequest
	switch code {
	case http.StatusRequestHeaderFieldsTooLarge:
		cause = causeHeaderSize
	case http.StatusNotImplemented:
		cause = "unsupported transfer encoding"
	}
	if detail, ok := bytes.CutPrefix(p[13:i], []byte(std+": ")); ok && len(detail) > 0 {
		cause = string(detail)
	}
	b := make([]byte, 0, len(p)+64)
	b = append(b, p[:13]...)
	b = append(b, std...)
	b = append(b, " (arcfence: "...)
	b = append(b, cause...)
	b = append(b, ')')
	return append(b, p[i:]...)
}

// connID returns the connection's id; 0 for a nil c.
func (c *clientConn) connID() connID {
	if c == nil {
		return 0
	}
	return c.id
}

// badRequest logs a request refused before it could be decided.
func (s *Server) badRequest(client netip.Addr, id connID, code int) {
	if s == nil {
		return
	}
	if e := s.log.Info(); e.Enabled() {
		logConn(e.Str(fieldComponent, audit.ComponentProxy).Str(audit.FieldClient, client.String()), id).
			Int(fieldStatus, code).Str(fieldMsg, "bad request").Send()
	}
}

// unwrap returns the connection under net/http's view of it, and the
// fast path's bytes net/http did not read.
func unwrap(c net.Conn) (net.Conn, []byte) {
	if cc, ok := c.(*clientConn); ok {
		return cc.Conn, cc.prefix
	}
	return c, nil
}

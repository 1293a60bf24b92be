package proxy

import (
	"bytes"
	"errors"
	"net"
	"net/http"
	"os"
	"sync/atomic"
	"time"

	"github.com/arcfence/arcfence/internal/audit"
)

// clientConn is a client connection while net/http reads requests from it.
// It answers 408 when the header timeout strikes in the middle of a request
// (net/http itself only closes the connection), and is unwrapped when the
// connection is hijacked for a tunnel, so that the tunnel can splice.
type clientConn struct {
	net.Conn
	s *Server
	// prefix are bytes the fast path read before handing the connection
	// to net/http; Read returns them first.
	prefix []byte
	// pending counts bytes read since the last response was written: a
	// timeout with pending bytes is a request that did not arrive in time.
	pending atomic.Int64
	// headerDeadline is true while the read deadline is net/http's header
	// deadline, not its "abort the background read" one (a time long past).
	headerDeadline atomic.Bool
}

// abortBefore separates net/http's abort deadlines (it uses a time in 1970)
// from real ones.
var abortBefore = time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)

func (c *clientConn) SetReadDeadline(t time.Time) error {
	c.headerDeadline.Store(t.After(abortBefore))
	return c.Conn.SetReadDeadline(t)
}

func (c *clientConn) SetDeadline(t time.Time) error {
	c.headerDeadline.Store(t.After(abortBefore))
	return c.Conn.SetDeadline(t)
}

const response408 = "HTTP/1.1 408 Request Timeout\r\nContent-Type: text/plain; charset=utf-8\r\n" +
	"Connection: close\r\nContent-Length: 43\r\n\r\narcfence: request headers not read in time\n"

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
	if err != nil && c.headerDeadline.Load() && errors.Is(err, os.ErrDeadlineExceeded) && c.pending.Load() > 0 {
		c.pending.Store(0)
		_, _ = c.Conn.Write([]byte(response408))
		c.badRequest(http.StatusRequestTimeout)
	}
	return n, err
}

// net/http's own answers to requests that never reach the handler.
var (
	netHTTP431 = []byte("HTTP/1.1 431 ")
	netHTTP400 = []byte("HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n\r\n400 Bad Request")
)

func (c *clientConn) Write(p []byte) (int, error) {
	c.pending.Store(0)
	n, err := c.Conn.Write(p)
	if len(p) > 12 && p[9] == '4' {
		// Logged after the answer went out, so a slow log cannot hold it.
		switch {
		case bytes.HasPrefix(p, netHTTP431):
			c.badRequest(http.StatusRequestHeaderFieldsTooLarge)
		case bytes.HasPrefix(p, netHTTP400):
			c.badRequest(http.StatusBadRequest)
		}
	}
	return n, err
}

// badRequest logs a request refused before it could be decided.
func (c *clientConn) badRequest(status int) {
	if c.s == nil {
		return
	}
	if e := c.s.log.Info(); e.Enabled() {
		e.Str(fieldComponent, audit.ComponentProxy).Str(audit.FieldClient, remoteIP(c.RemoteAddr().String()).String()).
			Int(fieldStatus, status).Str(fieldMsg, "bad request").Send()
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

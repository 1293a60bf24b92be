package proxy

import (
	"context"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"net"
	"net/http"
	"os"
	"strconv"
	"syscall"
	"time"

	"github.com/rs/zerolog"

	"github.com/arcfence/arcfence/internal/audit"
	"github.com/arcfence/arcfence/policy"
)

// HeaderReason is the response header that carries a refusal's reason code.
const HeaderReason = "X-Arcfence-Reason"

// Log field names and messages of the proxy's own lines (refusal lines use
// the audit package's).
const (
	fieldMsg        = "msg"
	fieldComponent  = "component"
	fieldKind       = "kind"
	fieldRule       = "rule"
	fieldOffering   = "offering"
	fieldBytesUp    = "bytes_up"
	fieldBytesDown  = "bytes_down"
	fieldDuration   = "duration"
	fieldEnd        = "end"
	fieldError      = "error"
	fieldStatus     = "status"
	fieldCause      = "cause"
	fieldConn       = audit.FieldConn
	msgTunnelClosed = "tunnel closed"
)

// answer is one of arcfence's own HTTP answers: a refusal, a failed dial, a
// request that was malformed or late. Every one is built by refusal,
// failure or status below and put on the wire by bytes, so that all of
// them look alike: the status line's reason phrase carries the cause after
// the standard text ("403 Forbidden (arcfence: not-in-allowlist)"), because
// Go's and Python's clients show only the phrase in their errors; a
// one-line text body; Connection: close. The connection is closed after it.
type answer struct {
	code   int
	cause  string        // the phrase's "(arcfence: cause)"
	reason policy.Reason // X-Arcfence-Reason; ReasonNone: no policy refusal
	body   string        // one line, newline-terminated
}

// Causes of answers that are no policy refusal.
const (
	causeHeaderTimeout = "header timeout"
	causeBodyTimeout   = "body timeout"
	causeShuttingDown  = "shutting down"
	causeInternal      = "internal error"
	causeNotProxy      = "not a proxy request"
	causeScheme        = "scheme not forwarded"
	causeBadRequest    = "bad request"
	causeHeaderSize    = "header too large"
)

// denyBody is the one-line body of a refusal.
func denyBody(host string, port int, r policy.Reason) string {
	return "arcfence: denied " + policy.FormatHostPort(host, port) + ": " + r.String() + "\n"
}

// refusal is the answer to a destination refused with r: 403, or 429 with
// Retry-After for limit-exceeded.
func refusal(host string, port int, r policy.Reason) answer {
	code := http.StatusForbidden
	if r == policy.LimitExceeded {
		code = http.StatusTooManyRequests
	}
	return answer{code: code, cause: r.String(), reason: r, body: denyBody(host, port, r)}
}

// failure is the answer to a failed resolution, dial or forward: 403
// private-address when the guard refused the addresses, else 502 or 504
// with a short cause (see failureCause).
func failure(err error) answer {
	var ge *guardError
	if errors.As(err, &ge) {
		return refusal(ge.host, ge.port, policy.PrivateAddress)
	}
	code, cause := failureCause(err)
	return answer{code: code, cause: cause, body: "arcfence: " + err.Error() + "\n"}
}

// status is an answer with code, cause and a one-line message.
func status(code int, cause, msg string) answer {
	return answer{code: code, cause: cause, body: "arcfence: " + msg + "\n"}
}

// failureCause maps an error of a dial (a *dialError) or of an exchange
// with an origin after the dial to its status and a short cause: 504 when
// it timed out, 502 otherwise.
func failureCause(err error) (int, string) {
	var de *net.DNSError
	isDNS := errors.As(err, &de)
	var dial *dialError
	isDial := errors.As(err, &dial)
	switch {
	case isDNS && de.IsNotFound:
		return http.StatusBadGateway, "no such host"
	case isDNS && de.IsTimeout:
		return http.StatusGatewayTimeout, "lookup timeout"
	case isDNS:
		return http.StatusBadGateway, "lookup failed"
	case errors.Is(err, syscall.ECONNREFUSED):
		return http.StatusBadGateway, "connection refused"
	case timedOut(err) && isDial:
		return http.StatusGatewayTimeout, "dial timeout"
	case timedOut(err):
		return http.StatusGatewayTimeout, "origin timeout"
	case errors.Is(err, syscall.EHOSTUNREACH):
		return http.StatusBadGateway, "host unreachable"
	case errors.Is(err, syscall.ENETUNREACH):
		return http.StatusBadGateway, "network unreachable"
	case errors.Is(err, errNoAddresses):
		return http.StatusBadGateway, "no addresses"
	case isDial:
		return http.StatusBadGateway, "dial failed"
	}
	return http.StatusBadGateway, "origin error"
}

// timedOut reports whether err is a timeout.
func timedOut(err error) bool {
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, os.ErrDeadlineExceeded) || errors.Is(err, syscall.ETIMEDOUT) {
		return true
	}
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// bytes renders the whole response; proto10 answers an HTTP/1.0 request.
// An answer to a HEAD request has no body (see answerHTTP).
func (a answer) bytes(proto10 bool) []byte {
	b := make([]byte, 0, 192+len(a.body))
	if proto10 {
		b = append(b, "HTTP/1.0 "...)
	} else {
		b = append(b, "HTTP/1.1 "...)
	}
	b = strconv.AppendInt(b, int64(a.code), 10)
	b = append(b, ' ')
	b = append(b, http.StatusText(a.code)...)
	b = append(b, " (arcfence: "...)
	b = append(b, a.cause...)
	b = append(b, ")\r\n"...)
	if a.reason != policy.ReasonNone {
		b = append(b, HeaderReason+": "...)
		b = append(b, a.reason.String()...)
		b = append(b, "\r\n"...)
	}
	if a.code == http.StatusTooManyRequests {
		b = append(b, "Retry-After: "+retryAfter+"\r\n"...)
	}
	b = append(b, "Content-Type: text/plain; charset=utf-8\r\nContent-Length: "...)
	b = strconv.AppendInt(b, int64(len(a.body)), 10)
	b = append(b, "\r\nConnection: close\r\n\r\n"...)
	return append(b, a.body...)
}

// answerWriteTimeout bounds the write of an answer to a client that does
// not read.
const answerWriteTimeout = 10 * time.Second

// writeTo writes the answer on c, bounded by answerWriteTimeout.
func (a answer) writeTo(c net.Conn, proto10 bool) {
	_ = c.SetWriteDeadline(time.Now().Add(answerWriteTimeout))
	_, _ = c.Write(a.bytes(proto10))
}

// answerHTTP writes a on a connection net/http serves, as the answer to r:
// it takes the connection over (net/http writes no reason phrase of ours),
// writes the answer and closes it.
func answerHTTP(w http.ResponseWriter, r *http.Request, a answer) {
	proto10 := !r.ProtoAtLeast(1, 1)
	conn, _, err := http.NewResponseController(w).Hijack()
	if err != nil {
		// Not reachable with net/http's HTTP/1 server: the same answer
		// through net/http, with its standard reason phrase.
		h := w.Header()
		if a.reason != policy.ReasonNone {
			h.Set(HeaderReason, a.reason.String())
		}
		if a.code == http.StatusTooManyRequests {
			h.Set("Retry-After", retryAfter)
		}
		h.Set("Content-Type", "text/plain; charset=utf-8")
		h.Set("Connection", "close")
		w.WriteHeader(a.code)
		_, _ = w.Write([]byte(a.body))
		return
	}
	raw, _ := unwrap(conn)
	b := a.bytes(proto10)
	if r.Method == http.MethodHead {
		b = b[:len(b)-len(a.body)] // Content-Length stays: what a GET would get
	}
	_ = raw.SetWriteDeadline(time.Now().Add(answerWriteTimeout))
	_, _ = raw.Write(b)
	_ = raw.Close()
}

// dialError is a failed resolution or dial to an origin.
type dialError struct {
	host string
	port int
	err  error
}

func (e *dialError) Error() string {
	return "dial " + policy.FormatHostPort(e.host, e.port) + ": " + e.err.Error()
}

func (e *dialError) Unwrap() error { return e.err }

// errNoAddresses is a name that resolved to no address.
var errNoAddresses = errors.New("no addresses")

// guardError is a destination whose addresses the guard refused.
type guardError struct {
	host string
	port int
}

func (e *guardError) Error() string {
	return policy.FormatHostPort(e.host, e.port) + ": " + policy.PrivateAddress.String()
}

// connID is the short id of one client connection, logged as conn on every
// line about it (see Server.newConnID).
type connID uint32

// connIDMix spreads consecutive counter values over the id space; it is odd,
// so that the ids of 2^32 consecutive connections are all different.
const connIDMix = 0x9E3779B1

// newConnID returns the id of a new client connection: the Server's counter
// from a random start, mixed so that ids do not read as a sequence.
func (s *Server) newConnID() connID {
	return connID((s.connBase + s.connSeq.Add(1)) * connIDMix)
}

// String returns the id as logged: 8 lowercase hex digits.
func (id connID) String() string {
	b := id.bytes()
	return hex.EncodeToString(b[:])
}

// bytes is id big-endian, as logged.
func (id connID) bytes() [4]byte {
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], uint32(id))
	return b
}

// logConn adds the conn field to e without allocating.
func logConn(e *zerolog.Event, id connID) *zerolog.Event {
	b := id.bytes()
	return e.Hex(fieldConn, b[:])
}

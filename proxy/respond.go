package proxy

import (
	"context"
	"errors"
	"net"
	"net/http"
	"os"
	"strconv"
	"syscall"

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
	msgTunnelClosed = "tunnel closed"
)

// denyBody is the one-line body of a refusal.
func denyBody(host string, port int, r policy.Reason) string {
	return "arcfence: denied " + policy.FormatHostPort(host, port) + ": " + r.String() + "\n"
}

// denyResponse is a whole 403 response, for connections that are no longer
// served by net/http (a refused tunnel).
func denyResponse(host string, port int, r policy.Reason) string {
	body := denyBody(host, port, r)
	return "HTTP/1.1 403 Forbidden\r\n" + HeaderReason + ": " + r.String() +
		"\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: " + strconv.Itoa(len(body)) +
		"\r\nConnection: close\r\n\r\n" + body
}

// writeDeny answers a refused request: 403 (429 for limits), the reason
// header, the one-line body, and the connection closed.
func writeDeny(w http.ResponseWriter, host string, port int, r policy.Reason) {
	h := w.Header()
	h.Set(HeaderReason, r.String())
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("Connection", "close")
	code := http.StatusForbidden
	if r == policy.LimitExceeded {
		code = http.StatusTooManyRequests
		h.Set("Retry-After", retryAfter)
	}
	w.WriteHeader(code)
	_, _ = w.Write([]byte(denyBody(host, port, r)))
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

// guardError is a destination whose addresses the guard refused.
type guardError struct {
	host string
	port int
}

func (e *guardError) Error() string {
	return policy.FormatHostPort(e.host, e.port) + ": " + policy.PrivateAddress.String()
}

// statusOf maps a dial error to its HTTP status: 504 when it timed out,
// 502 otherwise (name not found, refused, unreachable).
func statusOf(err error) int {
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, os.ErrDeadlineExceeded) {
		return http.StatusGatewayTimeout
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return http.StatusGatewayTimeout
	}
	if errors.Is(err, syscall.ETIMEDOUT) {
		return http.StatusGatewayTimeout
	}
	return http.StatusBadGateway
}

// writeDialError answers a failed dial with 502 or 504 and a one-line body.
func writeDialError(w http.ResponseWriter, err error) {
	code := statusOf(err)
	h := w.Header()
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("Connection", "close")
	w.WriteHeader(code)
	_, _ = w.Write([]byte("arcfence: " + err.Error() + "\n"))
}

// writeStatus answers with code and a one-line body.
func writeStatus(w http.ResponseWriter, code int, msg string) {
	h := w.Header()
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("Connection", "close")
	w.WriteHeader(code)
	_, _ = w.Write([]byte("arcfence: " + msg + "\n"))
}

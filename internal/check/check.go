// Package check is `arcfence check`: it opens a connection and a TLS
// handshake (with SNI, verifying the certificate) to every effective
// endpoint that has no wildcard, directly or through a proxy's CONNECT, and
// reports per endpoint whether it was reachable, whether TLS verified, the
// certificate's names, the latency and the error — like `azcmagent check`.
//
// Rows served over plain HTTP (port 80) get a HEAD request instead of a
// handshake. Wildcard rows cannot be checked by name; a sample name given
// for them is checked in their place.
package check

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/arcfence/arcfence/policy"
)

// Target is one endpoint to check.
type Target struct {
	// Host is the name (or address) dialed and sent as SNI.
	Host string `json:"host"`
	// Port is the destination port.
	Port int `json:"port"`
	// Path is requested on plain-HTTP rows ("" = "/").
	Path string `json:"path"`
	// Scheme is "https" (TLS handshake) or "http" (HEAD request, port 80).
	Scheme string `json:"scheme"`
	// Rule names the allowlist row, as decisions name it.
	Rule string `json:"rule"`
	// Pattern is the row's host pattern (differs from Host for samples).
	Pattern string `json:"pattern"`
	// Offering and Feature attribute the row.
	Offering string `json:"offering"`
	Feature  string `json:"feature"`
	// Required is false for rows the spec marks optional: their failure
	// does not fail the check.
	Required bool `json:"required"`
}

// Endpoint returns "host:port" (with the path for plain-HTTP rows).
func (t Target) Endpoint() string {
	return policy.FormatHostPort(t.Host, t.Port) + t.Path
}

// Result is the outcome of checking one Target.
type Result struct {
	Target
	// Checked is false for rows that cannot be checked (wildcards without a
	// sample, unfilled placeholders); Error says why.
	Checked bool `json:"checked"`
	// Reachable: a TCP connection (through the proxy: a 200 to CONNECT, or
	// an HTTP answer from the origin) was established.
	Reachable bool `json:"reachable"`
	// TLSOK: the handshake completed and the certificate verified for Host.
	TLSOK bool `json:"tls_ok"`
	// HTTPStatus is the origin's status on plain-HTTP rows.
	HTTPStatus int `json:"http_status,omitempty"`
	// CertNames are the DNS names and addresses of the presented leaf
	// certificate (verified or not: Error says when it did not verify).
	CertNames []string `json:"cert_names"`
	// Latency is from the start of the dial to the completed handshake or answer.
	Latency time.Duration `json:"-"`
	// Error is "" on success.
	Error string `json:"error"`
}

// OK reports whether the endpoint works: reachable, and TLS verified where TLS is spoken.
func (r Result) OK() bool {
	return r.Checked && r.Reachable && (r.TLSOK || r.Scheme == "http")
}

// Failed reports whether a required, checked endpoint does not work: the
// condition for a non-zero exit.
func Failed(results []Result) bool {
	for _, r := range results {
		if r.Checked && r.Required && !r.OK() {
			return true
		}
	}
	return false
}

// Targets turns an effective allowlist into check targets, one per row and
// port, in rule order. Wildcard rows yield an unchecked Result each, unless
// a sample name matches them: then the sample is checked on the row's ports
// instead. A sample that no wildcard row matches is an error.
func Targets(rules []policy.Rule, samples []string) ([]Target, []Result, error) {
	var targets []Target
	var unchecked []Result
	used := make([]bool, len(samples))
	norm := make([]string, len(samples))
	for i, s := range samples {
		h, ok := policy.NormalizeHost(strings.TrimSpace(s))
		if !ok {
			return nil, nil, fmt.Errorf("sample %q is not a valid host name", s)
		}
		norm[i] = h
	}
	for _, r := range rules {
		if r.Scheme == "udp" { // time.windows.com:123 (2026-08): no TLS connection to open
			for _, p := range r.Ports {
				tg := target(r, r.Pattern, p)
				tg.Scheme = r.Scheme
				unchecked = append(unchecked, Result{Target: tg, Error: "not checkable: a UDP row"})
			}
			continue
		}
		hosts := []string{r.Pattern}
		if r.Wildcard() || strings.ContainsAny(r.Pattern, "<>") {
			hosts = hosts[:0]
			for i, s := range norm {
				if r.Wildcard() && policy.MatchPattern(r.Pattern, s) {
					hosts = append(hosts, s)
					used[i] = true
				}
			}
			if len(hosts) == 0 {
				for _, p := range r.Ports {
					unchecked = append(unchecked, Result{
						Target: target(r, r.Pattern, p),
						Error:  "not checkable: " + r.Pattern,
					})
				}
				continue
			}
		}
		for _, h := range hosts {
			for _, p := range r.Ports {
				targets = append(targets, target(r, strings.Trim(h, "[]"), p))
			}
		}
	}
	for i, u := range used {
		if !u {
			return nil, nil, fmt.Errorf("sample %q matches no wildcard row of the effective allowlist", samples[i])
		}
	}
	return targets, unchecked, nil
}

func target(r policy.Rule, host string, port int) Target {
	t := Target{
		Host: host, Port: port, Scheme: "https", Rule: r.Name(port), Pattern: r.Pattern,
		Offering: r.Offering, Feature: r.Feature, Required: r.When != policy.WhenOptional,
	}
	if port == 80 || r.Scheme == "http" {
		t.Scheme = "http"
		t.Path = r.Path
	}
	return t
}

// Checker checks targets. The zero value checks directly with the system's
// roots, 10s per endpoint and 8 at a time.
type Checker struct {
	// Proxy, when set, is the proxy to CONNECT through ("http://host:port"
	// or "https://host:port"); nil = direct.
	Proxy *url.URL
	// Timeout bounds each endpoint's check; 0 = 10s.
	Timeout time.Duration
	// Parallel bounds the endpoints checked at once; 0 = 8.
	Parallel int
	// DialContext opens TCP connections (to the proxy, or to the endpoints
	// when direct); nil = a net.Dialer.
	DialContext func(ctx context.Context, network, addr string) (net.Conn, error)
	// RootCAs verify the endpoints' certificates; nil = the system roots.
	RootCAs *x509.CertPool
	// ProxyTLS configures TLS to an https:// proxy; nil = system roots,
	// ServerName from the proxy URL.
	ProxyTLS *tls.Config
}

// Run checks every target, at most Parallel at a time, and returns the
// results in target order. It returns early (with the rest marked as
// cancelled) when ctx is done.
func (c *Checker) Run(ctx context.Context, targets []Target) []Result {
	par := c.Parallel
	if par <= 0 {
		par = 8
	}
	results := make([]Result, len(targets))
	sem := make(chan struct{}, par)
	var wg sync.WaitGroup
	for i, t := range targets {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			results[i] = Result{Target: t, Checked: true, Error: "cancelled: " + ctx.Err().Error()}
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			results[i] = c.Check(ctx, t)
		}()
	}
	wg.Wait()
	return results
}

// Check checks one target within Timeout.
func (c *Checker) Check(ctx context.Context, t Target) Result {
	timeout := c.Timeout
	if timeout <= 0 {
		timeout = 10 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	res := Result{Target: t, Checked: true, CertNames: []string{}}
	start := time.Now()
	err := c.check(ctx, &res)
	res.Latency = time.Since(start)
	if err != nil {
		res.Error = describe(err, ctx, timeout)
	}
	return res
}

func (c *Checker) check(ctx context.Context, res *Result) error {
	t := res.Target
	addr := net.JoinHostPort(t.Host, strconv.Itoa(t.Port))
	if t.Scheme == "http" {
		return c.checkHTTP(ctx, res, addr)
	}
	var conn net.Conn
	var err error
	if c.Proxy != nil {
		conn, err = c.connectProxy(ctx, addr)
	} else {
		conn, err = c.dial(ctx, addr)
	}
	if err != nil {
		return err
	}
	defer conn.Close()
	res.Reachable = true
	cfg := &tls.Config{
		ServerName:         t.Host,
		MinVersion:         tls.VersionTLS12,
		InsecureSkipVerify: true, // verified below, after recording the names
		VerifyConnection: func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return errors.New("no certificate presented")
			}
			leaf := cs.PeerCertificates[0]
			res.CertNames = certNames(leaf)
			inter := x509.NewCertPool()
			for _, ic := range cs.PeerCertificates[1:] {
				inter.AddCert(ic)
			}
			_, err := leaf.Verify(x509.VerifyOptions{DNSName: t.Host, Roots: c.RootCAs, Intermediates: inter})
			return err
		},
	}
	tc := tls.Client(conn, cfg)
	if err := tc.HandshakeContext(ctx); err != nil {
		return fmt.Errorf("tls: %w", err)
	}
	res.TLSOK = true
	return nil
}

// checkHTTP sends a HEAD for the row's path, directly or through the proxy
// (absolute form), and counts any origin answer as reachable.
func (c *Checker) checkHTTP(ctx context.Context, res *Result, addr string) error {
	t := res.Target
	path := t.Path
	if path == "" {
		path = "/"
	}
	var conn net.Conn
	var err error
	target := path
	if c.Proxy != nil {
		conn, err = c.dialProxy(ctx)
		target = "http://" + addr + path
	} else {
		conn, err = c.dial(ctx, addr)
	}
	if err != nil {
		return err
	}
	defer conn.Close()
	stopDeadline := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Now()) })
	defer stopDeadline()
	fmt.Fprintf(conn, "HEAD %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: arcfence-check\r\nConnection: close\r\n\r\n", target, hostHeader(t))
	resp, err := http.ReadResponse(bufio.NewReader(conn), &http.Request{Method: http.MethodHead})
	if err != nil {
		return fmt.Errorf("reading the HTTP answer: %w", err)
	}
	resp.Body.Close()
	if c.Proxy != nil && (resp.Header.Get("X-Arcfence-Reason") != "" ||
		resp.StatusCode == http.StatusBadGateway || resp.StatusCode == http.StatusGatewayTimeout) {
		return proxyStatus(resp)
	}
	res.Reachable = true
	res.HTTPStatus = resp.StatusCode
	return nil
}

func hostHeader(t Target) string {
	if t.Port != 80 {
		return policy.FormatHostPort(t.Host, t.Port)
	}
	if strings.IndexByte(t.Host, ':') >= 0 {
		return "[" + t.Host + "]"
	}
	return t.Host
}

func (c *Checker) dial(ctx context.Context, addr string) (net.Conn, error) {
	d := c.DialContext
	if d == nil {
		var nd net.Dialer
		d = nd.DialContext
	}
	conn, err := d(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	if dl, ok := ctx.Deadline(); ok {
		conn.SetDeadline(dl)
	}
	return conn, nil
}

// dialProxy connects to the proxy, with TLS for an https:// proxy.
func (c *Checker) dialProxy(ctx context.Context) (net.Conn, error) {
	host := c.Proxy.Host
	if c.Proxy.Port() == "" {
		if c.Proxy.Scheme == "https" {
			host = net.JoinHostPort(c.Proxy.Hostname(), "443")
		} else {
			host = net.JoinHostPort(c.Proxy.Hostname(), "80")
		}
	}
	conn, err := c.dial(ctx, host)
	if err != nil {
		return nil, &proxyError{proxy: c.Proxy.Redacted(), err: err}
	}
	if c.Proxy.Scheme != "https" {
		return conn, nil
	}
	cfg := c.ProxyTLS
	if cfg == nil {
		cfg = &tls.Config{MinVersion: tls.VersionTLS12}
	} else {
		cfg = cfg.Clone()
	}
	if cfg.ServerName == "" {
		cfg.ServerName = c.Proxy.Hostname()
	}
	tc := tls.Client(conn, cfg)
	if err := tc.HandshakeContext(ctx); err != nil {
		conn.Close()
		return nil, fmt.Errorf("proxy %s: tls: %w", c.Proxy.Redacted(), err)
	}
	return tc, nil
}

// connectProxy opens a CONNECT tunnel to addr through the proxy.
func (c *Checker) connectProxy(ctx context.Context, addr string) (net.Conn, error) {
	conn, err := c.dialProxy(ctx)
	if err != nil {
		return nil, err
	}
	stopDeadline := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Now()) })
	defer stopDeadline()
	auth := ""
	if u := c.Proxy.User; u != nil {
		p, _ := u.Password()
		auth = "Proxy-Authorization: Basic " + basicAuth(u.Username(), p) + "\r\n"
	}
	if _, err := fmt.Fprintf(conn, "CONNECT %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: arcfence-check\r\n%s\r\n", addr, addr, auth); err != nil {
		conn.Close()
		return nil, fmt.Errorf("proxy %s: %w", c.Proxy.Redacted(), err)
	}
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodConnect})
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("proxy %s: reading the CONNECT answer: %w", c.Proxy.Redacted(), err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		conn.Close()
		return nil, proxyStatus(resp)
	}
	if br.Buffered() > 0 {
		return &bufferedConn{Conn: conn, r: br}, nil
	}
	return conn, nil
}

// proxyStatus describes a proxy's answer other than 200: "proxy refused"
// for arcfence's refusals (403, 429 with X-Arcfence-Reason), "proxy
// answered" otherwise (502: the name did not resolve or the origin refused;
// 504: the dial timed out).
func proxyStatus(resp *http.Response) error {
	reason := resp.Header.Get("X-Arcfence-Reason")
	// The reason header already names the cause that arcfence's reason
	// phrase carries ("403 Forbidden (arcfence: explicit-deny)"): say it once.
	std := strconv.Itoa(resp.StatusCode) + " " + http.StatusText(resp.StatusCode)
	switch {
	case reason != "" && (resp.StatusCode == http.StatusForbidden || resp.StatusCode == http.StatusTooManyRequests):
		return fmt.Errorf("proxy refused: %s (%s)", std, reason)
	case reason != "":
		return fmt.Errorf("proxy answered %s (%s)", std, reason)
	}
	return fmt.Errorf("proxy answered %s", resp.Status)
}

type bufferedConn struct {
	net.Conn
	r *bufio.Reader
}

func (b *bufferedConn) Read(p []byte) (int, error) { return b.r.Read(p) }

// certNames lists a leaf certificate's DNS names and addresses (its
// subject's common name when it has neither).
func certNames(c *x509.Certificate) []string {
	out := append([]string{}, c.DNSNames...)
	for _, ip := range c.IPAddresses {
		out = append(out, ip.String())
	}
	if len(out) == 0 && c.Subject.CommonName != "" {
		out = append(out, c.Subject.CommonName)
	}
	return out
}

// proxyError is a failure to reach the proxy itself.
type proxyError struct {
	proxy string
	err   error
}

func (e *proxyError) Error() string { return "proxy " + e.proxy + ": " + e.err.Error() }
func (e *proxyError) Unwrap() error { return e.err }

// describe turns an error into the short text of the report.
func describe(err error, ctx context.Context, timeout time.Duration) string {
	var pe *proxyError
	if errors.As(err, &pe) {
		return "proxy " + pe.proxy + ": " + describe(pe.err, ctx, timeout)
	}
	var ne net.Error
	switch {
	case errors.Is(err, context.DeadlineExceeded) || errors.Is(err, os.ErrDeadlineExceeded) ||
		(errors.As(err, &ne) && ne.Timeout()) || ctx.Err() == context.DeadlineExceeded:
		return fmt.Sprintf("timed out after %s (%s)", timeout, err)
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connection refused"
	}
	return err.Error()
}

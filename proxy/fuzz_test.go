package proxy

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"path"
	"strings"
	"testing"
	"time"

	"github.com/arcfence/arcfence/policy"
)

// fuzzAnswer is what the proxy answered to one fuzzed request.
type fuzzAnswer struct {
	status int    // 0: the connection closed without an answer
	reason string // X-Arcfence-Reason
}

// askProxy writes raw to the proxy and reads its first answer, bounded.
func askProxy(t *testing.T, addr, raw string, connect bool) fuzzAnswer {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, wait)
	if err != nil {
		t.Fatalf("dial proxy: %v", err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(wait))
	go func() { _, _ = io.WriteString(c, raw) }() // the proxy may answer before reading it all
	req := &http.Request{Method: http.MethodGet}
	if connect {
		req.Method = http.MethodConnect
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), req)
	if err != nil {
		if isTimeout(err) {
			t.Fatalf("no answer in %v to %q", wait, raw)
		}
		return fuzzAnswer{}
	}
	if resp.StatusCode != http.StatusOK || !connect {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<16))
	}
	return fuzzAnswer{status: resp.StatusCode, reason: resp.Header.Get(HeaderReason)}
}

// parseFailures are the answers net/http gives to requests it cannot take.
func parseFailure(status int) bool {
	switch status {
	case 0, http.StatusBadRequest, http.StatusRequestHeaderFieldsTooLarge,
		http.StatusHTTPVersionNotSupported, http.StatusNotImplemented, http.StatusRequestTimeout:
		return true
	}
	return false
}

// dialed reports answers that come only after the policy admitted the
// destination (a tunnel, a forwarded answer, a failed dial, the guard).
func dialed(a fuzzAnswer) bool {
	switch {
	case a.status == http.StatusBadGateway, a.status == http.StatusGatewayTimeout:
		return true
	case a.status == http.StatusForbidden && a.reason == policy.PrivateAddress.String():
		return true
	}
	return a.status >= 200 && a.status < 400
}

// FuzzConnectRequest drives a real proxy over loopback with fuzzed CONNECT
// requests (request line, Host header, one more header line) and checks it
// differentially: whatever net/http makes of the request, the proxy's
// verdict equals policy.Decide on the authority it parsed. A request
// net/http cannot parse is refused without any dial; nothing the policy
// refuses is ever tunneled; a refusal carries Decide's reason.
func FuzzConnectRequest(f *testing.F) {
	e := newEnv(f, nil)
	e.rawOrigin("raw.arcfence.test", 443, echo)
	e.rawOrigin("management.azure.com", 443, echo)
	for _, s := range [][3]string{
		{"raw.arcfence.test:443", "raw.arcfence.test:443", ""},
		{"management.azure.com:443", "management.azure.com:443", "Proxy-Connection: keep-alive"},
		{"MANAGEMENT.Azure.com.:443", "x", ""},
		{"management.azure.com", "x", ""},
		{"management.azure.com:0443", "x", ""},
		{"management.azure.com:+443", "x", ""},
		{"evil.example:443", "management.azure.com:443", ""},
		{"management.azure.com@evil.example:443", "x", ""},
		{"[fe80::1%25eth0]:443", "x", ""},
		{"[::ffff:127.0.0.1]:443", "x", ""},
		{"2130706433:443", "x", ""},
		{"0x7f.1:443", "x", ""},
		{"login.windows.net:443", "x", ""},
		{"private.his.arc.azure.com:443", "x", ""},
		{"microsoft.com:80", "x", ""},
		{"management.azure.com:443 HTTP/1.1\r\nX:", "x", ""},
		{"management.azure.com\x00.evil.example:443", "x", ""},
		{"a.his.arc.azure.com:443", "x", "Content-Length: 3"},
		{"a.his.arc.azure.com:443", "x", "Transfer-Encoding: chunked"},
	} {
		f.Add(s[0], s[1], s[2])
	}
	pol := e.s.Policy()
	f.Fuzz(func(t *testing.T, target, host, extra string) {
		raw := "CONNECT " + target + " HTTP/1.1\r\nHost: " + host + "\r\n"
		if extra != "" {
			raw += extra + "\r\n"
		}
		raw += "\r\n"
		e.fuzzConnect(t, pol, raw)
	})
}

// fuzzConnect sends one fuzzed CONNECT head (raw) to e's proxy and checks
// the verdict against Decide on what net/http parses of the same bytes.
func (e *env) fuzzConnect(t *testing.T, pol *policy.Policy, raw string) {
	t.Helper()
	if len(raw) > 4<<10 {
		t.Skip("longer than the header limits the corpus cares about")
	}
	e.logs.mu.Lock()
	if e.logs.b.Len() > 1<<20 {
		e.logs.b.Reset() // bounded memory over long fuzz runs
	}
	e.logs.mu.Unlock()
	got := askProxy(t, e.addr, raw, true)
	req, perr := http.ReadRequest(bufio.NewReader(strings.NewReader(raw)))
	if perr != nil || req.Method != http.MethodConnect {
		unparsed(t, pol, raw, perr, got)
		return
	}
	if parseFailure(got.status) {
		return // the server's stricter checks (Host header, framing)
	}
	checkVerdict(t, raw, connectVerdict(pol, req.RequestURI), got)
}

// FuzzConnectHead is FuzzConnectRequest with the whole head after
// "CONNECT " fuzzed (request line, any headers, any framing), so that the
// CONNECT fast path's own parser and net/http's are compared on the same
// bytes: the verdict must be Decide's on the authority net/http parses.
// The head always ends in CRLF CRLF (an unterminated head only waits for
// the header timeout).
func FuzzConnectHead(f *testing.F) {
	e := newEnv(f, nil)
	e.rawOrigin("raw.arcfence.test", 443, echo)
	e.rawOrigin("management.azure.com", 443, echo)
	for _, s := range []string{
		"raw.arcfence.test:443 HTTP/1.1\r\nHost: raw.arcfence.test:443",
		"raw.arcfence.test:443 HTTP/1.0",
		"management.azure.com:443 HTTP/1.1\r\nHost: x\r\nUser-Agent: azcmagent\r\nProxy-Connection: Keep-Alive",
		"evil.example:443 HTTP/1.1\r\nHost: management.azure.com:443",
		"management.azure.com:443  HTTP/1.1",
		"management.azure.com:443 HTTP/1.1\r\nHost: a\r\nHost: b",
		"management.azure.com:443 HTTP/1.1\r\n Host: x",
		"management.azure.com:443 HTTP/1.1\r\nHost : x",
		"management.azure.com:443 HTTP/1.1\r\nContent-Length: 0",
		"management.azure.com:443 HTTP/1.1\r\nTransfer-Encoding: identity",
		"management.azure.com:443 HTTP/1.1\nHost: x",
		"[::1]:443 HTTP/1.1",
		"[fe80::1%25eth0]:443 HTTP/1.1",
		"management.azure.com:443 HTTP/1.1\r\nHost: x\r\n\r\nCONNECT evil.example:443 HTTP/1.1",
	} {
		f.Add(s)
	}
	pol := e.s.Policy()
	f.Fuzz(func(t *testing.T, head string) {
		e.fuzzConnect(t, pol, "CONNECT "+head+"\r\n\r\n")
	})
}

// unparsed checks the answer to a CONNECT that net/http cannot parse: it
// must be refused without any dial, either as a parse failure (400, 431,
// ...) or, where the CONNECT fast path took the request line, with the
// reason Decide gives for its authority (e.g. "CONNECT []:0" is 403
// invalid-host there, 400 in net/http: both refuse).
func unparsed(t *testing.T, pol *policy.Policy, raw string, perr error, got fuzzAnswer) {
	t.Helper()
	if parseFailure(got.status) {
		return
	}
	if dialed(got) {
		t.Fatalf("net/http cannot parse %q (%v) but the proxy admitted it: %d %q", raw, perr, got.status, got.reason)
	}
	line, _, _ := strings.Cut(raw, "\r\n")
	f := strings.Split(line, " ")
	if got.status != http.StatusForbidden || len(f) != 3 {
		t.Fatalf("net/http cannot parse %q (%v) but the proxy answered %d %q", raw, perr, got.status, got.reason)
	}
	if want := connectVerdict(pol, f[1]); want.Allowed() || got.reason != want.Reason.String() {
		t.Fatalf("%q: refused with %q, Decide on the request line's authority %q says %v %s", raw, got.reason, f[1], want.Verdict, want.Reason)
	}
}

// connectVerdict is the proxy's decision on a CONNECT authority, from the
// policy alone.
func connectVerdict(pol *policy.Policy, authority string) policy.Decision {
	h, port, r := policy.SplitHostPort(authority)
	if r != policy.ReasonNone {
		return policy.Decision{Reason: r, Host: h, Port: port}
	}
	return pol.Decide(policy.Dest{Host: h, Port: port})
}

// checkVerdict compares the proxy's answer with the policy's decision.
func checkVerdict(t *testing.T, raw string, want policy.Decision, got fuzzAnswer) {
	t.Helper()
	if want.Allowed() {
		if !dialed(got) {
			t.Fatalf("%q: policy allows %s:%d (%s), proxy answered %d %q", raw, want.Host, want.Port, want.Rule, got.status, got.reason)
		}
		return
	}
	if dialed(got) {
		t.Fatalf("%q: policy refuses %s:%d (%s), proxy answered %d %q", raw, want.Host, want.Port, want.Reason, got.status, got.reason)
	}
	if got.status != http.StatusForbidden || got.reason != want.Reason.String() {
		t.Fatalf("%q: policy refuses %s:%d with %s, proxy answered %d %q", raw, want.Host, want.Port, want.Reason, got.status, got.reason)
	}
}

// FuzzPlainRequest is FuzzConnectRequest for absolute-form plain-HTTP
// requests: the verdict equals Decide on the URL's host, port and cleaned
// path, and what reaches the origin stays inside the admitted path.
func FuzzPlainRequest(f *testing.F) {
	e := newEnv(f, nil)
	served := make(chan string, 1)
	e.plainOrigin("microsoft.com", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case served <- r.URL.Path:
		default:
		}
	}))
	for _, s := range [][2]string{
		{"http://microsoft.com/pkiops/certs/a.crt", "microsoft.com"},
		{"http://microsoft.com/pkiops/certs/../x", "microsoft.com"},
		{"http://microsoft.com/pkiops/certs/%2e%2e/x", "microsoft.com"},
		{"http://microsoft.com/pkiops%2fcerts/a", "microsoft.com"},
		{"http://microsoft.com:80/pkiops/certs/", "evil.example"},
		{"http://management.azure.com@evil.example/", "x"},
		{"http://evil.example@microsoft.com/pkiops/certs/a", "x"},
		{"HTTP://MICROSOFT.COM./pkiops/certs/a", "x"},
		{"http://microsoft.com:/pkiops/certs/a", "x"},
		{"http://[::ffff:127.0.0.1]/", "x"},
		{"http://2130706433/", "x"},
		{"http://plain.arcfence.test:80/anything", "x"},
		{"/pkiops/certs/a.crt", "microsoft.com"},
		{"https://microsoft.com/pkiops/certs/a.crt", "microsoft.com"},
	} {
		f.Add(s[0], s[1])
	}
	pol := e.s.Policy()
	f.Fuzz(func(t *testing.T, url, host string) {
		raw := "GET " + url + " HTTP/1.1\r\nHost: " + host + "\r\nConnection: close\r\n\r\n"
		if len(raw) > 4<<10 {
			t.Skip("longer than the header limits the corpus cares about")
		}
		e.logs.mu.Lock()
		if e.logs.b.Len() > 1<<20 {
			e.logs.b.Reset()
		}
		e.logs.mu.Unlock()
		select {
		case <-served:
		default:
		}
		got := askProxy(t, e.addr, raw, false)
		req, perr := http.ReadRequest(bufio.NewReader(strings.NewReader(raw)))
		if perr != nil {
			if !parseFailure(got.status) {
				t.Fatalf("net/http cannot parse %q (%v) but the proxy answered %d %q", raw, perr, got.status, got.reason)
			}
			return
		}
		if parseFailure(got.status) {
			return // not absolute-form http://, or the server's stricter checks
		}
		u := req.URL
		if !u.IsAbs() || !strings.EqualFold(u.Scheme, "http") {
			t.Fatalf("%q: not an absolute http:// URL, proxy answered %d %q", raw, got.status, got.reason)
		}
		var want policy.Decision
		h, port, r := u.Host, 80, policy.ReasonNone
		switch {
		case u.Port() != "":
			h, port, r = policy.SplitHostPort(u.Host)
		case strings.HasSuffix(h, ":"):
			h, r = strings.TrimSuffix(h, ":"), policy.InvalidPort
		}
		if r != policy.ReasonNone {
			want = policy.Decision{Reason: r, Host: h, Port: port}
		} else {
			want = pol.Decide(policy.Dest{Host: h, Port: port, Path: cleanPath(u.Path), Plain: true})
		}
		checkVerdict(t, raw, want, got)
		if got.status == http.StatusOK && want.Allowed() && strings.HasPrefix(want.Rule, "microsoft.com/pkiops/certs") {
			select {
			case p := <-served:
				if c := path.Clean(p); c != "/pkiops/certs" && !strings.HasPrefix(c, "/pkiops/certs/") {
					t.Fatalf("%q: admitted, and the origin served %q", raw, p)
				}
			case <-time.After(wait):
				t.Fatalf("%q: 200 without the origin serving it", raw)
			}
		}
	})
}

// TestFuzzVerdictHelpers pins the helpers' reading of answers.
func TestFuzzVerdictHelpers(t *testing.T) {
	for _, tc := range []struct {
		a    fuzzAnswer
		want bool
	}{
		{fuzzAnswer{200, ""}, true},
		{fuzzAnswer{502, ""}, true},
		{fuzzAnswer{504, ""}, true},
		{fuzzAnswer{403, "private-address"}, true},
		{fuzzAnswer{403, "not-in-allowlist"}, false},
		{fuzzAnswer{429, "limit-exceeded"}, false},
		{fuzzAnswer{400, ""}, false},
	} {
		if got := dialed(tc.a); got != tc.want {
			t.Errorf("dialed(%d %q) = %v", tc.a.status, tc.a.reason, got)
		}
	}
	if !parseFailure(0) || parseFailure(403) || !parseFailure(431) {
		t.Error("parseFailure")
	}
}

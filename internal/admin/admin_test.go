package admin

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"go.uber.org/goleak"

	"github.com/arcfence/arcfence/internal/audit"
	"github.com/arcfence/arcfence/internal/metrics"
	"github.com/arcfence/arcfence/policy"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func start(t *testing.T, o Options) (*Server, string) {
	t.Helper()
	if o.Listen == "" {
		o.Listen = "127.0.0.1:0"
	}
	o.Logger = zerolog.New(zerolog.NewTestWriter(t))
	s, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := s.Close(ctx); err != nil {
			t.Error(err)
		}
	})
	return s, "http://" + s.Addr().String()
}

var client = &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true}}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	return getHost(t, url, "")
}

func TestHealthz(t *testing.T) {
	_, base := start(t, Options{})
	if code, body := get(t, base+"/healthz"); code != 200 || body != "ok\n" {
		t.Fatalf("%d %q", code, body)
	}
}

// TestMetricsOverHTTP scrapes the registry over the listener.
func TestMetricsOverHTTP(t *testing.T) {
	m := metrics.New()
	m.Decisions.WithLabelValues("deny", "not-in-allowlist", "", "proxy", "default").Add(3)
	m.Decisions.WithLabelValues("allow", "", "servers", "proxy", "default").Inc()
	m.DNSQueries.WithLabelValues("NXDOMAIN").Inc()
	m.ActiveTunnels.Set(2)
	_, base := start(t, Options{Metrics: m})
	code, body := get(t, base+"/metrics")
	if code != 200 {
		t.Fatalf("%d", code)
	}
	for _, want := range []string{
		`arcfence_decisions_total{component="proxy",offering="",profile="default",reason="not-in-allowlist",verdict="deny"} 3`,
		`arcfence_decisions_total{component="proxy",offering="servers",profile="default",reason="",verdict="allow"} 1`,
		`arcfence_dns_queries_total{rcode="NXDOMAIN"} 1`,
		`arcfence_tunnels_active 2`,
		`arcfence_config_last_reload_ok 1`,
		`go_goroutines`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	if code, _ := get(t, base+"/debug/pprof/"); code != 404 {
		t.Errorf("pprof served while off: %d", code)
	}
}

func readyz(t *testing.T, base string) (int, Status) {
	t.Helper()
	code, body := get(t, base+"/readyz")
	var st Status
	if err := json.Unmarshal([]byte(body), &st); err != nil {
		t.Fatalf("%q: %v", body, err)
	}
	return code, st
}

// TestReadyzFollowsReloads: not ready before listeners and policy, ready
// after, unready after a failed reload, ready again after a good one.
func TestReadyzFollowsReloads(t *testing.T) {
	m := metrics.New()
	r := NewReadiness(m)
	_, base := start(t, Options{Metrics: m, Ready: r})
	if code, st := readyz(t, base); code != 503 || st.Ready {
		t.Fatalf("ready before anything: %d %+v", code, st)
	}
	r.Expect("proxy")
	r.Expect("dns")
	r.Loaded("aaa", time.Unix(1000, 0))
	r.ListenerUp("proxy")
	if code, st := readyz(t, base); code != 503 || len(st.Problems) != 1 || !strings.Contains(st.Problems[0], "dns") {
		t.Fatalf("ready with dns down: %d %+v", code, st)
	}
	r.ListenerUp("dns")
	if code, st := readyz(t, base); code != 200 || !st.Ready || st.ConfigHash != "aaa" || st.LastReload != ReloadNone {
		t.Fatalf("not ready: %d %+v", code, st)
	}
	r.Reloaded(errors.New("offerings: unknown offering \"bogus\""), "", time.Time{})
	code, st := readyz(t, base)
	if code != 503 || st.LastReload != ReloadFailed || !strings.Contains(st.LastReloadError, "bogus") || st.ConfigHash != "aaa" {
		t.Fatalf("ready after a failed reload: %d %+v", code, st)
	}
	_, body := get(t, base+"/metrics")
	for _, want := range []string{`arcfence_config_reloads_total{result="failed"} 1`, `arcfence_config_last_reload_ok 0`,
		`arcfence_ready 0`, `arcfence_config_info{hash="aaa"} 1`, `arcfence_config_loaded_timestamp_seconds 1000`} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	r.Reloaded(nil, "bbb", time.Unix(2000, 0))
	if code, st := readyz(t, base); code != 200 || st.ConfigHash != "bbb" || st.LastReload != ReloadOK {
		t.Fatalf("not ready after a good reload: %d %+v", code, st)
	}
	_, body = get(t, base+"/metrics")
	for _, want := range []string{`arcfence_config_reloads_total{result="ok"} 1`, `arcfence_config_last_reload_ok 1`,
		`arcfence_ready 1`, `arcfence_config_info{hash="bbb"} 1`} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	if strings.Contains(body, `hash="aaa"`) {
		t.Errorf("old config hash still exported")
	}
	r.ListenerDown("proxy")
	if code, _ := readyz(t, base); code != 503 {
		t.Fatalf("ready with the proxy down")
	}
}

func TestLearned(t *testing.T) {
	l := audit.NewWithOptions(zerolog.Nop(), audit.Options{FoldWindow: time.Minute})
	l.Refused(audit.Event{Component: audit.ComponentProxy, Client: "10.0.0.1", Host: "a.example.com", Port: 443,
		Reason: policy.NotInAllowlist, Mode: "learn", Proceeded: true})
	l.Close()
	_, base := start(t, Options{Learned: l.Learned, Mode: "learn"})
	code, body := get(t, base+"/learned")
	var got struct {
		Mode         string              `json:"mode"`
		Destinations []audit.LearnedDest `json:"destinations"`
		Dropped      int64               `json:"dropped"`
	}
	if err := json.Unmarshal([]byte(body), &got); err != nil || code != 200 {
		t.Fatalf("%d %q %v", code, body, err)
	}
	if got.Mode != "learn" || len(got.Destinations) != 1 || got.Destinations[0].Host != "a.example.com" || got.Destinations[0].Count != 1 {
		t.Fatalf("%+v", got)
	}
	mode := "learn"
	_, base = start(t, Options{Learned: l.Learned, Mode: "enforce", CurrentMode: func() string { return mode }})
	if _, body := get(t, base+"/learned"); !strings.Contains(body, `"mode": "learn"`) {
		t.Fatalf("CurrentMode not used: %s", body)
	}
	// Without a learned set (enforce mode) the list is empty, not null.
	_, base = start(t, Options{Mode: "enforce"})
	if _, body := get(t, base+"/learned"); !strings.Contains(body, `"destinations": []`) {
		t.Fatalf("%s", body)
	}
}

func TestPprof(t *testing.T) {
	_, base := start(t, Options{Pprof: true})
	if code, body := get(t, base+"/debug/pprof/"); code != 200 || !strings.Contains(body, "goroutine") {
		t.Fatalf("%d", code)
	}
}

// TestClients: non-loopback clients get 403 unless admin.clients lists them.
func TestClients(t *testing.T) {
	for _, tc := range []struct {
		name    string
		clients []string
		remote  string
		want    int
	}{
		{"loopback v4", nil, "127.0.0.1:5000", 200},
		{"loopback v6", nil, "[::1]:5000", 200},
		{"other loopback", nil, "127.9.9.9:5000", 200},
		{"mapped loopback", nil, "[::ffff:127.0.0.1]:5000", 200},
		{"remote refused", nil, "192.0.2.10:5000", 403},
		{"remote listed by CIDR", []string{"192.0.2.0/24"}, "192.0.2.10:5000", 200},
		{"remote listed by address", []string{"192.0.2.10/32"}, "192.0.2.10:5000", 200},
		{"remote outside list", []string{"192.0.2.0/24"}, "198.51.100.1:5000", 403},
		{"v6 listed", []string{"2001:db8::/32"}, "[2001:db8::5]:5000", 200},
		{"garbage remote", nil, "nonsense", 403},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var p []netip.Prefix
			for _, c := range tc.clients {
				p = append(p, netip.MustParsePrefix(c))
			}
			s := &Server{clients: p}
			h := s.guard(Handler(Options{}))
			req := httptest.NewRequest("GET", "/healthz", nil)
			req.Host = "127.0.0.1:9090"
			req.RemoteAddr = tc.remote
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if rec.Code != tc.want {
				t.Fatalf("%d, want %d: %s", rec.Code, tc.want, rec.Body)
			}
		})
	}
}

// getHost GETs url with the given Host header ("" = the URL's) over a
// real connection.
func getHost(t *testing.T, url, host string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if host != "" {
		req.Host = host
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

// TestHostHeader (issue 13 finding 4): the admin listener answers only
// requests whose Host names it, so that a page in a browser on the host
// cannot read /learned or /metrics by rebinding its own name to 127.0.0.1.
func TestHostHeader(t *testing.T) {
	m := metrics.New()
	s, base := start(t, Options{Metrics: m, Hosts: []string{"arcfence-admin.example.net", "mon.example.net:9999"}})
	port := strconv.Itoa(s.Addr().(*net.TCPAddr).Port)
	for _, tc := range []struct {
		host string
		want int
	}{
		{"127.0.0.1:" + port, 200},
		{"localhost:" + port, 200},
		{"[::1]:" + port, 200},
		{"localhost", 200},
		{"127.0.0.1", 200},
		{"[::1]", 200},
		{"LocalHost.:" + port, 200},
		{"127.0.0.2:" + port, 200},          // any loopback address
		{"[::ffff:127.0.0.1]:" + port, 200}, // IPv4-mapped loopback
		{"localhost:8080", 200},             // a port forward keeps its own port
		{"arcfence-admin.example.net:" + port, 200},
		{"arcfence-admin.example.net", 200},
		{"mon.example.net:9999", 200},
		{"rebind.attacker.example:" + port, 421},
		{"rebind.attacker.example", 421},
		{"localhost.attacker.example:" + port, 421},
		{"mon.example.net:" + port, 421}, // listed with another port
		{"mon.example.net", 421},
		{"192.0.2.10:" + port, 421}, // not an address of this listener
	} {
		t.Run(tc.host, func(t *testing.T) {
			for _, path := range []string{"/healthz", "/learned", "/metrics"} {
				code, body := getHost(t, base+path, tc.host)
				if code != tc.want {
					t.Fatalf("%s: %d %q, want %d", path, code, body, tc.want)
				}
				if code == 421 && (!strings.Contains(body, "admin.hosts") || strings.Count(body, "\n") != 1) {
					t.Fatalf("%s: body %q does not name admin.hosts on one line", path, body)
				}
			}
		})
	}
}

// TestHostSet: the names a listener is known by, from its listen address
// and admin.hosts; a listener on every address accepts every address.
func TestHostSet(t *testing.T) {
	for _, tc := range []struct {
		name    string
		listen  string
		hosts   []string
		ok, bad []string
	}{
		{"loopback listener", "127.0.0.1:9090", nil,
			[]string{"127.0.0.1:9090", "localhost", "[::1]:9090", ""},
			[]string{"10.0.0.5:9090", "evil.example:9090", "[fd00::1]:9090"}},
		{"one address", "10.0.0.5:9090", nil,
			[]string{"10.0.0.5:9090", "10.0.0.5", "[::ffff:10.0.0.5]:9090", "localhost:9090"},
			[]string{"10.0.0.6:9090", "arcfence.corp:9090"}},
		{"named listen host", "arcfence.corp:9090", nil,
			[]string{"arcfence.corp:9090", "ARCFENCE.corp."},
			[]string{"10.0.0.5:9090", "other.corp:9090"}},
		{"all IPv4 addresses", "0.0.0.0:9090", nil,
			[]string{"10.0.0.5:9090", "[2001:db8::1]:9090", "localhost:9090"},
			[]string{"arcfence.corp:9090", "rebind.example"}},
		{"all addresses, IPv6", "[::]:9090", []string{"arcfence.corp"},
			[]string{"192.0.2.1:9090", "arcfence.corp:1"},
			[]string{"rebind.example:9090"}},
		{"all addresses, no host", ":9090", []string{"[2001:DB8::5]:9090"},
			[]string{"10.0.0.5:9090", "[2001:db8:0::5]:9090"},
			[]string{"arcfence.corp:9090"}},
		{"listed IPv6 with port", "127.0.0.1:9090", []string{"[2001:DB8::5]:9090", "2001:db8::6"},
			[]string{"[2001:db8:0::5]:9090", "[2001:db8::6]:1"},
			[]string{"[2001:db8::5]:9091", "[2001:db8::5]"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			hs, err := newHostSet(tc.listen, tc.hosts)
			if err != nil {
				t.Fatal(err)
			}
			for _, h := range tc.ok {
				if !hs.allowed(h) {
					t.Errorf("Host %q refused", h)
				}
			}
			for _, h := range tc.bad {
				if hs.allowed(h) {
					t.Errorf("Host %q accepted", h)
				}
			}
		})
	}
	for _, e := range []string{"bad host", "arcfence.corp:", "arcfence.corp:0", "arcfence.corp:70000", "*.corp", "[::1"} {
		if _, err := New(Options{Listen: "127.0.0.1:0", Hosts: []string{e}}); err == nil || !strings.Contains(err.Error(), "admin.hosts") {
			t.Errorf("admin.hosts %q: error %v, want one naming admin.hosts", e, err)
		}
	}
}

func TestPortTaken(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	_, err = New(Options{Listen: ln.Addr().String(), Logger: zerolog.Nop()})
	if err == nil || !strings.Contains(err.Error(), "already in use") || !strings.Contains(err.Error(), "admin.listen") {
		t.Fatalf("err = %v", err)
	}
}

func TestHash(t *testing.T) {
	a, b := Hash(map[string]int{"a": 1}), Hash(map[string]int{"a": 2})
	if a == b || len(a) != 12 || a != Hash(map[string]int{"a": 1}) {
		t.Fatalf("%s %s", a, b)
	}
}

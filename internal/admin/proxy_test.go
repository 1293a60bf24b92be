package admin_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/arcfence/arcfence/internal/admin"
	"github.com/arcfence/arcfence/internal/audit"
	"github.com/arcfence/arcfence/internal/config"
	"github.com/arcfence/arcfence/internal/metrics"
	"github.com/arcfence/arcfence/policy"
	"github.com/arcfence/arcfence/proxy"
)

// world is a proxy, its admin listener and a TLS origin on loopback.
type world struct {
	proxyURL *url.URL
	admin    string
	origin   *httptest.Server
	log      *audit.Log
	stop     func()
}

func startWorld(t *testing.T, mode string, allow []string) *world {
	t.Helper()
	origin := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "hello from the origin\n")
	}))
	cfg := config.Default()
	cfg.Mode = mode
	cfg.AllowRanges = []string{"127.0.0.0/8"}
	cfg.Allow = allow
	for i, a := range cfg.Allow {
		cfg.Allow[i] = strings.ReplaceAll(a, "ORIGIN", origin.Listener.Addr().String())
	}
	rt, err := config.Build(&cfg)
	if err != nil {
		t.Fatal(err)
	}
	p := rt.Policy()
	logger := zerolog.New(zerolog.NewTestWriter(t))
	m := metrics.New()
	al := audit.NewWithOptions(logger, audit.Options{FoldWindow: time.Minute, Metrics: m, Hint: audit.PolicyHint(func(string) *policy.Policy { return p })})
	ready := admin.NewReadiness(m)
	ready.Expect("proxy")
	ready.Loaded(rt.Hash, time.Now())
	px, err := proxy.New(proxy.Options{Settings: rt.Proxy, Logger: logger, Audit: al, Metrics: m})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan struct{})
	go func() {
		defer close(served)
		_ = px.Serve(ln)
	}()
	ready.ListenerUp("proxy")
	as, err := admin.New(admin.Options{Listen: "127.0.0.1:0", Metrics: m, Ready: ready, Learned: al.Learned, Mode: mode, Logger: logger})
	if err != nil {
		t.Fatal(err)
	}
	w := &world{proxyURL: &url.URL{Scheme: "http", Host: ln.Addr().String()}, admin: "http://" + as.Addr().String(),
		origin: origin, log: al}
	stopped := false
	w.stop = func() {
		if stopped {
			return
		}
		stopped = true
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := px.Shutdown(ctx); err != nil {
			t.Error(err)
		}
		select {
		case <-served:
		case <-time.After(10 * time.Second):
			t.Error("proxy did not stop")
		}
		al.Close()
	}
	t.Cleanup(func() {
		w.stop()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = as.Close(ctx)
		origin.Close()
	})
	return w
}

// through GETs url through the proxy, trusting the origin's certificate.
func (w *world) through(t *testing.T, target string) (int, string) {
	t.Helper()
	tr := &http.Transport{
		Proxy:             http.ProxyURL(w.proxyURL),
		TLSClientConfig:   &tls.Config{RootCAs: w.origin.Client().Transport.(*http.Transport).TLSClientConfig.RootCAs},
		DisableKeepAlives: true,
	}
	defer tr.CloseIdleConnections()
	c := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	resp, err := c.Get(target)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// connect sends a bare CONNECT and returns the status code and reason header.
func (w *world) connect(t *testing.T, authority string) (int, string) {
	t.Helper()
	c, err := net.DialTimeout("tcp", w.proxyURL.Host, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprintf(c, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n", authority, authority)
	resp, err := http.ReadResponse(bufio.NewReader(c), &http.Request{Method: "CONNECT"})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode, resp.Header.Get("X-Arcfence-Reason")
}

func scrape(t *testing.T, base string) string {
	t.Helper()
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// value returns the sample of a metric line starting with prefix.
func value(t *testing.T, body, prefix string) float64 {
	t.Helper()
	re := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(prefix) + ` (\S+)$`)
	m := re.FindStringSubmatch(body)
	if m == nil {
		t.Fatalf("no sample %q in /metrics", prefix)
	}
	v, err := strconv.ParseFloat(m[1], 64)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// TestMetricsAfterProxyTraffic: decisions, tunnels and bytes on /metrics
// after real CONNECTs through the proxy.
func TestMetricsAfterProxyTraffic(t *testing.T) {
	w := startWorld(t, "enforce", []string{"ORIGIN"})
	for range 2 {
		if code, body := w.through(t, "https://"+w.origin.Listener.Addr().String()+"/"); code != 200 || body != "hello from the origin\n" {
			t.Fatalf("allowed GET: %d %q", code, body)
		}
	}
	for range 3 {
		if code, reason := w.connect(t, "denied.example.com:443"); code != 403 || reason != "not-in-allowlist" {
			t.Fatalf("denied CONNECT: %d %q", code, reason)
		}
	}
	if code, reason := w.connect(t, "x.his.arc.azure.com:8443"); code != 403 || reason != "port-not-allowed" {
		t.Fatalf("wrong port: %d %q", code, reason)
	}
	w.stop() // tunnels closed: bytes and durations observed
	body := scrape(t, w.admin)
	for prefix, want := range map[string]float64{
		`arcfence_decisions_total{component="proxy",offering="",profile="default",reason="",verdict="allow"}`:                2,
		`arcfence_decisions_total{component="proxy",offering="",profile="default",reason="not-in-allowlist",verdict="deny"}`: 3,
		`arcfence_decisions_total{component="proxy",offering="",profile="default",reason="port-not-allowed",verdict="deny"}`: 1,
		`arcfence_tunnels_active`:                          0,
		`arcfence_tunnel_duration_seconds_count`:           2,
		`arcfence_refusal_log_lines_total{kind="first"}`:   2,
		`arcfence_refusal_log_lines_total{kind="summary"}`: 1,
		`arcfence_ready`:                                   1,
	} {
		if got := value(t, body, prefix); got != want {
			t.Errorf("%s = %v, want %v", prefix, got, want)
		}
	}
	if up, down := value(t, body, `arcfence_tunnel_bytes_total{direction="up"}`), value(t, body, `arcfence_tunnel_bytes_total{direction="down"}`); up < 100 || down < 100 {
		t.Errorf("tunnel bytes up %v down %v", up, down)
	}
	if n := value(t, body, `arcfence_dial_seconds_count`); n != 2 {
		t.Errorf("dials %v", n)
	}
}

// TestLearnedAfterProxyTraffic: in learn mode, what the allowlist lacks is
// let through and served at /learned; guards stay refused.
func TestLearnedAfterProxyTraffic(t *testing.T) {
	w := startWorld(t, "learn", nil)
	origin := w.origin.Listener.Addr().String()
	// An IP literal no allow entry names: learn mode lets it through.
	if code, body := w.through(t, "https://"+origin+"/"); code != 200 || body != "hello from the origin\n" {
		t.Fatalf("learn-mode GET: %d %q", code, body)
	}
	// A guard stays on: an invalid port.
	if code, reason := w.connect(t, "example.com:0"); code != 403 || reason != "invalid-port" {
		t.Fatalf("guard: %d %q", code, reason)
	}
	w.stop()
	resp, err := http.Get(w.admin + "/learned")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var got struct {
		Mode         string              `json:"mode"`
		Destinations []audit.LearnedDest `json:"destinations"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&got); err != nil {
		t.Fatal(err)
	}
	host, port, _ := net.SplitHostPort(origin)
	if got.Mode != "learn" || len(got.Destinations) != 1 {
		t.Fatalf("/learned %+v", got)
	}
	d := got.Destinations[0]
	if d.Host != host || strconv.Itoa(d.Port) != port || d.Reason != "ip-literal" || d.Count != 1 || d.Clients[0] != "127.0.0.1" {
		t.Fatalf("learned %+v", d)
	}
	body := scrape(t, w.admin)
	if v := value(t, body, `arcfence_learned_destinations`); v != 1 {
		t.Errorf("learned gauge %v", v)
	}
}

// TestDialErrorAndLimitMetrics: a CONNECT to an allowed origin that refuses
// the connection is answered 502 and counted by status; the running
// limits.max_tunnels is published for the tunnels-near-limit alert.
func TestDialErrorAndLimitMetrics(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := ln.Addr().String()
	ln.Close() // nothing listens there now: the dial is refused
	w := startWorld(t, "enforce", []string{closed})
	for range 2 {
		if code, _ := w.connect(t, closed); code != http.StatusBadGateway {
			t.Fatalf("CONNECT to a closed port: %d, want 502", code)
		}
	}
	body := scrape(t, w.admin)
	if got := value(t, body, `arcfence_dial_errors_total{status="502"}`); got != 2 {
		t.Errorf("dial errors 502 = %v, want 2", got)
	}
	if got, want := value(t, body, `arcfence_tunnels_max`), float64(config.Default().Limits.MaxTunnels); got != want {
		t.Errorf("arcfence_tunnels_max = %v, want %v", got, want)
	}
}

// Command dashcheck asserts that every query of arcfence's Grafana dashboard
// returns data from a real Prometheus: it reads the dashboard JSON, replaces
// Grafana's variables ($__rate_interval, $__range, $instance, ...) with
// fixed values, and runs each panel's queries through Prometheus' HTTP API
// (/api/v1/query) until every one returns a non-empty result with at least
// one number that is not NaN, or the timeout passes. It is run by
// .ci/e2e-50-monitoring.sh against a Prometheus on loopback.
//
//	dashcheck -dashboard deploy/monitoring/grafana-dashboard.json -prometheus http://127.0.0.1:9091 [-timeout 90s]
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/url"
	"os"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// query is one target of one panel.
type query struct {
	Panel string // panel title
	RefID string
	Expr  string // as in the dashboard
}

// panel is the part of a Grafana panel dashcheck reads; rows nest panels.
type panel struct {
	Title   string  `json:"title"`
	Type    string  `json:"type"`
	Panels  []panel `json:"panels"`
	Targets []struct {
		RefID string `json:"refId"`
		Expr  string `json:"expr"`
	} `json:"targets"`
}

// queries returns every target of every panel of the dashboard JSON data,
// rows' nested panels included. A panel other than a row without a query
// is an error: it would show nothing.
func queries(data []byte) ([]query, error) {
	var d struct {
		Panels []panel `json:"panels"`
	}
	if err := json.Unmarshal(data, &d); err != nil {
		return nil, fmt.Errorf("dashboard: %w", err)
	}
	var out []query
	var walk func([]panel) error
	walk = func(ps []panel) error {
		for _, p := range ps {
			if p.Type == "row" {
				if err := walk(p.Panels); err != nil {
					return err
				}
				continue
			}
			if len(p.Targets) == 0 {
				return fmt.Errorf("panel %q has no query", p.Title)
			}
			for _, t := range p.Targets {
				if strings.TrimSpace(t.Expr) == "" {
					return fmt.Errorf("panel %q target %s has no expr", p.Title, t.RefID)
				}
				out = append(out, query{Panel: p.Title, RefID: t.RefID, Expr: t.Expr})
			}
		}
		return nil
	}
	if err := walk(d.Panels); err != nil {
		return nil, err
	}
	if len(out) == 0 {
		return nil, errors.New("dashboard has no queries")
	}
	return out, nil
}

var variable = regexp.MustCompile(`\$\{?(\w+)\}?`)

// substitute replaces Grafana variables in expr by vars' values (names
// without the $); a variable vars lacks is an error.
func substitute(expr string, vars map[string]string) (string, error) {
	var missing []string
	out := variable.ReplaceAllStringFunc(expr, func(m string) string {
		name := variable.FindStringSubmatch(m)[1]
		v, ok := vars[name]
		if !ok {
			missing = append(missing, m)
			return m
		}
		return v
	})
	if len(missing) > 0 {
		return "", fmt.Errorf("unknown variables %v in %q", missing, expr)
	}
	return out, nil
}

// apiResponse is Prometheus' /api/v1/query answer.
type apiResponse struct {
	Status string `json:"status"`
	Error  string `json:"error"`
	Data   struct {
		ResultType string            `json:"resultType"`
		Result     []json.RawMessage `json:"result"`
	} `json:"data"`
}

// hasNumber reports whether a vector result has a sample that is a number
// (histogram_quantile over buckets that did not move gives NaN).
func hasNumber(result []json.RawMessage) bool {
	for _, r := range result {
		var s struct {
			Value [2]any `json:"value"`
		}
		if json.Unmarshal(r, &s) != nil {
			continue
		}
		str, _ := s.Value[1].(string)
		if v, err := strconv.ParseFloat(str, 64); err == nil && !math.IsNaN(v) {
			return true
		}
	}
	return false
}

// run evaluates expr once; it returns the number of series, or why the
// result does not count.
func run(ctx context.Context, c *http.Client, base, expr string) (int, error) {
	u := base + "/api/v1/query?" + url.Values{"query": {expr}}.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return 0, err
	}
	resp, err := c.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		return 0, err
	}
	var r apiResponse
	if err := json.Unmarshal(body, &r); err != nil {
		return 0, fmt.Errorf("HTTP %d: %.200s", resp.StatusCode, body)
	}
	if r.Status != "success" {
		return 0, fmt.Errorf("query failed: %s", r.Error)
	}
	if r.Data.ResultType != "vector" {
		return 0, fmt.Errorf("result type %s, want vector", r.Data.ResultType)
	}
	if len(r.Data.Result) == 0 {
		return 0, errors.New("empty result")
	}
	if !hasNumber(r.Data.Result) {
		return len(r.Data.Result), errors.New("every sample is NaN")
	}
	return len(r.Data.Result), nil
}

// loopbackURL refuses a Prometheus URL whose host is not a loopback address.
func loopbackURL(s string) (string, error) {
	u, err := url.Parse(s)
	if err != nil {
		return "", err
	}
	host, _, err := net.SplitHostPort(u.Host)
	if err != nil {
		return "", fmt.Errorf("-prometheus %q: want http://127.0.0.1:PORT", s)
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		return "", fmt.Errorf("-prometheus %q: not a loopback address", s)
	}
	return strings.TrimRight(s, "/"), nil
}

func main() {
	dash := flag.String("dashboard", "deploy/monitoring/grafana-dashboard.json", "Grafana dashboard JSON")
	prom := flag.String("prometheus", "", "Prometheus base URL on loopback, e.g. http://127.0.0.1:9091")
	timeout := flag.Duration("timeout", 90*time.Second, "give up after this long")
	rate := flag.String("rate-interval", "1m", "value of $__rate_interval and $__interval")
	rng := flag.String("range", "15m", "value of $__range")
	inst := flag.String("instance", ".*", "value of $instance (a regexp)")
	flag.Parse()
	base, err := loopbackURL(*prom)
	if err != nil {
		fail(err)
	}
	data, err := os.ReadFile(*dash)
	if err != nil {
		fail(err)
	}
	qs, err := queries(data)
	if err != nil {
		fail(err)
	}
	vars := map[string]string{"__rate_interval": *rate, "__interval": *rate, "__range": *rng, "instance": *inst}
	exprs := make([]string, len(qs))
	for i, q := range qs {
		if exprs[i], err = substitute(q.Expr, vars); err != nil {
			fail(fmt.Errorf("panel %q: %w", q.Panel, err))
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	c := &http.Client{Timeout: 10 * time.Second}
	pending := make(map[int]error, len(qs))
	for i := range qs {
		pending[i] = errors.New("not run")
	}
	for round := 0; len(pending) > 0; round++ {
		for i := range qs {
			if _, ok := pending[i]; !ok {
				continue
			}
			n, err := run(ctx, c, base, exprs[i])
			if err == nil {
				fmt.Printf("ok  %-32s %s: %d series\n", qs[i].Panel, qs[i].RefID, n)
				delete(pending, i)
				continue
			}
			pending[i] = err
		}
		if len(pending) == 0 {
			break
		}
		select {
		case <-ctx.Done():
			for i := range qs {
				if err, ok := pending[i]; ok {
					fmt.Printf("BAD %-32s %s: %v\n    %s\n", qs[i].Panel, qs[i].RefID, err, exprs[i])
				}
			}
			fail(fmt.Errorf("%d of %d dashboard queries returned no data within %v", len(pending), len(qs), *timeout))
		case <-time.After(time.Second):
		}
	}
	fmt.Printf("dashcheck: all %d queries of %d-panel dashboard returned data\n", len(qs), countPanels(qs))
}

func countPanels(qs []query) int {
	seen := map[string]bool{}
	for _, q := range qs {
		seen[q.Panel] = true
	}
	return len(seen)
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "dashcheck:", err)
	os.Exit(1)
}

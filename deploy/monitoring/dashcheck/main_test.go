package main

import (
	"encoding/json"
	"os"
	"strings"
	"testing"
)

func TestQueries(t *testing.T) {
	for _, c := range []struct {
		name    string
		json    string
		want    []query
		wantErr string
	}{
		{"nested in rows", `{"panels":[
			{"type":"row","title":"r","panels":[{"type":"timeseries","title":"a","targets":[{"refId":"A","expr":"up"}]}]},
			{"type":"stat","title":"b","targets":[{"refId":"A","expr":"x"},{"refId":"B","expr":"y"}]}]}`,
			[]query{{"a", "A", "up"}, {"b", "A", "x"}, {"b", "B", "y"}}, ""},
		{"panel without query", `{"panels":[{"type":"stat","title":"empty"}]}`, nil, `panel "empty" has no query`},
		{"blank expr", `{"panels":[{"type":"stat","title":"s","targets":[{"refId":"A","expr":" "}]}]}`, nil, `target A has no expr`},
		{"no panels", `{"panels":[]}`, nil, "no queries"},
		{"not JSON", `{`, nil, "dashboard:"},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, err := queries([]byte(c.json))
			if c.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), c.wantErr) {
					t.Fatalf("err %v, want %q", err, c.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(c.want) {
				t.Fatalf("got %v, want %v", got, c.want)
			}
			for i := range got {
				if got[i] != c.want[i] {
					t.Errorf("query %d = %v, want %v", i, got[i], c.want[i])
				}
			}
		})
	}
}

func TestSubstitute(t *testing.T) {
	vars := map[string]string{"__rate_interval": "1m", "__range": "15m", "instance": ".*"}
	for _, c := range []struct {
		in, want, wantErr string
	}{
		{`rate(x{instance=~"$instance"}[$__rate_interval])`, `rate(x{instance=~".*"}[1m])`, ""},
		{`increase(x[${__range}])`, `increase(x[15m])`, ""},
		{`up`, `up`, ""},
		{`x{job="$job"}`, "", "unknown variables [$job]"},
	} {
		got, err := substitute(c.in, vars)
		if c.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), c.wantErr) {
				t.Errorf("substitute(%q): err %v, want %q", c.in, err, c.wantErr)
			}
			continue
		}
		if err != nil || got != c.want {
			t.Errorf("substitute(%q) = %q, %v; want %q", c.in, got, err, c.want)
		}
	}
}

func TestHasNumber(t *testing.T) {
	for _, c := range []struct {
		result string
		want   bool
	}{
		{`[{"metric":{},"value":[1,"0"]}]`, true},
		{`[{"metric":{},"value":[1,"NaN"]},{"metric":{},"value":[1,"0.25"]}]`, true},
		{`[{"metric":{},"value":[1,"NaN"]}]`, false},
		{`[]`, false},
	} {
		var r []json.RawMessage
		if err := json.Unmarshal([]byte(c.result), &r); err != nil {
			t.Fatal(err)
		}
		if got := hasNumber(r); got != c.want {
			t.Errorf("hasNumber(%s) = %v, want %v", c.result, got, c.want)
		}
	}
}

func TestLoopbackURL(t *testing.T) {
	for in, ok := range map[string]bool{
		"http://127.0.0.1:9091":  true,
		"http://[::1]:9091/":     true,
		"http://10.0.0.1:9090":   false,
		"http://prometheus:9090": false,
		"http://127.0.0.1":       false,
	} {
		if _, err := loopbackURL(in); (err == nil) != ok {
			t.Errorf("loopbackURL(%q): err %v, want ok=%v", in, err, ok)
		}
	}
}

// TestDashboard: the shipped dashboard's panels all have queries, use only
// the variables dashcheck and Grafana define, read arcfence's metrics, and
// take their data source from the datasource variable.
func TestDashboard(t *testing.T) {
	data, err := os.ReadFile("../grafana-dashboard.json")
	if err != nil {
		t.Fatal(err)
	}
	qs, err := queries(data)
	if err != nil {
		t.Fatal(err)
	}
	vars := map[string]string{"__rate_interval": "1m", "__interval": "1m", "__range": "15m", "instance": ".*"}
	for _, q := range qs {
		if _, err := substitute(q.Expr, vars); err != nil {
			t.Errorf("panel %q: %v", q.Panel, err)
		}
		if !strings.Contains(q.Expr, "arcfence_") {
			t.Errorf("panel %q reads no arcfence metric: %s", q.Panel, q.Expr)
		}
	}
	var d struct {
		UID    string `json:"uid"`
		Panels []struct {
			Title      string `json:"title"`
			Type       string `json:"type"`
			Datasource struct {
				UID string `json:"uid"`
			} `json:"datasource"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(data, &d); err != nil {
		t.Fatal(err)
	}
	if d.UID == "" {
		t.Error("dashboard has no uid")
	}
	for _, p := range d.Panels {
		if p.Type != "row" && p.Datasource.UID != "${datasource}" {
			t.Errorf("panel %q data source %q, want ${datasource}", p.Title, p.Datasource.UID)
		}
	}
	// What the issue asks the dashboard to show, by metric.
	all := ""
	for _, q := range qs {
		all += q.Expr + "\n"
	}
	for _, m := range []string{"arcfence_decisions_total", "arcfence_tunnels_active", "arcfence_tunnel_bytes_total",
		"arcfence_dial_seconds_bucket", "arcfence_dns_queries_total", "arcfence_config_last_reload_ok",
		"arcfence_dns_upstream_errors_total", "arcfence_dial_errors_total", "arcfence_refusal_log_lines_total"} {
		if !strings.Contains(all, m) {
			t.Errorf("no panel reads %s", m)
		}
	}
}

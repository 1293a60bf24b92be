package learn

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/arcfence/arcfence/internal/config"
	"github.com/arcfence/arcfence/policy"
)

func collect(t *testing.T, files ...string) *Collector {
	t.Helper()
	c := NewCollector()
	for _, f := range files {
		fh, err := os.Open(filepath.Join("testdata", f))
		if err != nil {
			t.Fatal(err)
		}
		err = c.ReadLog(fh, f)
		fh.Close()
		if err != nil {
			t.Fatal(err)
		}
	}
	return c
}

// recordedTotal is the number of refusals behind each recorded log.
func recordedTotal() int64 {
	var n int64
	for _, r := range recorded {
		n += int64(r.n)
	}
	return n + 1 // the hand-written noport line is bad; none other
}

func TestReadRecordedLogs(t *testing.T) {
	for _, f := range []string{"servers-enforce.log", "servers-learn.log"} {
		t.Run(f, func(t *testing.T) {
			c := collect(t, f)
			st := c.Stats
			if st.Bad != 3 || len(st.BadSamples) != 3 {
				t.Errorf("bad lines %d: %v", st.Bad, st.BadSamples)
			}
			if st.Other != 2 {
				t.Errorf("other lines %d", st.Other)
			}
			if st.Refusals != recordedTotal()-1 {
				t.Errorf("refusals %d, want %d", st.Refusals, recordedTotal()-1)
			}
			want := map[string]int64{}
			for _, r := range recorded {
				want[policy.FormatHostPort(r.ev.Host, r.ev.Port)] += int64(r.n)
			}
			got := map[string]int64{}
			for _, g := range c.Groups() {
				got[policy.FormatHostPort(g.Host, g.Port)] += g.Count
			}
			for k, n := range want {
				if got[k] != n {
					t.Errorf("%s: %d refusals, want %d", k, got[k], n)
				}
			}
			if len(got) != len(want) {
				t.Errorf("%d destinations, want %d", len(got), len(want))
			}
			g := c.Groups()[0]
			if g.Host != "eastus2.dp.kubernetesconfiguration.azure.com" || g.Count != 503 || len(g.Clients) != 2 {
				t.Errorf("top group %+v", g)
			}
			if strings.Contains(f, "learn") && g.WouldDeny != 503 {
				t.Errorf("would deny %d", g.WouldDeny)
			}
		})
	}
}

// serversConfig is the default config (offerings [servers], regions
// [eastus2]) on catalog revision 2024-01, which the recorded logs and the
// expectations below were written against.
func serversConfig() config.Config {
	cfg := config.Default()
	cfg.Catalog.Revision = policy.Revision202401
	return cfg
}

// suggest analyzes c against cfg and applies the report's YAML to cfg as
// an operator pasting it does; it returns the report, the pasted config and
// the YAML.
func suggest(t *testing.T, cfg config.Config, c *Collector) (*Report, config.Config, string) {
	t.Helper()
	rep, err := Analyze(cfg, c)
	if err != nil {
		t.Fatal(err)
	}
	var y bytes.Buffer
	if err := rep.WriteYAML(&y); err != nil {
		t.Fatal(err)
	}
	return rep, applyYAML(t, cfg, y.Bytes()), y.String()
}

// applyYAML replaces the config keys the report's YAML names, as an
// operator pasting it does.
func applyYAML(t *testing.T, cfg config.Config, doc []byte) config.Config {
	t.Helper()
	var add struct {
		Offerings []string `yaml:"offerings"`
		Features  []string `yaml:"features"`
		Regions   []string `yaml:"regions"`
		Allow     []string `yaml:"allow"`
	}
	dec := yaml.NewDecoder(bytes.NewReader(doc))
	dec.KnownFields(true)
	if err := dec.Decode(&add); err != nil {
		t.Fatalf("report YAML does not parse: %v\n%s", err, doc)
	}
	cfg.Offerings, cfg.Features, cfg.Regions, cfg.Allow = add.Offerings, add.Features, add.Regions, add.Allow
	return cfg
}

func groupDest(g Group) policy.Dest {
	return policy.Dest{Host: g.Host, Port: g.Port, Path: g.Path, Plain: g.Path != ""}
}

// TestReportAdmitsRecorded: the suggested YAML, applied to the servers
// config, admits every destination the allowlist lacked (checked through
// Decide), and names nothing for destinations already allowed or refused
// by a guard or the deny list.
func TestReportAdmitsRecorded(t *testing.T) {
	for _, f := range []string{"servers-enforce.log", "servers-learn.log"} {
		t.Run(f, func(t *testing.T) {
			cfg := serversConfig()
			c := collect(t, f)
			rep, next, y := suggest(t, cfg, c)
			t.Logf("YAML:\n%s", y)
			p, err := config.Compile(&next)
			if err != nil {
				t.Fatalf("suggested config: %v", err)
			}
			byName := map[string]Item{}
			for _, it := range rep.Items {
				byName[destName(it.Group)] = it
			}
			for _, it := range rep.Items {
				var fixable bool
				for r := range it.Reasons {
					fixable = fixable || actionable(r)
				}
				var d policy.Decision
				if it.DNS {
					d = p.DecideName(it.Host)
				} else {
					d = p.Decide(groupDest(it.Group))
				}
				if fixable && !d.Allowed() {
					t.Errorf("%s still refused (%s) under the suggested config", destName(it.Group), d.Reason)
				}
			}
			// What each destination needed.
			for name, want := range map[string]Item{
				"eastus2.dp.kubernetesconfiguration.azure.com:443":    {Action: ActionCatalog, Offering: "kubernetes", Section: "Azure Arc-enabled Kubernetes endpoints"},
				"eastus2.dp.kubernetesconfiguration.azure.com (dns)":  {Action: ActionCatalog, Offering: "kubernetes"},
				"eastus2.obo.arc.azure.com:8084":                      {Action: ActionCatalog, Offering: "kubernetes", Feature: "cluster-connect"},
				"arcdataservicesrow1.azurecr.io:443":                  {Action: ActionCatalog, Offering: "data-services", Section: "Azure Arc-enabled data services"},
				"abc.ods.opinsights.azure.com:443":                    {Action: ActionCatalog, Offering: "data-services"},
				"telemetry.westeurope.arcdataservices.com:443":        {Action: ActionCatalog, Offering: "sql-server", Region: "westeurope"},
				"westeurope.dp.kubernetesconfiguration.azure.com:443": {Action: ActionCatalog, Offering: "kubernetes", Region: "westeurope"},
				"api.github.com:443":                                  {Action: ActionAllow, Allow: "api.github.com"},
				"downloads.example.net:8443":                          {Action: ActionAllow, Allow: "downloads.example.net:8443"},
				"203.0.113.5:443":                                     {Action: ActionAllow, Allow: "203.0.113.5"},
				"files.example.net:80/pub/tools/agent.tar.gz":         {Action: ActionAllow, Allow: "files.example.net:80/pub/tools"},
				"gbl.his.arc.azure.com:8443":                          {Action: ActionAllow, Allow: "gbl.his.arc.azure.com:8443"},
				"unknown.example.org (dns)":                           {Action: ActionAllow, Allow: "unknown.example.org"},
				"pas.windows.net:443":                                 {Action: ActionAllowed},
				"internal.example.com:443":                            {Action: ActionGuard},
				"login.microsoftonline.com:443":                       {Action: ActionGuard},
				"bad_name.example:443":                                {Action: ActionGuard},
				"login.windows.net:443":                               {Action: ActionClient},
				"blocked.example.com:443":                             {Action: ActionDenyList},
			} {
				got, ok := byName[name]
				if !ok {
					t.Errorf("%s: not in the report", name)
					continue
				}
				if got.Action != want.Action || got.Allow != want.Allow ||
					(want.Action == ActionCatalog && (got.Feature != want.Feature || got.Region != want.Region)) ||
					(want.Section != "" && got.Section != want.Section) {
					t.Errorf("%s: %+v, want %+v", name, got, want)
				}
				// The offering: the one the row names, or one already added
				// by a busier destination.
				if want.Offering != "" && got.Offering != want.Offering && !slices.Contains(rep.Added.Offerings, want.Offering) {
					t.Errorf("%s: offering %q, want %q", name, got.Offering, want.Offering)
				}
			}
			// Nothing is suggested for what is allowed already, guarded or denied.
			for _, host := range []string{"pas.windows.net", "internal.example.com", "login.microsoftonline.com",
				"login.windows.net", "bad_name.example", "blocked.example.com"} {
				if strings.Contains(y, "- "+host) {
					t.Errorf("YAML suggests %s:\n%s", host, y)
				}
			}
			if want := []string{"kubernetes", "data-services", "sql-server"}; !sameSet(rep.Added.Offerings, want) {
				t.Errorf("added offerings %v, want %v", rep.Added.Offerings, want)
			}
			if !sameSet(rep.Added.Features, []string{"cluster-connect"}) || !sameSet(rep.Added.Regions, []string{"westeurope"}) {
				t.Errorf("added %+v", rep.Added)
			}
			if len(rep.Added.Allow) != 6 {
				t.Errorf("added allow %v", rep.Added.Allow)
			}

			// A second pass with the pasted config has nothing to add.
			rep2, err := Analyze(next, collect(t, f))
			if err != nil {
				t.Fatal(err)
			}
			if !rep2.Added.Empty() {
				t.Errorf("second pass adds %+v", rep2.Added)
			}
			var y2 bytes.Buffer
			if err := rep2.WriteYAML(&y2); err != nil || !strings.HasPrefix(y2.String(), "# arcfence learn report: nothing to add") {
				t.Errorf("second pass YAML %q %v", y2.String(), err)
			}

			var txt bytes.Buffer
			if err := rep.WriteText(&txt); err != nil {
				t.Fatal(err)
			}
			for _, want := range []string{"3 lines could not be parsed", "add offering kubernetes",
				`spec section "Azure Arc-enabled Kubernetes endpoints"`, `add allow entry "api.github.com"`,
				"already allowed by", "region westeurope", "offerings: + kubernetes"} {
				if !strings.Contains(txt.String(), want) {
					t.Errorf("text lacks %q:\n%s", want, txt.String())
				}
			}
			var js bytes.Buffer
			if err := rep.WriteJSON(&js); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func sameSet(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for _, x := range b {
		if !slices.Contains(a, x) {
			return false
		}
	}
	return true
}

func TestReportKeepsCurrentValues(t *testing.T) {
	cfg := serversConfig()
	cfg.Allow = []string{"repo.example.com"}
	cfg.Features = []string{"ssh"}
	c := NewCollector()
	c.Add(Refusal{Component: "proxy", Host: "dl.k8s.io", Port: 443, Reason: policy.NotInAllowlist, Count: 1})
	_, next, y := suggest(t, cfg, c)
	if !slices.Equal(next.Allow, []string{"repo.example.com"}) || !slices.Equal(next.Features, []string{"ssh", "auto-upgrade"}) ||
		!slices.Equal(next.Offerings, []string{"servers", "kubernetes"}) || !slices.Equal(next.Regions, []string{"eastus2"}) {
		t.Fatalf("pasted config %+v\n%s", next, y)
	}
}

func TestReportInvalidConfig(t *testing.T) {
	cfg := serversConfig()
	cfg.Offerings = []string{"bogus"}
	if _, err := Analyze(cfg, NewCollector()); err == nil {
		t.Fatal("no error for an invalid config")
	}
}

// TestReportNotes: a refusal that the current phase or data-services mode
// explains is suggested as an allow entry with a note naming the setting.
func TestReportNotes(t *testing.T) {
	for _, tc := range []struct {
		name, host, note string
		edit             func(*config.Config)
	}{
		{"steady phase", "download.microsoft.com", "phase", func(c *config.Config) { c.Phase = "steady" }},
		{"indirect data services", "arcdataservicesrow1.azurecr.io", "data_services.mode", func(c *config.Config) {
			c.Offerings = []string{"data-services"}
			c.DataServices.Mode = "indirect"
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := serversConfig()
			tc.edit(&cfg)
			c := NewCollector()
			c.Add(Refusal{Component: "proxy", Host: tc.host, Port: 443, Reason: policy.NotInAllowlist, Count: 1})
			rep, err := Analyze(cfg, c)
			if err != nil {
				t.Fatal(err)
			}
			it := rep.Items[0]
			if it.Action != ActionAllow || it.Allow != tc.host || !strings.Contains(it.Note, tc.note) {
				t.Fatalf("%+v", it)
			}
		})
	}
}

// TestReportOnServeLogs runs the report on logs a real `arcfence serve`
// (proxy and DNS filter) wrote; see testdata/record-serve.sh.
func TestReportOnServeLogs(t *testing.T) {
	for _, f := range []string{"serve-learn.log", "serve-enforce.log"} {
		t.Run(f, func(t *testing.T) {
			cfg := serversConfig()
			c := collect(t, f)
			if c.Stats.Bad != 0 {
				t.Errorf("unparseable lines in a real log: %v", c.Stats.BadSamples)
			}
			rep, next, y := suggest(t, cfg, c)
			p, err := config.Compile(&next)
			if err != nil {
				t.Fatalf("suggested config: %v\n%s", err, y)
			}
			byName := map[string]Item{}
			for _, it := range rep.Items {
				byName[destName(it.Group)] = it
				d := p.Decide(groupDest(it.Group))
				if it.DNS {
					d = p.DecideName(it.Host)
				}
				if !d.Allowed() {
					t.Errorf("%s still refused (%s) under the suggested config", destName(it.Group), d.Reason)
				}
			}
			for name, want := range map[string]struct {
				action string
				count  int64
			}{
				"eastus2.dp.kubernetesconfiguration.azure.com:443":    {ActionCatalog, 32},
				"eastus2.dp.kubernetesconfiguration.azure.com (dns)":  {ActionCatalog, 3},
				"eastus2.obo.arc.azure.com:8084":                      {ActionCatalog, 1},
				"arcdataservicesrow1.azurecr.io:443":                  {ActionCatalog, 1},
				"telemetry.westeurope.arcdataservices.com:443":        {ActionCatalog, 2},
				"westeurope.dp.kubernetesconfiguration.azure.com:443": {ActionCatalog, 1},
				"api.github.com:443":                                  {ActionAllow, 4},
				"unknown.example.org (dns)":                           {ActionAllow, 1},
			} {
				it, ok := byName[name]
				if !ok || it.Action != want.action || it.Count != want.count {
					t.Errorf("%s: %+v, want %s with %d refusals", name, it, want.action, want.count)
				}
			}
			for _, allowed := range []string{"login.microsoftonline.com:443", "login.microsoftonline.com (dns)"} {
				if _, ok := byName[allowed]; ok {
					t.Errorf("allowed destination %s in the report", allowed)
				}
			}
			if !sameSet(rep.Added.Offerings, []string{"kubernetes", "data-services", "sql-server"}) ||
				!sameSet(rep.Added.Regions, []string{"westeurope"}) || !sameSet(rep.Added.Features, []string{"cluster-connect"}) {
				t.Errorf("added %+v", rep.Added)
			}
		})
	}
}

// FuzzAnalyze: whatever a log says about a destination, Analyze succeeds,
// and every item it claims to admit is admitted by the config it suggests.
func FuzzAnalyze(f *testing.F) {
	f.Add("eastus2.dp.kubernetesconfiguration.azure.com", 443, "", uint8(policy.NotInAllowlist), false)
	f.Add("bad_name.example", 443, "", uint8(policy.NotInAllowlist), false)
	f.Add("fe80::1%eth0", 8443, "", uint8(policy.IPLiteral), false)
	f.Add("files.example.net", 80, "/a b/c", uint8(policy.PathNotAllowed), false)
	f.Add("UPPER.example.com.", 0, "", uint8(policy.NotInAllowlist), true)
	f.Add("*.com", 443, "", uint8(policy.NotInAllowlist), false)
	f.Add("x.example.com", 70000, "", uint8(policy.PortNotAllowed), false)
	cfg := serversConfig()
	f.Fuzz(func(t *testing.T, host string, port int, path string, reason uint8, dns bool) {
		r, ok := policy.ParseReason(policy.Reason(reason).String())
		if !ok || host == "" || port < 0 || port > 65535 {
			return
		}
		comp := "proxy"
		if dns {
			comp, port = "dns", 0
		}
		c := NewCollector()
		c.Add(Refusal{Component: comp, Host: host, Port: port, Path: path, Reason: r, Count: 1})
		c.Add(Refusal{Component: "proxy", Host: "api.github.com", Port: 443, Reason: policy.NotInAllowlist, Count: 1})
		rep, err := Analyze(cfg, c)
		if err != nil {
			t.Fatalf("Analyze: %v", err)
		}
		next := cfg
		next.Offerings = append(slices.Clone(cfg.Offerings), rep.Added.Offerings...)
		next.Features = append(slices.Clone(cfg.Features), rep.Added.Features...)
		next.Regions = append(slices.Clone(cfg.Regions), rep.Added.Regions...)
		next.Allow = append(slices.Clone(cfg.Allow), rep.Added.Allow...)
		p, err := config.Compile(&next)
		if err != nil {
			t.Fatalf("suggested config: %v", err)
		}
		for _, it := range rep.Items {
			if it.Action != ActionCatalog && it.Action != ActionAllow {
				continue
			}
			if !decide(p, it.Group).Allowed() {
				t.Fatalf("%s claimed admitted but refused", destName(it.Group))
			}
		}
		for _, a := range rep.Added.Allow {
			if host, _, _ := strings.Cut(a, "/"); strings.Contains(host, "*") {
				t.Fatalf("wildcard allow entry %q suggested", a)
			}
		}
	})
}

func TestYAMLCommentsStayComments(t *testing.T) {
	c := NewCollector()
	c.Add(Refusal{Component: "proxy", Host: "microsoft.com", Port: 80, Path: "/pkiops/certs/x\nallow: [evil.example]",
		Reason: policy.NotInAllowlist, Count: 1})
	_, next, y := suggest(t, serversConfig(), c)
	if slices.Contains(next.Allow, "evil.example") {
		t.Fatalf("a path from the log became config:\n%s", y)
	}
	if !slices.Contains(next.Features, "esu") {
		t.Fatalf("pkiops row not suggested:\n%s", y)
	}
}

// TestReportRevision2026: under catalog revision 2026-08, a row that needs
// two features gets both suggested, and a name only 2024-01 lists gets an
// allow entry whose note says "in catalog revision 2024-01".
func TestReportRevision2026(t *testing.T) {
	cfg := config.Default()
	cfg.Catalog.Revision = policy.Revision202608
	cfg.Offerings = []string{"kubernetes"}
	c := NewCollector()
	c.Add(Refusal{Component: "proxy", Host: "eastus2.obo.arc.azure.com", Port: 8084, Reason: policy.NotInAllowlist, Count: 1})
	c.Add(Refusal{Component: "proxy", Host: "k8connecthelm.azureedge.net", Port: 443, Reason: policy.NotInAllowlist, Count: 1})
	rep, next, y := suggest(t, cfg, c)
	if !slices.Contains(next.Features, "cluster-connect") || !slices.Contains(next.Features, "azure-rbac") {
		t.Errorf("features %v, want cluster-connect and azure-rbac\n%s", next.Features, y)
	}
	var found bool
	for _, it := range rep.Items {
		switch it.Host {
		case "eastus2.obo.arc.azure.com":
			if it.Action != ActionCatalog || it.Feature != "cluster-connect" || !slices.Equal(it.AlsoFeatures, []string{"azure-rbac"}) {
				t.Errorf("obo item %+v", it)
			}
		case "k8connecthelm.azureedge.net":
			found = true
			if it.Action != ActionAllow || !strings.Contains(it.Note, "in catalog revision 2024-01") {
				t.Errorf("k8connecthelm item %+v", it)
			}
		}
	}
	if !found {
		t.Error("no item for k8connecthelm.azureedge.net")
	}
	p, err := config.Compile(&next)
	if err != nil {
		t.Fatal(err)
	}
	if d := p.Decide(policy.Dest{Host: "eastus2.obo.arc.azure.com", Port: 8084}); !d.Allowed() {
		t.Errorf("obo refused under the suggested config: %s", d.Reason)
	}
}

package policy_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/arcfence/arcfence/policy"
)

// benchConfig is every offering and feature, two regions, the vCenter and
// SCVMM servers, plus n user allow rules: a third exact names, a third
// "*." wildcards and a third first-label globs, each in its own zone.
func benchConfig(n int) policy.Config {
	cfg := policy.Config{
		Regions:   []string{"eastus2", "westeurope"},
		Offerings: policy.Offerings(), Features: policy.Features(),
		VCenter: "vcenter.corp.example", SCVMMServer: "scvmm.corp.example:8100",
	}
	for i := 0; i < n; i++ {
		switch i % 3 {
		case 0:
			cfg.Allow = append(cfg.Allow, fmt.Sprintf("host%05d.example.com", i))
		case 1:
			cfg.Allow = append(cfg.Allow, fmt.Sprintf("*.zone%05d.example.net:8443", i))
		case 2:
			cfg.Allow = append(cfg.Allow, fmt.Sprintf("svc%05d*.glob%05d.example.org", i, i))
		}
	}
	return cfg
}

// benchDests are the destinations of the mix, by kind; user-rule names
// refer to rules that exist for every n >= 10.
func benchDests() []struct {
	kind string
	d    policy.Dest
} {
	return []struct {
		kind string
		d    policy.Dest
	}{
		{"catalog-exact", policy.Dest{Host: "management.azure.com", Port: 443}},
		{"catalog-region", policy.Dest{Host: "eastus2.dp.kubernetesconfiguration.azure.com", Port: 443}},
		{"catalog-wildcard", policy.Dest{Host: "abc.his.arc.azure.com", Port: 443}},
		{"catalog-wildcard-deep", policy.Dest{Host: "a.b.c.blob.core.windows.net", Port: 443}},
		{"catalog-glob", policy.Dest{Host: "azgn12345.servicebus.windows.net", Port: 443}},
		{"catalog-path", policy.Dest{Host: "microsoft.com", Port: 80, Plain: true, Path: "/pkiops/certs/ca.crt"}},
		{"user-exact", policy.Dest{Host: "host00006.example.com", Port: 443}},
		{"user-wildcard", policy.Dest{Host: "x.zone00004.example.net", Port: 8443}},
		{"user-glob", policy.Dest{Host: "svc00008abc.glob00008.example.org", Port: 443}},
		{"miss", policy.Dest{Host: "unknown.example.com", Port: 443}},
		{"miss-deep", policy.Dest{Host: "a.b.c.d.e.f.g.example.invalid", Port: 443}},
		{"miss-port", policy.Dest{Host: "management.azure.com", Port: 22}},
		{"miss-wildcard-port", policy.Dest{Host: "x.zone00004.example.net", Port: 443}},
		{"miss-ip", policy.Dest{Host: "192.0.2.55", Port: 443}},
	}
}

func reportRate(b *testing.B, n int) {
	if s := b.Elapsed().Seconds(); s > 0 {
		b.ReportMetric(float64(n)/s, "decisions/s")
	}
}

// BenchmarkDecide measures Decide over a mix of hits and misses, for 10,
// 1,000 and 10,000 user rules (the cost must not grow), and per kind of
// destination with 10,000 rules.
func BenchmarkDecide(b *testing.B) {
	dests := benchDests()
	for _, n := range []int{10, 1000, 10000} {
		p := compileOK(b, benchConfig(n))
		for _, dd := range dests {
			if got := p.Decide(dd.d); got.Allowed() == strings.HasPrefix(dd.kind, "miss") {
				b.Fatalf("%s %+v: %s %s", dd.kind, dd.d, got.Verdict, got.Reason)
			}
		}
		b.Run(fmt.Sprintf("mix/rules=%d", n), func(b *testing.B) {
			b.ReportAllocs()
			i, ops := 0, 0
			for b.Loop() {
				p.Decide(dests[i].d)
				i++
				if i == len(dests) {
					i = 0
				}
				ops++
			}
			reportRate(b, ops)
		})
		if n != 10000 {
			continue
		}
		for _, dd := range dests {
			b.Run(fmt.Sprintf("kind=%s/rules=%d", dd.kind, n), func(b *testing.B) {
				b.ReportAllocs()
				ops := 0
				for b.Loop() {
					p.Decide(dd.d)
					ops++
				}
				reportRate(b, ops)
			})
		}
	}
	// Not part of the target: a host in upper case is lower-cased, which
	// allocates by design (NormalizeHost's doc).
	p := compileOK(b, benchConfig(10))
	b.Run("upper-case-host", func(b *testing.B) {
		b.ReportAllocs()
		d := policy.Dest{Host: "Management.Azure.Com", Port: 443}
		for b.Loop() {
			p.Decide(d)
		}
	})
}

// BenchmarkDecideSameZoneGlobs is the adversarial case for the glob index:
// every user glob in one zone, so a miss in that zone walks them all.
func BenchmarkDecideSameZoneGlobs(b *testing.B) {
	for _, n := range []int{10, 1000, 10000} {
		cfg := benchConfig(0)
		for i := 0; i < n; i++ {
			cfg.Allow = append(cfg.Allow, fmt.Sprintf("svc%05d*.glob.example.org", i))
		}
		p := compileOK(b, cfg)
		d := policy.Dest{Host: "other.glob.example.org", Port: 443}
		b.Run(fmt.Sprintf("miss/rules=%d", n), func(b *testing.B) {
			b.ReportAllocs()
			ops := 0
			for b.Loop() {
				p.Decide(d)
				ops++
			}
			reportRate(b, ops)
		})
	}
}

// BenchmarkDecideName is the DNS filter's question: name only.
func BenchmarkDecideName(b *testing.B) {
	p := compileOK(b, benchConfig(10000))
	names := []string{"management.azure.com", "abc.his.arc.azure.com", "azgn1.servicebus.windows.net",
		"host00006.example.com", "unknown.example.com", "a.b.c.d.e.f.g.example.invalid"}
	b.ReportAllocs()
	i, ops := 0, 0
	for b.Loop() {
		p.DecideName(names[i])
		i++
		if i == len(names) {
			i = 0
		}
		ops++
	}
	reportRate(b, ops)
}

// TestDecideZeroAllocs: deciding a lower-case destination, hit or miss,
// allocates nothing (the design's target for the hot path).
func TestDecideZeroAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector changes allocation counts")
	}
	p := compileOK(t, benchConfig(1000))
	for _, dd := range benchDests() {
		if n := testing.AllocsPerRun(100, func() { p.Decide(dd.d) }); n != 0 {
			t.Errorf("Decide %s (%s:%d): %v allocs", dd.kind, dd.d.Host, dd.d.Port, n)
		}
	}
	pd := compileOK(t, policy.Config{Regions: []string{"eastus2"}, Offerings: []string{"servers"},
		Deny: []string{"management.azure.com", "*.his.arc.azure.com", "192.0.2.1", "pas.windows.net:443"}})
	for _, d := range []policy.Dest{{Host: "management.azure.com", Port: 443}, {Host: "x.his.arc.azure.com", Port: 80},
		{Host: "192.0.2.1", Port: 443}, {Host: "pas.windows.net", Port: 443}} {
		if n := testing.AllocsPerRun(100, func() { pd.Decide(d) }); n != 0 {
			t.Errorf("Decide explicit-deny %s:%d: %v allocs", d.Host, d.Port, n)
		}
	}
	for _, name := range []string{"management.azure.com", "abc.his.arc.azure.com", "unknown.example.com"} {
		if n := testing.AllocsPerRun(100, func() { p.DecideName(name) }); n != 0 {
			t.Errorf("DecideName %s: %v allocs", name, n)
		}
	}
}

// TestDecideConcurrent runs Decide from several goroutines on one policy
// (meaningful under -race: Decide must not write shared state).
func TestDecideConcurrent(t *testing.T) {
	p := compileOK(t, benchConfig(100))
	dests := benchDests()
	done := make(chan struct{})
	for g := 0; g < 4; g++ {
		go func() {
			defer func() { done <- struct{}{} }()
			for i := 0; i < 2000; i++ {
				dd := dests[i%len(dests)]
				p.Decide(dd.d)
				p.DecideName(dd.d.Host)
			}
		}()
	}
	for g := 0; g < 4; g++ {
		<-done
	}
}

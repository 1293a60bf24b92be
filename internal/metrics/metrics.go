// Package metrics defines arcfence's Prometheus collectors, registered on a
// registry of their own (never the global one) so tests and reloads can make
// as many as they need.
package metrics

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// Metrics holds every collector. All fields are safe for concurrent use.
type Metrics struct {
	// Registry is the registry the collectors are registered on; /metrics serves it.
	Registry *prometheus.Registry
	// Decisions counts decisions by verdict, reason, offering, component
	// (proxy, dns) and profile (the deciding profile's name; "" = none).
	Decisions *prometheus.CounterVec
	// ActiveTunnels is the number of open tunnels.
	ActiveTunnels prometheus.Gauge
	// TunnelBytes counts bytes carried by tunnels, by direction (up: client to origin, down).
	TunnelBytes *prometheus.CounterVec
	// TunnelDuration observes tunnel lifetimes in seconds.
	TunnelDuration prometheus.Histogram
	// DialLatency observes origin dial latency in seconds.
	DialLatency prometheus.Histogram
	// DNSQueries counts DNS filter answers by rcode.
	DNSQueries *prometheus.CounterVec
	// Reloads counts config reloads by result (ok, failed).
	Reloads *prometheus.CounterVec
	// ConfigInfo is 1 for the loaded config's hash label.
	ConfigInfo *prometheus.GaugeVec
	// ConfigLoadTime is the Unix time the running config was loaded.
	ConfigLoadTime prometheus.Gauge
	// ConfigReloadOK is 1 when the last reload succeeded (or none failed yet), 0 otherwise.
	ConfigReloadOK prometheus.Gauge
	// RefusalLines counts refusal log lines written, by kind: first (a
	// refusal logged at once), summary (folded repeats), unitemized (counts
	// kept while the log writer was behind).
	RefusalLines *prometheus.CounterVec
	// LearnedDestinations is the size of learn mode's set of would-be-refused
	// destinations (/learned).
	LearnedDestinations prometheus.Gauge
	// Ready is 1 when /readyz answers ready, 0 otherwise.
	Ready prometheus.Gauge
	// MaxTunnels is the running limits.max_tunnels (0 = no limit), so an
	// alert can compare ActiveTunnels with it.
	MaxTunnels prometheus.Gauge
	// DialErrors counts failed dials to origins by the status answered
	// (502: not resolved, refused, unreachable; 504: timed out).
	DialErrors *prometheus.CounterVec
	// DNSUpstreamErrors counts failed exchanges with DNS upstreams by
	// upstream (host:port, from dns.upstream) and proto (udp, tcp).
	DNSUpstreamErrors *prometheus.CounterVec
}

// New creates the collectors on a new registry, with Go and process collectors.
func New() *Metrics {
	reg := prometheus.NewRegistry()
	m := &Metrics{
		Registry: reg,
		Decisions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "arcfence_decisions_total",
			Help: "Decisions by verdict, reason, offering, component and profile.",
		}, []string{"verdict", "reason", "offering", "component", "profile"}),
		ActiveTunnels: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "arcfence_tunnels_active",
			Help: "Open tunnels.",
		}),
		TunnelBytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "arcfence_tunnel_bytes_total",
			Help: "Bytes carried by tunnels; direction up is client to origin.",
		}, []string{"direction"}),
		TunnelDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "arcfence_tunnel_duration_seconds",
			Help:    "Tunnel lifetimes.",
			Buckets: []float64{0.01, 0.1, 1, 10, 60, 600, 3600, 14400, 86400},
		}),
		DialLatency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "arcfence_dial_seconds",
			Help:    "Latency of dials to origins, resolution included.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 4, 10),
		}),
		DNSQueries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "arcfence_dns_queries_total",
			Help: "DNS filter answers by rcode.",
		}, []string{"rcode"}),
		Reloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "arcfence_config_reloads_total",
			Help: "Config reloads by result (ok, failed).",
		}, []string{"result"}),
		ConfigInfo: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "arcfence_config_info",
			Help: "1 for the hash of the running configuration.",
		}, []string{"hash"}),
		ConfigLoadTime: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "arcfence_config_loaded_timestamp_seconds",
			Help: "Unix time the running configuration was loaded.",
		}),
		ConfigReloadOK: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "arcfence_config_last_reload_ok",
			Help: "1 when the last reload succeeded or none was tried, 0 after a failed one.",
		}),
		RefusalLines: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "arcfence_refusal_log_lines_total",
			Help: "Refusal log lines written, by kind (first, summary, unitemized).",
		}, []string{"kind"}),
		LearnedDestinations: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "arcfence_learned_destinations",
			Help: "Would-be-refused destinations kept by learn mode (/learned).",
		}),
		Ready: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "arcfence_ready",
			Help: "1 when listeners are up, a policy is loaded and the last reload succeeded.",
		}),
		MaxTunnels: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "arcfence_tunnels_max",
			Help: "The running limits.max_tunnels; 0 means no limit.",
		}),
		DialErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "arcfence_dial_errors_total",
			Help: "Failed dials to origins by the status answered (502, 504).",
		}, []string{"status"}),
		DNSUpstreamErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "arcfence_dns_upstream_errors_total",
			Help: "Failed exchanges with DNS upstreams (timeout, refused, reset, bad answer) by upstream and proto.",
		}, []string{"upstream", "proto"}),
	}
	m.ConfigReloadOK.Set(1)
	// Label values known in advance start at 0, so that the first event is
	// an increase Prometheus sees (rate and increase ignore a series'
	// first sample): alerts on first refusals, failed reloads and dial
	// errors then fire on the first one.
	for _, kind := range []string{"first", "summary", "unitemized"} {
		m.RefusalLines.WithLabelValues(kind)
	}
	for _, result := range []string{"ok", "failed"} {
		m.Reloads.WithLabelValues(result)
	}
	for _, status := range []string{"502", "504"} {
		m.DialErrors.WithLabelValues(status)
	}
	reg.MustRegister(m.Decisions, m.ActiveTunnels, m.TunnelBytes, m.TunnelDuration, m.DialLatency,
		m.DNSQueries, m.Reloads, m.ConfigInfo, m.ConfigLoadTime, m.ConfigReloadOK,
		m.RefusalLines, m.LearnedDestinations, m.Ready, m.MaxTunnels, m.DialErrors, m.DNSUpstreamErrors,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

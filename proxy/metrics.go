package proxy

import (
	"strconv"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/arcfence/arcfence/internal/audit"
	"github.com/arcfence/arcfence/internal/metrics"
	"github.com/arcfence/arcfence/policy"
)

// metricSet caches the proxy's collector children so that the hot path does
// no label hashing and no allocation: decision counters are created on first
// use and then loaded from a fixed table.
type metricSet struct {
	m          *metrics.Metrics
	bytesUp    prometheus.Counter
	bytesDown  prometheus.Counter
	offerings  map[string]int // offering -> column; "" is column 0
	components string
}

// decisionCounters are one profile's decision counters, created on first
// use (the profile label is bounded: names come from the config).
type decisionCounters struct {
	profile string
	c       [2][numReasonSlots][]atomic.Pointer[prometheus.Counter]
}

// newDecisionCounters returns the empty counter table of profile.
func newDecisionCounters(profile string) *decisionCounters {
	dc := &decisionCounters{profile: profile}
	for v := range dc.c {
		for r := range dc.c[v] {
			dc.c[v][r] = make([]atomic.Pointer[prometheus.Counter], len(policy.Offerings())+1)
		}
	}
	return dc
}

// numReasonSlots covers every policy.Reason value.
const numReasonSlots = 32

func newMetricSet(m *metrics.Metrics) *metricSet {
	ms := &metricSet{
		m:          m,
		bytesUp:    m.TunnelBytes.WithLabelValues("up"),
		bytesDown:  m.TunnelBytes.WithLabelValues("down"),
		offerings:  map[string]int{"": 0},
		components: audit.ComponentProxy,
	}
	for i, o := range policy.Offerings() {
		ms.offerings[o] = i + 1
	}
	return ms
}

// decision counts one decision of the proxy, made with dc's profile.
func (ms *metricSet) decision(dc *decisionCounters, allowed bool, r policy.Reason, offering string) {
	v := 0
	if allowed {
		v = 1
	}
	col, ok := ms.offerings[offering]
	if !ok || int(r) >= numReasonSlots {
		ms.m.Decisions.WithLabelValues(verdictName(allowed), r.String(), offering, ms.components, dc.profile).Inc()
		return
	}
	slot := &dc.c[v][r][col]
	c := slot.Load()
	if c == nil {
		cc := ms.m.Decisions.WithLabelValues(verdictName(allowed), r.String(), offering, ms.components, dc.profile)
		slot.CompareAndSwap(nil, &cc)
		c = slot.Load()
	}
	(*c).Inc()
}

func verdictName(allowed bool) string {
	if allowed {
		return policy.Allow.String()
	}
	return policy.Deny.String()
}

func (ms *metricSet) addBytes(up bool, n int64) {
	if n <= 0 {
		return
	}
	if up {
		ms.bytesUp.Add(float64(n))
	} else {
		ms.bytesDown.Add(float64(n))
	}
}

func (ms *metricSet) tunnelOpened() { ms.m.ActiveTunnels.Inc() }

func (ms *metricSet) tunnelClosed(d time.Duration) {
	ms.m.ActiveTunnels.Dec()
	ms.m.TunnelDuration.Observe(d.Seconds())
}

func (ms *metricSet) dialed(d time.Duration) { ms.m.DialLatency.Observe(d.Seconds()) }

// dialFailed counts a failed dial answered with status (502 or 504).
func (ms *metricSet) dialFailed(status int) {
	ms.m.DialErrors.WithLabelValues(strconv.Itoa(status)).Inc()
}

// settingsApplied publishes the limits of st, the settings now running.
func (ms *metricSet) settingsApplied(st *settings) { ms.m.MaxTunnels.Set(float64(st.maxTunnels)) }

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
	decisions  [2][numReasonSlots][]atomic.Pointer[prometheus.Counter]
	components string
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
	for v := range ms.decisions {
		for r := range ms.decisions[v] {
			ms.decisions[v][r] = make([]atomic.Pointer[prometheus.Counter], len(ms.offerings))
		}
	}
	return ms
}

// decision counts one decision of the proxy.
func (ms *metricSet) decision(allowed bool, r policy.Reason, offering string) {
	v := 0
	if allowed {
		v = 1
	}
	col, ok := ms.offerings[offering]
	if !ok || int(r) >= numReasonSlots {
		ms.m.Decisions.WithLabelValues(verdictName(allowed), r.String(), offering, ms.components).Inc()
		return
	}
	slot := &ms.decisions[v][r][col]
	c := slot.Load()
	if c == nil {
		cc := ms.m.Decisions.WithLabelValues(verdictName(allowed), r.String(), offering, ms.components)
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

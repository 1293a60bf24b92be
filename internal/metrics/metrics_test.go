package metrics

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

// TestKnownLabelsStartAtZero: the series that alerts take increase() of
// exist at 0 from the start, so Prometheus sees the first event as an
// increase rather than as a new series whose first sample is ignored.
func TestKnownLabelsStartAtZero(t *testing.T) {
	m := New()
	mfs, err := m.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	have := map[string]map[string]float64{}
	for _, mf := range mfs {
		for _, s := range mf.GetMetric() {
			for _, l := range s.GetLabel() {
				if have[mf.GetName()] == nil {
					have[mf.GetName()] = map[string]float64{}
				}
				have[mf.GetName()][l.GetName()+"="+l.GetValue()] = s.GetCounter().GetValue()
			}
		}
	}
	for name, labels := range map[string][]string{
		"arcfence_refusal_log_lines_total": {"kind=first", "kind=summary", "kind=unitemized"},
		"arcfence_config_reloads_total":    {"result=ok", "result=failed"},
		"arcfence_dial_errors_total":       {"status=502", "status=504"},
	} {
		for _, l := range labels {
			v, ok := have[name][l]
			if !ok || v != 0 {
				t.Errorf("%s{%s}: present %v, value %v; want present at 0", name, l, ok, v)
			}
		}
	}
	if got := testutil.ToFloat64(m.ConfigReloadOK); got != 1 {
		t.Errorf("arcfence_config_last_reload_ok starts at %v, want 1", got)
	}
}

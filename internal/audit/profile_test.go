package audit

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/arcfence/arcfence/policy"
)

// TestProfileOnLines: a refusal's profile is on its line and in /learned,
// is part of the folding key, and the hint is asked for that profile.
func TestProfileOnLines(t *testing.T) {
	var buf bytes.Buffer
	hint := func(profile string, _ policy.Dest) policy.Hint { return policy.Hint{Offering: "for-" + profile} }
	l := NewWithOptions(newLogger(&buf), Options{FoldWindow: time.Minute, Hint: hint})
	for _, p := range []string{"cluster", "default", "cluster"} {
		l.Refused(Event{Component: ComponentProxy, Client: "10.0.0.1", Host: "x.example", Port: 443,
			Reason: policy.NotInAllowlist, Mode: "learn", Profile: p, Proceeded: true})
	}
	l.Close()
	var first []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatal(err)
		}
		if m["summary"] == nil {
			first = append(first, m)
		}
	}
	if len(first) != 2 {
		t.Fatalf("want one first line per profile (the profile folds apart), got %d:\n%s", len(first), buf.String())
	}
	for _, m := range first {
		if m["offering_hint"] != "for-"+m["profile"].(string) {
			t.Errorf("line of profile %v hints %v", m["profile"], m["offering_hint"])
		}
	}
	got := map[string]bool{}
	for _, d := range l.Learned().Destinations {
		got[d.Profile] = true
	}
	if !got["cluster"] || !got["default"] || len(got) != 2 {
		t.Errorf("learned profiles %v, want cluster and default", got)
	}
}

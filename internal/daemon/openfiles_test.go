//go:build unix

package daemon

import (
	"bytes"
	"strings"
	"testing"

	"github.com/rs/zerolog"

	"github.com/arcfence/arcfence/internal/platform"
)

// TestFitFileLimit: a limits.max_tunnels the open-files limit cannot hold
// is lowered for the run; the user who set it gets a warning, the one who
// left the default one info line at start (issue 17: a quiet first run),
// and a limit that fits is kept without a word.
func TestFitFileLimit(t *testing.T) {
	cur, ok := platform.OpenFilesLimit()
	if !ok || cur <= 2*filesReserve {
		t.Skipf("open-files limit %d: too low to fit anything", cur)
	}
	fit := int((cur - filesReserve) / 2)
	for _, tc := range []struct {
		name       string
		max        int
		set, start bool
		want       int
		level      string // "" = no line
	}{
		{"fits", fit, true, true, fit, ""},
		{"set by the user", fit + 1, true, true, fit, "warn"},
		{"set by the user, at reload", fit + 1, true, false, fit, "warn"},
		{"the default", fit + 1, false, true, fit, "info"},
		{"the default, at reload", fit + 1, false, false, fit, ""},
		{"0 = no limit of its own", 0, true, true, fit, "info"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var buf bytes.Buffer
			got := fitFileLimit(zerolog.New(&buf), tc.max, tc.set, tc.start)
			if got != tc.want {
				t.Errorf("max_tunnels %d, want %d", got, tc.want)
			}
			out := buf.String()
			switch {
			case tc.level == "" && out != "":
				t.Errorf("unexpected line %s", out)
			case tc.level != "" && !strings.Contains(out, `"level":"`+tc.level+`"`):
				t.Errorf("line %q, want level %s", out, tc.level)
			}
		})
	}
}

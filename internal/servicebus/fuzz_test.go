package servicebus

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/arcfence/arcfence/policy"
)

// FuzzParse: Parse never panics, and what it accepts is a sorted list of
// distinct, normalized names inside servicebus.windows.net that survives a
// Marshal/Parse round trip.
func FuzzParse(f *testing.F) {
	files, _ := filepath.Glob(filepath.Join("testdata", "*"))
	for _, name := range files {
		if b, err := os.ReadFile(name); err == nil {
			f.Add(b)
		}
	}
	f.Add([]byte(`["A.servicebus.windows.net.", "a.servicebus.windows.net"]`))
	f.Add([]byte(`["https://x.servicebus.windows.net/", "wss://y.servicebus.windows.net:443"]`))
	f.Add([]byte("\xef\xbb\xbf[\"z.servicebus.windows.net\"]"))
	f.Fuzz(func(t *testing.T, data []byte) {
		names, err := Parse(data)
		if err != nil {
			if names != nil {
				t.Fatalf("names %v with error %v", names, err)
			}
			return
		}
		if len(names) == 0 || !slices.IsSorted(names) || len(slices.Compact(slices.Clone(names))) != len(names) {
			t.Fatalf("names not sorted, distinct and non-empty: %q", names)
		}
		for _, n := range names {
			h, ok := policy.NormalizeHost(n)
			if !ok || h != n || !strings.HasSuffix(n, "."+Zone) {
				t.Fatalf("accepted %q", n)
			}
		}
		again, err := Parse(Marshal(names))
		if err != nil || !slices.Equal(again, names) {
			t.Fatalf("round trip: %q, %v; want %q", again, err, names)
		}
	})
}

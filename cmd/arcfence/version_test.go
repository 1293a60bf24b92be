package main

import (
	"runtime"
	"strings"
	"testing"
)

// TestVersionStamped: the values a release build stamps with -ldflags -X
// are what `arcfence version` prints, with the Go version it was built with.
func TestVersionStamped(t *testing.T) {
	saved := [3]string{version, commit, date}
	t.Cleanup(func() { version, commit, date = saved[0], saved[1], saved[2] })
	version, commit, date = "v9.8.7-3-gabcdef0", "abcdef012345", "2026-12-03T08:00:00Z"

	out, err := run(t, "version")
	if err != nil {
		t.Fatal(err)
	}
	want := "arcfence v9.8.7-3-gabcdef0 (commit abcdef012345, date 2026-12-03T08:00:00Z, " + runtime.Version() + ")\n"
	if out != want {
		t.Fatalf("version printed %q; want %q", out, want)
	}
}

// TestVersionUnstamped: a build without -ldflags still names every field,
// never an empty one.
func TestVersionUnstamped(t *testing.T) {
	saved := [3]string{version, commit, date}
	t.Cleanup(func() { version, commit, date = saved[0], saved[1], saved[2] })
	version, commit, date = "", "", ""

	v, c, d, g := buildInfo()
	for name, s := range map[string]string{"version": v, "commit": c, "date": d, "go": g} {
		if strings.TrimSpace(s) == "" {
			t.Errorf("%s is empty", name)
		}
	}
}

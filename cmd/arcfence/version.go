package main

import (
	"runtime"
	"runtime/debug"
)

// Set by release builds (scripts/release.sh) with
//
//	-ldflags "-X main.version=v1.2.3 -X main.commit=0123456789ab -X main.date=2026-12-03T08:00:00Z"
//
// version from `git describe`, commit the short hash, date the commit's
// time in UTC (not the build's: two builds of one commit are identical).
var (
	version = ""
	commit  = ""
	date    = ""
)

// buildInfo returns the version, commit, commit date and Go version of
// this binary, falling back on the module and VCS data Go embeds (a
// `go install` or a plain build), then on "(devel)" and "unknown".
func buildInfo() (ver, rev, when, goVersion string) {
	ver, rev, when = version, commit, date
	if bi, ok := debug.ReadBuildInfo(); ok {
		if ver == "" && bi.Main.Version != "" {
			ver = bi.Main.Version
		}
		for _, s := range bi.Settings {
			switch {
			case s.Key == "vcs.revision" && rev == "":
				rev = s.Value
				if len(rev) > 12 {
					rev = rev[:12]
				}
			case s.Key == "vcs.time" && when == "":
				when = s.Value
			}
		}
	}
	if ver == "" {
		ver = "(devel)"
	}
	if rev == "" {
		rev = "unknown"
	}
	if when == "" {
		when = "unknown"
	}
	return ver, rev, when, runtime.Version()
}

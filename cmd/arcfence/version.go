package main

import (
	"runtime"
	"runtime/debug"
)

// Set with -ldflags "-X main.version=... -X main.commit=..." by release builds.
var (
	version = ""
	commit  = ""
)

// buildInfo returns the version, commit and Go version of this binary,
// falling back on the module and VCS data Go embeds.
func buildInfo() (ver, rev, goVersion string) {
	ver, rev = version, commit
	if bi, ok := debug.ReadBuildInfo(); ok {
		if ver == "" && bi.Main.Version != "" {
			ver = bi.Main.Version
		}
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" && rev == "" {
				rev = s.Value
				if len(rev) > 12 {
					rev = rev[:12]
				}
			}
		}
	}
	if ver == "" {
		ver = "(devel)"
	}
	if rev == "" {
		rev = "unknown"
	}
	return ver, rev, runtime.Version()
}

package proxy

import (
	"runtime"
	"testing"
)

// TestCopyPath: the copy path the daemon reports at start is the one the
// tunnels use — splice exactly where this build splices (Linux), the
// portable copy elsewhere.
func TestCopyPath(t *testing.T) {
	want := "copy"
	if spliceSupported {
		want = "splice"
	}
	if got := CopyPath(); got != want {
		t.Fatalf("CopyPath() = %q with spliceSupported %v; want %q", got, spliceSupported, want)
	}
	if (runtime.GOOS == "linux") != spliceSupported {
		t.Fatalf("spliceSupported = %v on %s; want it exactly on linux", spliceSupported, runtime.GOOS)
	}
}

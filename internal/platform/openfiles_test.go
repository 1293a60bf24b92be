package platform

import (
	"os"
	"runtime"
	"testing"
)

// TestOpenFilesLimit: on Unix the limit is readable and admits the
// descriptors this process already holds (stdin, stdout, stderr and a
// freshly opened file); elsewhere it reports that there is no limit to read.
func TestOpenFilesLimit(t *testing.T) {
	cur, ok := OpenFilesLimit()
	if runtime.GOOS == "windows" {
		if ok {
			t.Fatalf("OpenFilesLimit() = %d, true on windows; want ok false", cur)
		}
		return
	}
	if !ok {
		t.Fatal("OpenFilesLimit() not ok on a Unix system")
	}
	f, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if cur <= uint64(f.Fd()) {
		t.Fatalf("limit %d, yet descriptor %d is open", cur, f.Fd())
	}
}

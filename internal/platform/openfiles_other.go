//go:build !unix

package platform

// OpenFilesLimit returns ok false: this system has no per-process
// descriptor limit to read (Windows handles are limited by memory only).
func OpenFilesLimit() (cur uint64, ok bool) { return 0, false }

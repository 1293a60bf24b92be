//go:build !unix

package daemon

// openFilesLimit reports no limit where the platform has no RLIMIT_NOFILE.
func openFilesLimit() (uint64, bool) { return 0, false }

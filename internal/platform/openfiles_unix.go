//go:build unix

package platform

import "syscall"

// OpenFilesLimit returns the process's soft limit on open file descriptors
// (RLIMIT_NOFILE). ok is false when the limit cannot be read. Go raises the
// soft limit to the hard one at start, so this is the limit in force.
func OpenFilesLimit() (cur uint64, ok bool) {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		return 0, false
	}
	return uint64(rl.Cur), true
}

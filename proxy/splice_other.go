//go:build !linux

package proxy

import (
	"errors"
	"net"
	"time"
)

// pipePool is a stub where splice(2) does not exist.
type pipePool struct{}

func (pp *pipePool) close() {}

// splicer is a stub where splice(2) does not exist.
type splicer struct{}

var errSpliceUnsupported = errors.New("splice not supported")

func (s *splicer) init(*pipePool, *net.TCPConn, *net.TCPConn) error {
	return errSpliceUnsupported
}

func (s *splicer) step() (int64, bool, error) { return 0, false, errSpliceUnsupported }

func (s *splicer) release() {}

func (s *splicer) writeTimeout(*net.TCPConn, time.Duration) {}

func (s *splicer) writeTimedOut() bool { return false }

const spliceSupported = false

// CopyPath names how this build relays tunnel bytes between two TCP
// sockets: "splice" (zero-copy, splice(2)) on Linux, "copy" (a user-space
// buffer) elsewhere. The daemon logs it at start.
func CopyPath() string { return "copy" }

// connReset is false where the TCP state cannot be read.
func connReset(net.Conn) bool { return false }

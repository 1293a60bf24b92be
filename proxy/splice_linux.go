//go:build linux

package proxy

import (
	"errors"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"
)

// Zero-copy relaying between two TCP sockets with splice(2).
//
// Go's own io.Copy between two *net.TCPConn splices too, but it holds a pipe
// (two descriptors) for as long as the copy blocks waiting for data: an idle
// tunnel then costs six descriptors. Here a direction waits for readability
// without a pipe (syscall.RawConn.Read), takes a pipe from a small pool while
// data flows, and gives it back as soon as the socket would block, so an idle
// tunnel holds only its two sockets.

const (
	spliceMove     = 0x1 // SPLICE_F_MOVE
	spliceNonblock = 0x2 // SPLICE_F_NONBLOCK
	// maxSplice is the most one splice(2) call moves; the pipe is sized to it.
	maxSplice = 1 << 20
	// maxIdlePipes bounds the pipes kept for reuse. Each counts as 1 MiB
	// against the user's pipe allowance (fs.pipe-user-pages-soft, 64 MiB by
	// default, shared by the user's processes), so only a few are kept.
	maxIdlePipes = 16
)

// pipe is a pipe used as splice's kernel buffer.
type pipe struct {
	r, w int
}

// pipePool reuses pipes. It is safe for concurrent use.
type pipePool struct {
	mu     sync.Mutex
	free   []*pipe
	closed bool
	// bulk counts the directions moving bulk data right now (see splicer.bulk).
	bulk atomic.Int32
}

func (pp *pipePool) get() (*pipe, error) {
	pp.mu.Lock()
	if n := len(pp.free); n > 0 {
		p := pp.free[n-1]
		pp.free = pp.free[:n-1]
		pp.mu.Unlock()
		return p, nil
	}
	pp.mu.Unlock()
	var fds [2]int
	if err := syscall.Pipe2(fds[:], syscall.O_CLOEXEC|syscall.O_NONBLOCK); err != nil {
		return nil, err
	}
	// A larger pipe moves more per call; a smaller one (when the limit is
	// lower) still works.
	_, _ = fcntl(fds[1], syscall.F_SETPIPE_SZ, maxSplice)
	return &pipe{r: fds[0], w: fds[1]}, nil
}

// put returns an empty pipe for reuse (or closes it when the pool is full).
func (pp *pipePool) put(p *pipe) {
	pp.mu.Lock()
	if !pp.closed && len(pp.free) < maxIdlePipes {
		pp.free = append(pp.free, p)
		pp.mu.Unlock()
		return
	}
	pp.mu.Unlock()
	p.close()
}

// close closes the pooled pipes; later puts close their pipe.
func (pp *pipePool) close() {
	pp.mu.Lock()
	free := pp.free
	pp.free, pp.closed = nil, true
	pp.mu.Unlock()
	for _, p := range free {
		p.close()
	}
}

func (p *pipe) close() {
	_ = syscall.Close(p.r)
	_ = syscall.Close(p.w)
}

func fcntl(fd, cmd, arg int) (int, error) {
	r, _, e := syscall.Syscall(syscall.SYS_FCNTL, uintptr(fd), uintptr(cmd), uintptr(arg))
	if e != 0 {
		return 0, e
	}
	return int(r), nil
}

// splice moves up to n bytes from rfd to wfd without blocking. Both ends
// are non-blocking (the sockets are, the pipe is opened O_NONBLOCK, and
// SPLICE_F_NONBLOCK is set), so the call only costs CPU like user code.
//
// With raw set it is a raw system call, without the runtime's syscall
// bookkeeping: with syscall.Splice a long splice (a 1 MiB pump takes
// hundreds of microseconds) lets sysmon hand the P to another thread, which
// wakes, spins and sleeps again, and the splice's return has to get a P
// back — futex, nanosleep and epoll calls and context switches on every
// chunk. But a raw call keeps its P: when several directions move bulk data
// at once, the others' ready goroutines (and the poller) wait behind it, and
// 8 busy tunnels moved ~15% less. So raw is used while at most one
// direction moves bulk data (see splicer.bulk), and for chunks too small to
// be retaken.
func splice(rfd, wfd, n int, raw bool) (int, error) {
	var r uintptr
	var e syscall.Errno
	if raw {
		r, _, e = syscall.RawSyscall6(syscall.SYS_SPLICE, uintptr(rfd), 0, uintptr(wfd), 0, uintptr(n), spliceMove|spliceNonblock)
	} else {
		r, _, e = syscall.Syscall6(syscall.SYS_SPLICE, uintptr(rfd), 0, uintptr(wfd), 0, uintptr(n), spliceMove|spliceNonblock)
	}
	if e != 0 {
		return int(r), e
	}
	return int(r), nil
}

// bulkChunk is the chunk size from which a direction counts as moving bulk
// data; smaller pumps are short enough to be raw system calls always.
const bulkChunk = 256 << 10

// splicer moves one direction of a tunnel between two TCP sockets. Its
// callbacks are method values made once, so the loop does not allocate.
//
// The drain callback runs inside syscall.RawConn.Read: when the source has
// nothing to read it gives its pipe back and returns false, and RawConn.Read
// then parks the goroutine on the poller until the socket is readable,
// holding no pipe. (Parking after our own EAGAIN, without a readiness reset
// in between, is what makes this free of lost wake-ups.)
type splicer struct {
	pool     *pipePool
	src, dst syscall.RawConn

	pipe   *pipe
	inPipe int // bytes in the pipe
	// bulk is set from a chunk of bulkChunk bytes until the source would
	// block (or the splicer ends); pool.bulk counts the bulk splicers.
	bulk  bool
	n     int   // result of the last splice
	err   error // error of the last splice
	moved bool  // anything moved yet

	drainFn, pumpFn func(uintptr) bool

	dstConn *net.TCPConn  // set by writeTimeout
	writeTO time.Duration // bound on one pump; 0 = none
	pumpTO  bool          // the last pump hit writeTO
}

// writeTimeout bounds each pump into dst to d.
func (s *splicer) writeTimeout(dst *net.TCPConn, d time.Duration) {
	s.dstConn, s.writeTO = dst, d
}

// writeTimedOut reports whether the last step failed because the
// destination took nothing for the write timeout.
func (s *splicer) writeTimedOut() bool { return s.pumpTO }

// init readies s to move src to dst. s lives in its tunnel (no allocation
// of its own); only its two method values are made here.
func (s *splicer) init(pool *pipePool, src, dst *net.TCPConn) error {
	rs, err := src.SyscallConn()
	if err != nil {
		return err
	}
	ws, err := dst.SyscallConn()
	if err != nil {
		return err
	}
	*s = splicer{pool: pool, src: rs, dst: ws}
	s.drainFn, s.pumpFn = s.drain, s.pump
	return nil
}

// drain moves what the source socket holds into the pipe; with nothing to
// read it releases the pipe and asks to wait.
func (s *splicer) drain(fd uintptr) bool {
	for {
		if s.pipe == nil {
			p, err := s.pool.get()
			if err != nil {
				s.err = err
				return true
			}
			s.pipe = p
		}
		n, err := splice(int(fd), s.pipe.w, maxSplice, s.raw())
		if err == syscall.EINTR {
			continue
		}
		if err == syscall.EAGAIN {
			// The pipe is empty here: pump emptied it.
			s.pool.put(s.pipe)
			s.pipe = nil
			s.setBulk(false)
			return false
		}
		s.n, s.err = int(n), err
		return true
	}
}

// pump moves the pipe's bytes to the destination socket, waiting for it to
// be writable when it is full.
func (s *splicer) pump(fd uintptr) bool {
	for s.inPipe > 0 {
		n, err := splice(s.pipe.r, int(fd), s.inPipe, s.inPipe < bulkChunk || s.raw())
		if err == syscall.EINTR {
			continue
		}
		if err == syscall.EAGAIN {
			return false
		}
		if err != nil {
			s.err = err
			return true
		}
		s.inPipe -= int(n)
		s.n += int(n)
	}
	return true
}

// raw reports whether a splice that may be long is made as a raw system
// call: when no other direction moves bulk data.
func (s *splicer) raw() bool {
	n := s.pool.bulk.Load()
	if s.bulk {
		n--
	}
	return n <= 0
}

// setBulk marks the splicer as moving bulk data, or not.
func (s *splicer) setBulk(on bool) {
	if s.bulk == on {
		return
	}
	s.bulk = on
	if on {
		s.pool.bulk.Add(1)
	} else {
		s.pool.bulk.Add(-1)
	}
}

// errSpliceUnsupported means the sockets cannot be spliced; nothing was moved.
var errSpliceUnsupported = errors.New("splice not supported")

// step waits until the source is readable and moves one chunk (what the
// socket held, up to maxSplice) to the destination. It returns the bytes
// moved, whether the source reached EOF, and the error: a wait error
// (deadline, closed socket) as is.
func (s *splicer) step() (moved int64, eof bool, err error) {
	s.n, s.err = 0, nil
	if err := s.src.Read(s.drainFn); err != nil {
		return 0, false, err
	}
	switch {
	case s.err == syscall.EINVAL && !s.moved:
		return 0, false, errSpliceUnsupported
	case s.err != nil:
		return 0, false, s.err
	case s.n == 0:
		return 0, true, nil
	}
	s.inPipe, s.n = s.n, 0
	if s.inPipe >= bulkChunk {
		s.setBulk(true)
	}
	if s.writeTO > 0 {
		_ = s.dstConn.SetWriteDeadline(time.Now().Add(s.writeTO))
	}
	err = s.dst.Write(s.pumpFn)
	s.pumpTO = s.writeTO > 0 && errors.Is(err, os.ErrDeadlineExceeded)
	moved = int64(s.n)
	s.moved = true
	if err == nil {
		err = s.err
	}
	return moved, false, err
}

// release gives back or closes the pipe still held.
func (s *splicer) release() {
	s.setBulk(false)
	if s.pipe == nil {
		return
	}
	if s.inPipe == 0 {
		s.pool.put(s.pipe)
	} else {
		s.pipe.close()
	}
	s.pipe, s.inPipe = nil, 0
}

// spliceSupported reports whether this build can splice.
const spliceSupported = true

// CopyPath names how this build relays tunnel bytes between two TCP
// sockets: "splice" (zero-copy, splice(2)) on Linux, "copy" (a user-space
// buffer) elsewhere. The daemon logs it at start.
func CopyPath() string { return "splice" }

// connReset reports whether c is a TCP connection the peer has reset (its
// state is CLOSE). A peer that only half-closed (CLOSE_WAIT) is alive.
// It reads the state without consuming anything and without the
// connection's read lock, so a goroutine blocked reading c is no obstacle.
func connReset(c net.Conn) bool {
	tc, ok := c.(*net.TCPConn)
	if !ok {
		return false
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		return false
	}
	const tcpClose = 7 // TCP_CLOSE in include/net/tcp_states.h
	closed := false
	_ = rc.Control(func(fd uintptr) {
		var info [8]byte // struct tcp_info begins with u8 tcpi_state
		size := uint32(len(info))
		_, _, e := syscall.Syscall6(syscall.SYS_GETSOCKOPT, fd, syscall.IPPROTO_TCP, syscall.TCP_INFO,
			uintptr(unsafe.Pointer(&info[0])), uintptr(unsafe.Pointer(&size)), 0)
		closed = e == 0 && info[0] == tcpClose
	})
	return closed
}

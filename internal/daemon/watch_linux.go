package daemon

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"unsafe"
)

// inotifyWatcher is the Linux dirWatcher, on inotify directly: it needs
// IN_CLOSE_WRITE (a file written in place is complete when its writer
// closes it), which fsnotify does not export.
type inotifyWatcher struct {
	f    *os.File // the inotify descriptor, non-blocking, on the poller
	mu   sync.Mutex
	dirs map[int32]string // watch descriptor -> directory
	evc  chan fileEvent
	errc chan error
	stop chan struct{} // closed by close: read stops sending
	done chan struct{} // closed when read has returned
}

// inotifyMask is what a watched directory reports.
const inotifyMask = syscall.IN_CLOSE_WRITE | syscall.IN_MOVED_TO | syscall.IN_MOVED_FROM |
	syscall.IN_CREATE | syscall.IN_DELETE | syscall.IN_DELETE_SELF | syscall.IN_MOVE_SELF

func newDirWatcher() (dirWatcher, error) {
	fd, err := syscall.InotifyInit1(syscall.IN_CLOEXEC | syscall.IN_NONBLOCK)
	if err != nil {
		return nil, fmt.Errorf("inotify: %w", err)
	}
	w := &inotifyWatcher{
		f:    os.NewFile(uintptr(fd), "inotify"),
		dirs: map[int32]string{},
		evc:  make(chan fileEvent, 64),
		errc: make(chan error, 1),
		stop: make(chan struct{}),
		done: make(chan struct{}),
	}
	go w.read()
	return w, nil
}

func (w *inotifyWatcher) add(dir string) error {
	sc, err := w.f.SyscallConn()
	if err != nil {
		return err
	}
	var wd int
	var aerr error
	if err := sc.Control(func(fd uintptr) { wd, aerr = syscall.InotifyAddWatch(int(fd), dir, inotifyMask) }); err != nil {
		return err
	}
	if aerr != nil {
		return fmt.Errorf("inotify watch %s: %w", dir, aerr)
	}
	w.mu.Lock()
	w.dirs[int32(wd)] = dir
	w.mu.Unlock()
	return nil
}

func (w *inotifyWatcher) events() <-chan fileEvent { return w.evc }
func (w *inotifyWatcher) errors() <-chan error     { return w.errc }

func (w *inotifyWatcher) close() {
	close(w.stop)
	w.f.Close() // ends read's blocked Read
	<-w.done
}

// read turns the descriptor's records into fileEvents until it is closed.
func (w *inotifyWatcher) read() {
	defer close(w.done)
	defer close(w.evc)
	buf := make([]byte, 64<<10)
	for {
		n, err := w.f.Read(buf)
		if err != nil {
			if !errors.Is(err, os.ErrClosed) {
				select {
				case w.errc <- err:
				default:
				}
			}
			return
		}
		for off := 0; off+syscall.SizeofInotifyEvent <= n; {
			raw := (*syscall.InotifyEvent)(unsafe.Pointer(&buf[off]))
			end := off + syscall.SizeofInotifyEvent + int(raw.Len)
			if end > n {
				break
			}
			name := buf[off+syscall.SizeofInotifyEvent : end]
			if i := bytes.IndexByte(name, 0); i >= 0 {
				name = name[:i]
			}
			w.mu.Lock()
			dir := w.dirs[raw.Wd]
			w.mu.Unlock()
			off = end
			if dir == "" {
				continue
			}
			path := filepath.Join(dir, string(name))
			var complete bool
			switch {
			case raw.Mask&(syscall.IN_CLOSE_WRITE|syscall.IN_MOVED_TO|syscall.IN_MOVED_FROM|syscall.IN_DELETE) != 0:
				complete = true
			case raw.Mask&syscall.IN_CREATE != 0:
				// A new regular file is complete at its close; a symlink
				// has no close.
				complete = isSymlink(path)
			}
			select {
			case w.evc <- fileEvent{name: path, complete: complete}:
			case <-w.stop:
				return
			}
		}
	}
}

// isSymlink reports whether name is a symbolic link now.
func isSymlink(name string) bool {
	fi, err := os.Lstat(name)
	return err == nil && fi.Mode()&os.ModeSymlink != 0
}

package daemon

import (
	"path/filepath"
	"time"

	"github.com/rs/zerolog"
)

// reloadSettle is how long file events must settle before a reload (an
// editor's save is several events).
const reloadSettle = 250 * time.Millisecond

// fileEvent is one event of a watched directory, as the platform's watcher
// reports it.
type fileEvent struct {
	// name is the path of the entry the event is about.
	name string
	// complete is true when the event ends a change: the file was closed
	// after writing, renamed into place, created as a symlink, removed. A
	// write to a file still open (an in-place write in progress) is not.
	complete bool
}

// dirWatcher watches directories for fileEvents.
type dirWatcher interface {
	add(dir string) error
	events() <-chan fileEvent
	errors() <-chan error
	close()
}

// watch reports complete changes of the config file. It watches the file's
// directory, as editors and config managers replace files by renaming, and
// the directory of the file the path resolves to: a Kubernetes ConfigMap
// volume swaps a "..data" symlink and never touches the path itself, so any
// event that changes where the path leads counts as a change. A file being
// written in place counts when the writer closes it (where the platform
// says so: Linux), never while it grows. Events are coalesced until they
// settle.
func watch(file string, log zerolog.Logger) (<-chan struct{}, func()) {
	out := make(chan struct{}, 1)
	if file == "" {
		return out, func() {}
	}
	abs, err := filepath.Abs(file)
	if err != nil {
		abs = file
	}
	w, err := newDirWatcher()
	if err == nil {
		if err = w.add(filepath.Dir(abs)); err != nil {
			w.close()
		}
	}
	if err != nil {
		log.Warn().Str("error", err.Error()).Str("msg", "cannot watch the config file; reload with SIGHUP").Send()
		return out, func() {}
	}
	resolved, _ := filepath.EvalSymlinks(abs)
	if resolved != "" && filepath.Dir(resolved) != filepath.Dir(abs) {
		_ = w.add(filepath.Dir(resolved))
	}
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		timer := time.NewTimer(time.Hour)
		timer.Stop()
		defer timer.Stop()
		for {
			select {
			case <-stop:
				return
			case ev, ok := <-w.events():
				if !ok {
					return
				}
				name := filepath.Clean(ev.name)
				now, _ := filepath.EvalSymlinks(abs)
				moved := now != resolved
				if moved {
					if now != "" && filepath.Dir(now) != filepath.Dir(abs) {
						_ = w.add(filepath.Dir(now))
					}
					resolved = now
				}
				if moved || (ev.complete && (name == abs || name == resolved)) {
					timer.Reset(reloadSettle)
				}
			case err, ok := <-w.errors():
				if !ok {
					return
				}
				log.Warn().Str("error", err.Error()).Str("msg", "config file watch").Send()
			case <-timer.C:
				select {
				case out <- struct{}{}:
				default:
				}
			}
		}
	}()
	return out, func() {
		close(stop)
		w.close()
		<-done
	}
}

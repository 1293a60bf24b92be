//go:build !linux

package daemon

import (
	"github.com/fsnotify/fsnotify"
)

// fsnotifyWatcher is the dirWatcher where inotify is not available. The
// platforms' watchers do not report a writer's close, so a write counts as
// complete (after the settle time), as an editor's atomic replace does.
type fsnotifyWatcher struct {
	w    *fsnotify.Watcher
	evc  chan fileEvent
	stop chan struct{}
	done chan struct{}
}

func newDirWatcher() (dirWatcher, error) {
	fw, err := fsnotify.NewWatcher()
	if err != nil {
		return nil, err
	}
	w := &fsnotifyWatcher{w: fw, evc: make(chan fileEvent, 64), stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(w.done)
		defer close(w.evc)
		for ev := range fw.Events {
			if ev.Op&(fsnotify.Write|fsnotify.Create|fsnotify.Rename|fsnotify.Remove) == 0 {
				continue
			}
			select {
			case w.evc <- fileEvent{name: ev.Name, complete: true}:
			case <-w.stop:
				return
			}
		}
	}()
	return w, nil
}

func (w *fsnotifyWatcher) add(dir string) error     { return w.w.Add(dir) }
func (w *fsnotifyWatcher) events() <-chan fileEvent { return w.evc }
func (w *fsnotifyWatcher) errors() <-chan error     { return w.w.Errors }
func (w *fsnotifyWatcher) close() {
	close(w.stop)
	w.w.Close()
	<-w.done
}

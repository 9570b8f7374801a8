package file

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/fsnotify/fsnotify"

	"github.com/infergate/infergate/controlplane/source/debounce"
	"github.com/infergate/infergate/controlplane/translate"
)

// maxDelayFactor bounds how long a steady stream of events can postpone a
// reload: at most maxDelayFactor × quiet after the first event.
const maxDelayFactor = 10

// Watch loads dir, calls onChange with the inputs, then reloads on every
// change under dir (new subdirectories included), debounced: a reload runs
// once events have been quiet for quiet, and never later than 10 × quiet
// after the first event of a burst.
//
// A load that fails (a bad file) is logged and onChange is not called, so
// the caller keeps serving the last good inputs; this also holds for the
// initial load, so a typo at start-up does not stop the process. onChange
// runs on Watch's goroutine. Watch returns nil when ctx is cancelled, or an
// error when the directory cannot be watched. It logs to log.
func Watch(ctx context.Context, dir string, quiet time.Duration, log *slog.Logger, onChange func(*translate.Inputs)) error {
	if quiet <= 0 {
		quiet = 100 * time.Millisecond
	}
	st, err := os.Stat(dir)
	if err != nil {
		return err
	}
	if !st.IsDir() {
		return fmt.Errorf("%s is not a directory", dir)
	}
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return err
	}
	defer w.Close()
	if err := addTree(w, dir); err != nil {
		return err
	}

	reload := func() {
		in, err := Load(dir, log)
		if err != nil {
			log.Error("config not loaded; keeping the last good one", "dir", dir, "err", err)
			return
		}
		onChange(in)
	}
	reload()

	// The watcher's events become changes on their own goroutine, so a
	// reload never holds them up; it ends when Watch returns.
	changed := debounce.NewSignal()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	failed := make(chan error, 1)
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case ev, ok := <-w.Events:
				if !ok {
					failed <- errors.New("file watcher closed")
					cancel()
					return
				}
				if relevant(w, ev, log) {
					changed.Notify()
				}
			case err, ok := <-w.Errors:
				if !ok {
					failed <- errors.New("file watcher closed")
					cancel()
					return
				}
				log.Warn("file watcher error", "dir", dir, "err", err)
			}
		}
	}()
	for changed.Wait(ctx, quiet, maxDelayFactor*quiet) {
		reload()
	}
	select {
	case err := <-failed:
		return err
	default:
		return nil
	}
}

// relevant decides whether an event may change the inputs, and watches new
// directories as they appear. Creations, removals and renames always count:
// they are rare, and they include the symlink swap by which Kubernetes
// updates a mounted ConfigMap ("..data" is renamed into place, a hidden name).
func relevant(w *fsnotify.Watcher, ev fsnotify.Event, log *slog.Logger) bool {
	switch {
	case ev.Op.Has(fsnotify.Create):
		if st, err := os.Lstat(ev.Name); err == nil && st.IsDir() && !strings.HasPrefix(filepath.Base(ev.Name), ".") {
			if err := addTree(w, ev.Name); err != nil {
				log.Warn("cannot watch new directory", "dir", ev.Name, "err", err)
			}
		}
		return true
	case ev.Op.Has(fsnotify.Remove), ev.Op.Has(fsnotify.Rename):
		return true
	case ev.Op.Has(fsnotify.Write):
		return isManifest(ev.Name)
	}
	return false
}

// addTree watches dir and every non-hidden directory below it.
func addTree(w *fsnotify.Watcher, dir string) error {
	return filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() {
			return nil
		}
		if path != dir && strings.HasPrefix(d.Name(), ".") {
			return filepath.SkipDir
		}
		return w.Add(path)
	})
}

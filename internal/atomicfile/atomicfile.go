// Package atomicfile writes files so that readers see the old content or
// the new, never half of it: data goes to a temporary file beside the
// target, is synced, and is renamed over it. Images, checkpoints, sidecars
// and training logs all use it, so a crash or Ctrl-C leaves no partial file.
//
// The temporary files of writes in flight are tracked, so that a process
// stopped hard (a second Ctrl-C) can remove them on its way out (Abort),
// and a later run can clear those a kill left behind (RemoveStale).
package atomicfile

import (
	"bufio"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// ErrAborted is returned by writes after Abort.
var ErrAborted = errors.New("atomicfile: aborted")

var (
	mu      sync.Mutex
	pending = map[string]bool{} // temporary files of writes in flight
	aborted bool
)

// tempPrefix is the start of the temporary file name for path; os.CreateTemp
// appends decimal digits.
func tempPrefix(path string) string { return "." + filepath.Base(path) + ".tmp-" }

// Write calls fill with a buffered writer to a temporary file in path's
// directory and, when fill succeeds, syncs the file and renames it to path.
// An existing regular file keeps its permissions (new files get 0644). On
// any error the temporary file is removed and path is untouched.
func Write(path string, fill func(w io.Writer) error) (err error) {
	mode := os.FileMode(0o644)
	if st, err := os.Stat(path); err == nil && st.Mode().IsRegular() {
		mode = st.Mode().Perm()
	}
	// Creating and registering the file under the lock means Abort sees
	// every temporary file that exists.
	mu.Lock()
	if aborted {
		mu.Unlock()
		return ErrAborted
	}
	f, err := os.CreateTemp(filepath.Dir(path), tempPrefix(path)+"*")
	if err != nil {
		mu.Unlock()
		return err
	}
	tmp := f.Name()
	pending[tmp] = true
	mu.Unlock()
	defer func() {
		if err != nil {
			f.Close()
			mu.Lock()
			os.Remove(tmp)
			delete(pending, tmp)
			mu.Unlock()
		}
	}()
	bw := bufio.NewWriterSize(f, 1<<20)
	if err = fill(bw); err != nil {
		return err
	}
	if err = bw.Flush(); err != nil {
		return err
	}
	if err = f.Chmod(mode); err != nil {
		return err
	}
	if err = f.Sync(); err != nil {
		return err
	}
	if err = f.Close(); err != nil {
		return err
	}
	// Renaming under the lock: after Abort, either the rename is done (a
	// complete file) or the temporary file is gone.
	mu.Lock()
	defer mu.Unlock()
	if aborted {
		return ErrAborted
	}
	if err = os.Rename(tmp, path); err != nil {
		return err
	}
	delete(pending, tmp)
	return nil
}

// WriteBytes writes b to path atomically (see Write).
func WriteBytes(path string, b []byte) error {
	return Write(path, func(w io.Writer) error {
		_, err := w.Write(b)
		return err
	})
}

// Abort removes the temporary file of every write in flight and makes all
// later writes fail with ErrAborted. It is for a process about to exit
// without waiting for its writes (a second interrupt): targets keep their
// old content and no temporary file is left.
func Abort() {
	mu.Lock()
	defer mu.Unlock()
	aborted = true
	for tmp := range pending {
		os.Remove(tmp)
		delete(pending, tmp)
	}
}

// StaleAge is how old a temporary file must be before RemoveStale takes it
// for the leftover of a killed process rather than a write in progress
// (writes update the file's time as they go).
const StaleAge = 10 * time.Minute

// RemoveStale deletes, in dir, the temporary files that Write leaves
// when killed (".NAME.tmp-" followed by digits, regular files only) for
// the targets NAME that isTarget accepts, last modified more than
// olderThan ago, and reports how many it removed. One listing of dir
// serves any number of targets; nothing else is touched.
func RemoveStale(dir string, isTarget func(name string) bool, olderThan time.Duration) (int, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return 0, err
	}
	removed := 0
	for _, e := range ents {
		name, ok := strings.CutPrefix(e.Name(), ".")
		if !ok || !e.Type().IsRegular() {
			continue
		}
		i := strings.LastIndex(name, ".tmp-")
		if i <= 0 || name[i+5:] == "" || strings.Trim(name[i+5:], "0123456789") != "" || !isTarget(name[:i]) {
			continue
		}
		info, err := e.Info()
		if err != nil || time.Since(info.ModTime()) < olderThan {
			continue
		}
		p := filepath.Join(dir, e.Name())
		mu.Lock()
		if !pending[p] && os.Remove(p) == nil {
			removed++
		}
		mu.Unlock()
	}
	return removed, nil
}

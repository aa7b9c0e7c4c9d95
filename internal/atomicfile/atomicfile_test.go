package atomicfile

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestWriteReplacesOrLeavesUntouched(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "f.txt")
	if err := WriteBytes(p, []byte("one")); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := WriteBytes(p, []byte("two")); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(p)
	st, _ := os.Stat(p)
	if string(b) != "two" || st.Mode().Perm() != 0o600 {
		t.Fatalf("content %q mode %v", b, st.Mode())
	}
	boom := errors.New("boom")
	err := Write(p, func(w io.Writer) error {
		w.Write([]byte("partial"))
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("error %v", err)
	}
	b, _ = os.ReadFile(p)
	entries, _ := os.ReadDir(dir)
	if string(b) != "two" || len(entries) != 1 {
		t.Fatalf("failed write changed the file (%q) or left %d entries", b, len(entries))
	}
	if err := WriteBytes(filepath.Join(dir, "missing", "x"), nil); err == nil {
		t.Fatal("write into a missing directory succeeded")
	}
}

// TestAbortRemovesTemporaryFiles stops a write in the middle, as a second
// Ctrl-C does: the temporary file must go, the target keep its content, and
// the write, when it resumes, must fail rather than rename.
func TestAbortRemovesTemporaryFiles(t *testing.T) {
	defer func() { aborted = false }()
	dir := t.TempDir()
	p := filepath.Join(dir, "out.png")
	if err := WriteBytes(p, []byte("old")); err != nil {
		t.Fatal(err)
	}
	started, resume := make(chan struct{}), make(chan struct{})
	done := make(chan error)
	go func() {
		done <- Write(p, func(w io.Writer) error {
			w.Write([]byte("new, half written"))
			if err := w.(interface{ Flush() error }).Flush(); err != nil {
				return err
			}
			close(started)
			<-resume
			return nil
		})
	}()
	<-started
	if entries, _ := os.ReadDir(dir); len(entries) != 2 {
		t.Fatalf("no temporary file while writing: %d entries", len(entries))
	}
	Abort()
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("after Abort the folder holds %d entries", len(entries))
	}
	close(resume)
	if err := <-done; !errors.Is(err, ErrAborted) {
		t.Errorf("write after Abort: %v", err)
	}
	if b, _ := os.ReadFile(p); string(b) != "old" {
		t.Errorf("target now holds %q", b)
	}
	if err := WriteBytes(p, []byte("x")); !errors.Is(err, ErrAborted) {
		t.Errorf("new write after Abort: %v", err)
	}
}

func TestRemoveStale(t *testing.T) {
	dir := t.TempDir()
	old := time.Now().Add(-2 * StaleAge)
	for _, name := range []string{".a.png.tmp-123", ".a.png.tmp-9", ".a.png.tmp-x1", ".b.png.tmp-1", "a.png", ".a.png.tmp-"} {
		if err := os.WriteFile(filepath.Join(dir, name), nil, 0o644); err != nil {
			t.Fatal(err)
		}
		os.Chtimes(filepath.Join(dir, name), old, old)
	}
	fresh := filepath.Join(dir, ".a.png.tmp-77") // a write in progress elsewhere
	os.WriteFile(fresh, nil, 0o644)
	n, err := RemoveStale(dir, func(name string) bool { return name == "a.png" }, StaleAge)
	if err != nil || n != 2 {
		t.Fatalf("removed %d, %v; want 2", n, err)
	}
	var left []string
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		left = append(left, e.Name())
	}
	want := []string{".a.png.tmp-", ".a.png.tmp-77", ".a.png.tmp-x1", ".b.png.tmp-1", "a.png"}
	if strings.Join(left, " ") != strings.Join(want, " ") {
		t.Errorf("left %v, want %v", left, want)
	}
}

package golden

import (
	"os"
	"path/filepath"
	"testing"
)

// TestSD3SkipsWhenAbsent: in a module with no ../shared beside it, SD3
// skips the test instead of failing it.
func TestSD3SkipsWhenAbsent(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "repo")
	if err := os.MkdirAll(filepath.Join(dir, "pkg"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "go.mod"), []byte("module x\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Chdir(filepath.Join(dir, "pkg"))
	reached := false
	t.Run("absent", func(t *testing.T) {
		SD3(t)
		reached = true
	})
	if reached {
		t.Fatal("SD3 returned without the golden folder")
	}
}

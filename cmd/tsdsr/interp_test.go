package main

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"tsdsr/distill"
	"tsdsr/model/mmdit"
	"tsdsr/safetensors"
)

// TestInterp writes the midpoint of two students, which loads back, and
// refuses to overwrite an input or an existing file.
func TestInterp(t *testing.T) {
	a, _ := distillFixture(t)
	ma, err := mmdit.LoadFile(a)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range ma.Params.List() {
		for i := range p.T.Data {
			p.T.Data[i] += 1
		}
	}
	dir := t.TempDir()
	b := filepath.Join(dir, "b.safetensors")
	if err := distill.SaveStudent(b, ma, safetensors.F32); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "mid.safetensors")
	if err := runInterp(context.Background(), []string{"--a", a, "--b", b, "--alpha", "0.25", "-o", out}); err != nil {
		t.Fatal(err)
	}
	mid, err := mmdit.LoadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	orig, _ := mmdit.LoadFile(a)
	p, q := orig.Params.List()[0], mid.Params.List()[0]
	if d := q.T.Data[0] - p.T.Data[0]; d < 0.2499 || d > 0.2501 {
		t.Errorf("%s moved by %v, want 0.25", p.Name, d)
	}
	if err := runInterp(context.Background(), []string{"--a", a, "--b", b, "-o", out}); err == nil {
		t.Error("an existing output was overwritten without --overwrite")
	}
	if err := runInterp(context.Background(), []string{"--a", a, "--b", b, "-o", b, "--overwrite"}); err == nil {
		t.Error("an input was overwritten")
	}
	if _, err := os.Stat(b); err != nil {
		t.Error(err)
	}
}

// Package golden opens the SD3 reference data of the tests,
// ../shared/golden/sd3 beside the module root: tensors computed by
// diffusers 0.29.1 and TSD-SR's own test/test_tsdsr.py on tiny random
// models of SD3's layout (its README gives the files and tolerances).
// It is test data, not part of the product: a test that asks for it is
// skipped when it is absent.
package golden

import (
	"math"
	"os"
	"path/filepath"
	"testing"

	"tsdsr/safetensors"
	"tsdsr/tensor"
)

// SD3 returns the golden folder, skipping t when it is absent.
func SD3(t testing.TB) string {
	t.Helper()
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	root := wd
	for {
		if _, err := os.Stat(filepath.Join(root, "go.mod")); err == nil {
			break
		}
		up := filepath.Dir(root)
		if up == root {
			t.Fatalf("golden: no go.mod above %s", wd)
		}
		root = up
	}
	dir := filepath.Join(root, "..", "shared", "golden", "sd3")
	if _, err := os.Stat(filepath.Join(dir, "cases.safetensors")); err != nil {
		t.Skipf("golden SD3 data not available (%v); it lives in ../shared/golden/sd3", err)
	}
	return dir
}

// Load opens the safetensors file name of the golden folder (skipping t
// when the folder is absent).
func Load(t testing.TB, name string) *safetensors.File {
	t.Helper()
	f, err := safetensors.Load(filepath.Join(SD3(t), name))
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// Tensor reads one tensor of f, failing t when it is not there.
func Tensor(t testing.TB, f *safetensors.File, name string) *tensor.Tensor {
	t.Helper()
	x, err := f.Tensor(name)
	if err != nil {
		t.Fatal(err)
	}
	return x
}

// RelErr is max|got - want| / max|want|, the golden README's measure.
func RelErr(got, want []float32) float64 {
	var d, m float64
	for i, w := range want {
		d = max(d, math.Abs(float64(got[i])-float64(w)))
		m = max(m, math.Abs(float64(w)))
	}
	return d / m
}

// CheckRel fails t unless got has want's shape and is within tol of it
// (RelErr), and logs the error.
func CheckRel(t testing.TB, what string, got, want *tensor.Tensor, tol float64) {
	t.Helper()
	if !tensor.SameShape(got.Shape, want.Shape) {
		t.Fatalf("%s: shape %v, want %v", what, got.Shape, want.Shape)
	}
	e := RelErr(got.Data, want.Data)
	t.Logf("%s: relative error %.3g", what, e)
	if e > tol {
		t.Errorf("%s: relative error %.3g > %.3g", what, e, tol)
	}
}

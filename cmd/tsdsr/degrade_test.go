package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"tsdsr/degrade"
	"tsdsr/imageio"
)

func degradeTestPhotos(t *testing.T) string {
	dir := t.TempDir()
	for i, sz := range [][2]int{{150, 120}, {90, 100}} {
		m := imageio.NewImage(sz[0], sz[1], 3)
		for c := range 3 {
			p := m.Plane(c)
			for y := range sz[1] {
				for x := range sz[0] {
					p[y*sz[0]+x] = float32(0.5 + 0.4*math.Sin(float64(x+i*7)/6+float64(c))*math.Cos(float64(y)/4))
				}
			}
		}
		if err := imageio.WriteFile(filepath.Join(dir, string(rune('a'+i))+".png"), m, nil); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func readTree(t *testing.T, dir string) map[string][]byte {
	files := map[string][]byte{}
	filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			b, _ := os.ReadFile(p)
			rel, _ := filepath.Rel(dir, p)
			files[rel] = b
		}
		return nil
	})
	return files
}

// TestDegradeCommand: files and sidecars are written, runs are
// deterministic for any -j, resuming fills in only what is missing, and a
// directory made with another seed is refused.
func TestDegradeCommand(t *testing.T) {
	photos := degradeTestPhotos(t)
	out1, out2 := t.TempDir(), t.TempDir()
	args := func(out, j string, extra ...string) []string {
		return append([]string{"--hr", photos, "--out", out, "--n", "5", "--size", "64", "--seed", "3", "-j", j}, extra...)
	}
	if err := runDegrade(context.Background(), args(out1, "1")); err != nil {
		t.Fatal(err)
	}
	if err := runDegrade(context.Background(), args(out2, "3")); err != nil {
		t.Fatal(err)
	}
	a, b := readTree(t, out1), readTree(t, out2)
	if len(a) != 1+3*5 {
		t.Fatalf("wrote %d files", len(a))
	}
	for name, data := range a {
		if !bytes.Equal(data, b[name]) {
			t.Fatalf("%s differs between -j 1 and -j 3", name)
		}
	}
	lr, err := imageio.ReadFile(filepath.Join(out1, "lr", "000004.png"), nil)
	if err != nil || lr.Width != 16 || lr.Height != 16 {
		t.Fatalf("LR: %v", err)
	}
	var meta degrade.PairParams
	if err := json.Unmarshal(a[filepath.Join("meta", "000004.json")], &meta); err != nil {
		t.Fatal(err)
	}
	if meta.Index != 4 || meta.Seed != 3 || meta.Crop.Size != 64 || meta.Degradation.Final.JPEGQuality < 30 {
		t.Fatalf("sidecar %+v", meta)
	}

	// Resume: a pair without its sidecar is rebuilt identically; complete
	// pairs are not touched (their HR is replaced by junk to prove it).
	os.Remove(filepath.Join(out1, "meta", "000002.json"))
	os.Remove(filepath.Join(out1, "lr", "000002.png"))
	os.WriteFile(filepath.Join(out1, "hr", "000001.png"), []byte("junk"), 0o644)
	if err := runDegrade(context.Background(), args(out1, "2")); err != nil {
		t.Fatal(err)
	}
	c := readTree(t, out1)
	if string(c[filepath.Join("hr", "000001.png")]) != "junk" {
		t.Fatal("a complete pair was rewritten")
	}
	for _, f := range []string{"meta/000002.json", "lr/000002.png", "hr/000002.png"} {
		if !bytes.Equal(c[filepath.FromSlash(f)], a[filepath.FromSlash(f)]) {
			t.Fatalf("resumed %s differs", f)
		}
	}
	err = runDegrade(context.Background(), []string{"--hr", photos, "--out", out1, "--n", "5", "--size", "64", "--seed", "4"})
	if err == nil || !strings.Contains(err.Error(), "another seed") {
		t.Fatalf("resuming with another seed: %v", err)
	}
	if err := runDegrade(context.Background(), []string{"--hr", photos, "--n", "5"}); err != errUsage {
		t.Fatalf("missing --out: %v", err)
	}
}

// TestDegradePrintConfig: --print-config emits options that --config
// loads back unchanged.
func TestDegradePrintConfig(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout := os.Stdout
	os.Stdout = w
	err = runDegrade(context.Background(), []string{"--print-config", "--size", "256"})
	os.Stdout = stdout
	w.Close()
	if err != nil {
		t.Fatal(err)
	}
	js, _ := io.ReadAll(r)
	path := filepath.Join(t.TempDir(), "o.json")
	os.WriteFile(path, js, 0o644)
	o, err := degrade.LoadOptions(path)
	if err != nil {
		t.Fatal(err)
	}
	want := degrade.DefaultOptions()
	want.Crop.Size = 256
	a, _ := json.Marshal(o)
	b, _ := json.Marshal(want)
	if string(a) != string(b) {
		t.Fatalf("printed config loads as %s, want %s", a, b)
	}
}

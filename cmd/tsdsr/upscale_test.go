package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"tsdsr/imageio"
)

const edgeCases = "../../../shared/data/real-lr/edge-cases"

// copyEdgeCase copies a file of the shared edge-case folder into dir, or
// skips the test when the shared data is absent.
func copyEdgeCase(t *testing.T, name, dir string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(edgeCases, name))
	if err != nil {
		t.Skipf("shared test data missing: %v", err)
	}
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func writePNG(t *testing.T, path string, w, h int) {
	t.Helper()
	m := imageio.NewImage(w, h, 3)
	for i := range m.Pix {
		m.Pix[i] = float32(i%17) / 16
	}
	if err := imageio.WriteFile(path, m, nil); err != nil {
		t.Fatal(err)
	}
}

func read(t *testing.T, path string) *imageio.Image {
	t.Helper()
	m, err := imageio.ReadFile(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// TestUpscaleFolderEdgeCases runs one batch over the awkward inputs: 16-bit
// RGBA, 8-bit RGBA, gray PNG, gray JPEG, 1x1, 7x13 and a truncated JPEG.
// The truncated file must fail alone and the exit status must say so.
// edgeCase is an expected output of an edge-case batch.
type edgeCase struct {
	name                  string
	w, h, channels, depth int
	alpha                 bool
}

// upscaleBatch upscales the folder in with args and checks that exactly
// the truncated file failed, that every case has its expected output and
// that nothing else (no partial or temporary file) was written.
func upscaleBatch(t *testing.T, in string, args []string, cases []edgeCase) {
	t.Helper()
	out := filepath.Join(t.TempDir(), "out")
	err := runUpscale(context.Background(), append([]string{"-i", in, "-o", out, "--quiet"}, args...))
	if err == nil || !strings.Contains(err.Error(), fmt.Sprintf("1 failed of %d", len(cases)+1)) {
		t.Fatalf("want exactly the truncated file to fail, got %v", err)
	}
	for _, c := range cases {
		m := read(t, filepath.Join(out, c.name))
		if m.Width != c.w || m.Height != c.h || m.Channels != c.channels || m.BitDepth != c.depth || (m.Alpha != nil) != c.alpha {
			t.Errorf("%s: got %dx%d ch=%d depth=%d alpha=%v, want %dx%d ch=%d depth=%d alpha=%v", c.name,
				m.Width, m.Height, m.Channels, m.BitDepth, m.Alpha != nil, c.w, c.h, c.channels, c.depth, c.alpha)
		}
	}
	entries, _ := os.ReadDir(out)
	if len(entries) != len(cases) {
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		t.Errorf("output folder holds %v", names)
	}
}

// TestUpscaleFolderEdgeCases runs the real-world edge cases of ../shared
// (megapixel RGBA 16-bit, RGBA, gray PNG and JPEG) through the pipeline
// with the bicubic model, whose cost does not hide the format handling,
// and then small images of the same kinds plus 1x1 and 7x13 through the
// default student: alpha, gray and 16-bit survive both, and a truncated
// file fails alone.
func TestUpscaleFolderEdgeCases(t *testing.T) {
	in := t.TempDir()
	copyEdgeCase(t, "tree_alpha_16bit.png", in)
	copyEdgeCase(t, "children-alpha.png", in)
	copyEdgeCase(t, "00017_gray.png", in)
	copyEdgeCase(t, "wolf_gray.jpg", in)
	jpg, _ := os.ReadFile(filepath.Join(in, "wolf_gray.jpg"))
	os.WriteFile(filepath.Join(in, "truncated.jpg"), jpg[:len(jpg)/3], 0o644)
	upscaleBatch(t, in, []string{"--model", "bicubic"}, []edgeCase{
		{"tree_alpha_16bit.png", 1368, 1024, 3, 16, true},
		{"children-alpha.png", 2264, 1400, 3, 8, true},
		{"00017_gray.png", 2000, 1404, 1, 8, false},
		{"wolf_gray.jpg", 944, 944, 1, 8, false},
	})

	small := t.TempDir()
	rgba := imageio.NewImage(30, 22, 3)
	rgba.BitDepth, rgba.Alpha = 16, make([]float32, 30*22)
	gray := imageio.NewImage(21, 17, 1)
	for _, m := range []*imageio.Image{rgba, gray} {
		for i := range m.Pix {
			m.Pix[i] = float32(i%23) / 22
		}
	}
	for i := range rgba.Alpha {
		rgba.Alpha[i] = float32(i%30) / 29
	}
	for name, m := range map[string]*imageio.Image{"rgba16.png": rgba, "gray.png": gray} {
		if err := imageio.WriteFile(filepath.Join(small, name), m, nil); err != nil {
			t.Fatal(err)
		}
	}
	writePNG(t, filepath.Join(small, "one.png"), 1, 1)
	writePNG(t, filepath.Join(small, "odd.png"), 7, 13)
	os.WriteFile(filepath.Join(small, "truncated.jpg"), jpg[:len(jpg)/3], 0o644)
	upscaleBatch(t, small, []string{"--color-fix", "adain"}, []edgeCase{
		{"rgba16.png", 120, 88, 3, 16, true},
		{"gray.png", 84, 68, 1, 8, false},
		{"one.png", 4, 4, 3, 8, false},
		{"odd.png", 28, 52, 3, 8, false},
	})
}

func TestUpscaleNeverOverwritesInputs(t *testing.T) {
	dir := t.TempDir()
	a := filepath.Join(dir, "a.png")
	writePNG(t, a, 5, 4)
	before, _ := os.ReadFile(a)
	if err := runUpscale(context.Background(), []string{"-i", a, "-o", a, "--overwrite", "--quiet"}); err == nil || !strings.Contains(err.Error(), "1 failed") {
		t.Errorf("file onto itself: %v", err)
	}
	// Folder onto itself: same names, same format.
	if err := runUpscale(context.Background(), []string{"-i", dir, "-o", dir, "--overwrite", "--quiet"}); err == nil {
		t.Error("folder onto itself was accepted")
	}
	// A symlink to the input is the input too.
	link := filepath.Join(t.TempDir(), "link.png")
	if err := os.Symlink(a, link); err == nil {
		if err := runUpscale(context.Background(), []string{"-i", a, "-o", link, "--overwrite", "--quiet"}); err == nil {
			t.Error("output through a symlink to the input was accepted")
		}
	}
	if after, _ := os.ReadFile(a); !bytes.Equal(before, after) {
		t.Fatal("the input was modified")
	}
	// With a suffix the same folder is fine.
	if err := runUpscale(context.Background(), []string{"-i", dir, "-o", dir, "--suffix", "_x4", "--quiet"}); err != nil {
		t.Fatal(err)
	}
	if m := read(t, filepath.Join(dir, "a_x4.png")); m.Width != 20 || m.Height != 16 {
		t.Errorf("a_x4.png is %dx%d", m.Width, m.Height)
	}
}

func TestUpscaleDeterministic(t *testing.T) {
	dir := t.TempDir()
	in := copyEdgeCase(t, "0014.jpg", dir)
	var outs [2][]byte
	for i := range outs {
		out := filepath.Join(dir, "out.png")
		if err := runUpscale(context.Background(), []string{"-i", in, "-o", out, "--overwrite", "--quiet"}); err != nil {
			t.Fatal(err)
		}
		outs[i], _ = os.ReadFile(out)
	}
	if len(outs[0]) == 0 || !bytes.Equal(outs[0], outs[1]) {
		t.Fatal("two runs wrote different bytes")
	}
}

func TestUpscaleExistingOutputs(t *testing.T) {
	dir := t.TempDir()
	in, out := filepath.Join(dir, "in.png"), filepath.Join(dir, "out.png")
	writePNG(t, in, 3, 3)
	os.WriteFile(out, []byte("keep me"), 0o644)
	if err := runUpscale(context.Background(), []string{"-i", in, "-o", out, "--quiet"}); err == nil {
		t.Error("an existing output was replaced without --overwrite")
	}
	if err := runUpscale(context.Background(), []string{"-i", in, "-o", out, "--skip-existing", "--quiet"}); err != nil {
		t.Errorf("--skip-existing: %v", err)
	}
	if b, _ := os.ReadFile(out); string(b) != "keep me" {
		t.Fatal("existing output changed")
	}
	if err := runUpscale(context.Background(), []string{"-i", in, "-o", out, "--overwrite", "--quiet"}); err != nil {
		t.Fatal(err)
	}
	if m := read(t, out); m.Width != 12 {
		t.Errorf("overwritten output is %d wide", m.Width)
	}
}

func TestUpscaleSizesAndFormats(t *testing.T) {
	dir := t.TempDir()
	in := filepath.Join(dir, "in.png")
	writePNG(t, in, 10, 7)
	cases := []struct {
		args   []string
		out    string
		w, h   int
		format string
	}{
		{[]string{"--outscale", "2.5"}, "a.jpg", 25, 18, "jpeg"},
		{[]string{"--width", "100"}, "b.png", 100, 70, "png"},
		{[]string{"--width", "9", "--height", "9", "--color-fix", "none"}, "c.png", 9, 9, "png"},
		{[]string{"--format", "webp-if-possible"}, "d.webp", 40, 28, "png"},                     // written as d.png
		{[]string{"--format", "jpg", "-s", "2", "--model", "bicubic"}, "e.out", 20, 14, "jpeg"}, // the students are 4x only
	}
	for _, c := range cases {
		args := append([]string{"-i", in, "-o", filepath.Join(dir, c.out), "--quiet"}, c.args...)
		if err := runUpscale(context.Background(), args); err != nil {
			t.Fatalf("%v: %v", c.args, err)
		}
		name := c.out
		if strings.HasSuffix(name, ".webp") {
			name = strings.TrimSuffix(name, ".webp") + ".png"
		}
		data, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatalf("%v: %v", c.args, err)
		}
		isJPEG := bytes.HasPrefix(data, []byte{0xff, 0xd8})
		m := read(t, filepath.Join(dir, name))
		if m.Width != c.w || m.Height != c.h || isJPEG != (c.format == "jpeg") {
			t.Errorf("%v: %dx%d jpeg=%v, want %dx%d %s", c.args, m.Width, m.Height, isJPEG, c.w, c.h, c.format)
		}
	}
}

func TestUpscaleRecursive(t *testing.T) {
	in, out := t.TempDir(), t.TempDir()
	os.MkdirAll(filepath.Join(in, "sub", "deeper"), 0o755)
	writePNG(t, filepath.Join(in, "top.png"), 2, 2)
	writePNG(t, filepath.Join(in, "sub", "deeper", "low.png"), 3, 2)
	os.WriteFile(filepath.Join(in, "notes.txt"), []byte("not an image"), 0o644)
	if err := runUpscale(context.Background(), []string{"-i", in, "-o", out, "--quiet"}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(out, "sub")); err == nil {
		t.Error("sub-folder processed without --recursive")
	}
	if err := runUpscale(context.Background(), []string{"-i", in, "-o", out, "--recursive", "--skip-existing", "--quiet"}); err != nil {
		t.Fatal(err)
	}
	if m := read(t, filepath.Join(out, "sub", "deeper", "low.png")); m.Width != 12 || m.Height != 8 {
		t.Errorf("nested output %dx%d", m.Width, m.Height)
	}
	// An output folder inside the input folder is not walked: running
	// twice must not upscale the first run's results.
	nested := filepath.Join(in, "x4")
	for range 2 {
		if err := runUpscale(context.Background(), []string{"-i", in, "-o", nested, "--recursive", "--skip-existing", "--quiet"}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := os.Stat(filepath.Join(nested, "x4")); err == nil {
		t.Error("the output folder was taken as input")
	}
	// A JPEG given a folder as -o stays JPEG, as in folder mode.
	jpg := filepath.Join(t.TempDir(), "p.jpg")
	if err := imageio.WriteFile(jpg, imageio.NewImage(3, 3, 3), nil); err != nil {
		t.Fatal(err)
	}
	if err := runUpscale(context.Background(), []string{"-i", jpg, "-o", out, "--quiet"}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(out, "p.jpg")); err != nil {
		t.Error(err)
	}
}

func TestUpscaleRejectsBadFlags(t *testing.T) {
	dir := t.TempDir()
	in := filepath.Join(dir, "in.png")
	writePNG(t, in, 2, 2)
	for _, args := range [][]string{
		{"--model", "/no/such/checkpoint.safetensors"},
		{"--model", in}, // exists, but is not a checkpoint
		{"--color-fix", "sepia"},
		{"--format", "gif"},
		{"--quality", "0"},
		{"--seed", "42"}, // the models draw no noise: no such flag
		{"--skip-existing", "--overwrite"},
		{"--lora", dir},                                // without --sd3
		{"--sd3", dir},                                 // without --lora/--embeds
		{"--sd3", dir, "--lora", dir, "--embeds", dir}, // not an SD3 folder
		{"--sd3", dir, "--lora", dir, "--embeds", dir, "--model", "bicubic"},
	} {
		err := runUpscale(context.Background(), append([]string{"-i", in, "-o", filepath.Join(dir, "o.png"), "--quiet"}, args...))
		if err == nil {
			t.Errorf("%v accepted", args)
		} else if args[0] == "--model" && !strings.Contains(err.Error(), "models") {
			t.Errorf("%v: error does not name the available model: %v", args, err)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "o.png")); err == nil {
		t.Error("a rejected command wrote output")
	}
}

func TestUpscaleCancelledLeavesNothing(t *testing.T) {
	in, out := t.TempDir(), t.TempDir()
	writePNG(t, filepath.Join(in, "a.png"), 4, 4)
	ctx, cancel := context.WithCancel(context.Background())
	cancel() // Ctrl-C before the first file
	err := runUpscale(ctx, []string{"-i", in, "-o", out, "--quiet"})
	if err == nil || !strings.Contains(err.Error(), "interrupted") {
		t.Fatalf("got %v", err)
	}
	if entries, _ := os.ReadDir(out); len(entries) != 0 {
		t.Errorf("output folder not empty after interruption: %d entries", len(entries))
	}
}

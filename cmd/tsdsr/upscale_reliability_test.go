package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"tsdsr/batch"
	"tsdsr/imageio"
	"tsdsr/internal/atomicfile"
	"tsdsr/sr"
)

// noHang fails the test instead of letting a blocked call hang the suite.
func noHang(t *testing.T, what string, f func()) {
	t.Helper()
	done := make(chan struct{})
	go func() { f(); close(done) }()
	select {
	case <-done:
	case <-time.After(2 * time.Minute):
		t.Fatalf("%s blocked", what)
	}
}

func names(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range entries {
		out = append(out, e.Name())
	}
	return out
}

// TestUpscaleOutputLimit: an output over --max-output-pixels is refused
// for that file only, before it is upscaled, and the batch goes on; a huge
// --outscale (which used to end in "fatal error: out of memory") is refused
// by the default limit.
func TestUpscaleOutputLimit(t *testing.T) {
	in, out := t.TempDir(), t.TempDir()
	writePNG(t, filepath.Join(in, "big.png"), 50, 50)
	writePNG(t, filepath.Join(in, "small.png"), 2, 2)
	err := runUpscale(context.Background(), []string{"-i", in, "-o", out, "--quiet", "--model", "bicubic",
		"--outscale", "100", "--max-output-pixels", "100000"})
	if err == nil || !strings.Contains(err.Error(), "1 upscaled, 0 skipped, 1 failed of 2") {
		t.Fatalf("want big.png refused and small.png done, got %v", err)
	}
	if m := read(t, filepath.Join(out, "small.png")); m.Width != 200 {
		t.Errorf("small.png is %d wide", m.Width)
	}
	if got := names(t, out); len(got) != 1 {
		t.Errorf("output folder holds %v", got)
	}
	var stderr bytes.Buffer
	c := &upscaleConfig{quiet: true}
	pipe := sr.New(sr.Bicubic{Factor: 4}, &sr.Options{OutScale: 100000})
	jobs := []*batch.Job{{In: filepath.Join(in, "small.png"), Out: filepath.Join(out, "huge.png"), Format: "png"}}
	if err := runJobs(context.Background(), pipe, jobs, c, &stderr, false); err == nil || !strings.Contains(stderr.String(), "max-output-pixels") {
		t.Errorf("--outscale 100000: %v; %s", err, stderr.String())
	}
	// The memory estimate binds before the pixel limit when memory is short.
	c.Memory = func() int64 { return 1 << 30 }
	pipe = sr.New(sr.Bicubic{Factor: 4}, &sr.Options{Width: 16000, Height: 16000})
	if err := batch.CheckOutput(pipe, &c.Options, jobs[0], 2, 2); err == nil || !strings.Contains(err.Error(), "memory") {
		t.Errorf("16000x16000 with 1 GiB: %v", err)
	}
	c.Memory = func() int64 { return 64 << 30 }
	if err := batch.CheckOutput(pipe, &c.Options, jobs[0], 2, 2); err != nil {
		t.Errorf("16000x16000 with 64 GiB: %v", err)
	}
	jobs[0].Format = "jpeg"
	pipe = sr.New(sr.Bicubic{Factor: 4}, &sr.Options{Width: 70000, Height: 10})
	if err := batch.CheckOutput(pipe, &c.Options, jobs[0], 2, 2); err == nil || !strings.Contains(err.Error(), "65535") {
		t.Errorf("70000-wide JPEG: %v", err)
	}
}

// TestUpscaleTileValidation: --tile 1 used to panic in a convolution; bad
// tilings are now refused before anything is read or written.
func TestUpscaleTileValidation(t *testing.T) {
	dir := t.TempDir()
	in := filepath.Join(dir, "in.png")
	writePNG(t, in, 8, 8)
	for _, args := range [][]string{
		{"--tile", "1"},
		{"--tile", "4", "--tile-overlap", "4"},
		{"--tile", "100000"},
		{"--tile-overlap", "64"}, // the default tile is 64
	} {
		var err error
		func() {
			defer func() {
				if r := recover(); r != nil {
					t.Errorf("%v panicked: %v", args, r)
				}
			}()
			err = runUpscale(context.Background(), append([]string{"-i", in, "-o", filepath.Join(dir, "o.png"), "--quiet"}, args...))
		}()
		if err == nil || !strings.Contains(err.Error(), "--tile") || strings.Contains(err.Error(), "failed of") {
			t.Errorf("%v: want an up-front --tile error, got %v", args, err)
		}
	}
	err := runUpscale(context.Background(), []string{"-i", in, "-o", filepath.Join(dir, "o.png"), "--quiet", "--shifts", "3"})
	if err == nil || !strings.Contains(err.Error(), "--shifts") {
		t.Errorf("--shifts 3: want an up-front --shifts error, got %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "o.png")); err == nil {
		t.Error("a refused tiling or shift count wrote output")
	}
}

// TestUpscaleFolderOnlyRegularFiles: a FIFO named x.png used to block the
// batch for ever and symlinks to /dev/zero were read to 1.6 GB; now both
// are per-file errors and the rest of the batch runs.
func TestUpscaleFolderOnlyRegularFiles(t *testing.T) {
	in, out := t.TempDir(), t.TempDir()
	writePNG(t, filepath.Join(in, "a.png"), 3, 3)
	if err := syscall.Mkfifo(filepath.Join(in, "x.png"), 0o644); err != nil {
		t.Skipf("no FIFOs here: %v", err)
	}
	want := "2 upscaled, 0 skipped, 1 failed of 4" // a.png, link.png; x.png
	if _, err := os.Stat("/dev/zero"); err == nil {
		if err := os.Symlink("/dev/zero", filepath.Join(in, "z.png")); err != nil {
			t.Fatal(err)
		}
		want = "2 upscaled, 0 skipped, 2 failed of 4"
	} else {
		want = "2 upscaled, 0 skipped, 1 failed of 3"
	}
	if err := os.Symlink(filepath.Join(in, "a.png"), filepath.Join(in, "link.png")); err != nil {
		t.Fatal(err)
	}
	noHang(t, "a folder with a FIFO", func() {
		err := runUpscale(context.Background(), []string{"-i", in, "-o", out, "--quiet", "--model", "bicubic"})
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("got %v, want %q", err, want)
		}
	})
	for _, n := range []string{"a.png", "link.png"} {
		if m := read(t, filepath.Join(out, n)); m.Width != 12 {
			t.Errorf("%s: %d wide", n, m.Width)
		}
	}
}

// TestUpscaleRerunSameFolder: with -i DIR -o DIR --suffix, a rerun used to
// upscale its own outputs (a_x4_x4.png); they carry the tsdsr mark and are
// left out, whatever the suffix of the rerun.
func TestUpscaleRerunSameFolder(t *testing.T) {
	dir := t.TempDir()
	writePNG(t, filepath.Join(dir, "a.png"), 3, 2)
	for _, args := range [][]string{{"--suffix", "_x4"}, {"--suffix", "_x4", "--skip-existing"}, {"--suffix", "_x2", "-s", "2"}} {
		if err := runUpscale(context.Background(), append([]string{"-i", dir, "-o", dir, "--quiet", "--model", "bicubic"}, args...)); err != nil {
			t.Fatalf("%v: %v", args, err)
		}
	}
	if got := strings.Join(names(t, dir), " "); got != "a.png a_x2.png a_x4.png" {
		t.Errorf("folder holds %s", got)
	}
	if sw, err := imageio.ReadSoftware(filepath.Join(dir, "a_x4.png")); err != nil || sw != batch.SoftwareMark {
		t.Errorf("output mark %q, %v", sw, err)
	}
}

// TestUpscaleOutputThroughSymlink: an output folder inside the input
// folder, named by -o through a symlink, used to be walked again on the
// next run (the exclusion compared unresolved paths).
func TestUpscaleOutputThroughSymlink(t *testing.T) {
	in := t.TempDir()
	writePNG(t, filepath.Join(in, "a.png"), 2, 2)
	os.MkdirAll(filepath.Join(in, "x4"), 0o755)
	link := filepath.Join(t.TempDir(), "out")
	if err := os.Symlink(filepath.Join(in, "x4"), link); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if err := runUpscale(context.Background(), []string{"-i", in, "-o", link, "--recursive", "--skip-existing", "--quiet", "--model", "bicubic"}); err != nil {
			t.Fatal(err)
		}
	}
	if got := strings.Join(names(t, filepath.Join(in, "x4")), " "); got != "a.png" {
		t.Errorf("output folder holds %s", got)
	}
}

// TestUpscaleSymlinkedInputFolder: -i LINK, LINK a symlink to a folder,
// used to say "no images in LINK".
func TestUpscaleSymlinkedInputFolder(t *testing.T) {
	in, out := t.TempDir(), t.TempDir()
	writePNG(t, filepath.Join(in, "a.png"), 2, 2)
	link := filepath.Join(t.TempDir(), "photos")
	if err := os.Symlink(in, link); err != nil {
		t.Fatal(err)
	}
	if err := runUpscale(context.Background(), []string{"-i", link, "-o", out, "--quiet", "--model", "bicubic"}); err != nil {
		t.Fatal(err)
	}
	if m := read(t, filepath.Join(out, "a.png")); m.Width != 8 {
		t.Errorf("a.png is %d wide", m.Width)
	}
}

// TestUpscaleOutputNotWritable: an unwritable output folder is found
// before anything is upscaled (it used to fail each file after its work).
func TestUpscaleOutputNotWritable(t *testing.T) {
	in := t.TempDir()
	writePNG(t, filepath.Join(in, "a.png"), 2, 2)
	out := filepath.Join(t.TempDir(), "ro")
	os.Mkdir(out, 0o555)
	if f, err := os.CreateTemp(out, "probe"); err == nil { // root ignores modes
		f.Close()
		os.Remove(f.Name())
		out = "/proc/tsdsr-test-out"
		if _, err := os.Stat("/proc/self"); err != nil {
			t.Skip("running as root without /proc: no unwritable folder to test with")
		}
	}
	err := runUpscale(context.Background(), []string{"-i", in, "-o", out, "--quiet", "--model", "bicubic"})
	if err == nil || !strings.Contains(err.Error(), "not writable") || strings.Contains(err.Error(), "failed of") {
		t.Errorf("want an up-front error, got %v", err)
	}
}

// TestUpscaleTerminalOutput: names with control characters are quoted on
// the terminal, and JPEG output of an image with alpha says it drops it.
func TestUpscaleTerminalOutput(t *testing.T) {
	in, out := t.TempDir(), t.TempDir()
	evil := "x\x1b[2J\nfake line.png"
	writePNG(t, filepath.Join(in, evil), 2, 2)
	rgba := imageio.NewImage(2, 2, 3)
	rgba.Alpha = []float32{1, 0.5, 0, 1}
	if err := imageio.WriteFile(filepath.Join(in, "alpha.png"), rgba, nil); err != nil {
		t.Fatal(err)
	}
	c := &upscaleConfig{Options: batch.Options{In: in, Out: out, Format: "jpeg", Quality: 90}}
	jobs, _, err := batch.Plan(&c.Options)
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	if err := runJobs(context.Background(), sr.New(sr.Bicubic{}, nil), jobs, c, &stderr, false); err != nil {
		t.Fatal(err)
	}
	s := stderr.String()
	if strings.ContainsAny(s, "\x1b") || strings.Count(s, "\n") != 4 || !strings.Contains(s, `/x\x1b[2J\nfake line.png"`) {
		t.Errorf("terminal output:\n%s", s)
	}
	if !strings.Contains(s, "alpha.png: JPEG has no alpha channel") {
		t.Errorf("no alpha warning in:\n%s", s)
	}
}

// TestUpscaleRemovesStaleTemps: temporary files an interrupted run left
// beside its outputs are removed at the next run once old; young ones (a
// write of another run in progress) and other files are kept.
func TestUpscaleRemovesStaleTemps(t *testing.T) {
	in, out := t.TempDir(), t.TempDir()
	writePNG(t, filepath.Join(in, "a.png"), 2, 2)
	old := time.Now().Add(-2 * atomicfile.StaleAge)
	for _, n := range []string{".a.png.tmp-123", ".a.png.tmp-456", ".b.png.tmp-1", "notes.txt"} {
		os.WriteFile(filepath.Join(out, n), nil, 0o644)
		if n != ".a.png.tmp-456" {
			os.Chtimes(filepath.Join(out, n), old, old)
		}
	}
	if err := runUpscale(context.Background(), []string{"-i", in, "-o", out, "--quiet", "--model", "bicubic"}); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(names(t, out), " "); got != ".a.png.tmp-456 .b.png.tmp-1 a.png notes.txt" {
		t.Errorf("output folder holds %s", got)
	}
}

// TestSecondInterruptLeavesNoTemp runs a write in a child process and
// interrupts it twice: the first interrupt only cancels, the second must
// stop the process at once (status 130) without leaving the temporary
// file of the write in flight (it used to stay for good).
func TestSecondInterruptLeavesNoTemp(t *testing.T) {
	if dir := os.Getenv("TSDSR_INTERRUPT_CHILD"); dir != "" {
		ctx, stop := interruptContext(os.Stderr)
		defer stop()
		atomicfile.Write(filepath.Join(dir, "out.png"), func(w io.Writer) error {
			w.Write(bytes.Repeat([]byte("x"), 1000))
			w.(interface{ Flush() error }).Flush()
			os.Stdout.WriteString("writing\n")
			<-ctx.Done()
			os.Stdout.WriteString("cancelled\n")
			select {} // a write that does not notice cancellation
		})
		return
	}
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^TestSecondInterruptLeavesNoTemp$")
	cmd.Env = append(os.Environ(), "TSDSR_INTERRUPT_CHILD="+dir)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	guard := time.AfterFunc(time.Minute, func() { cmd.Process.Kill() }) // never hang the suite
	defer guard.Stop()
	lines := bufio.NewScanner(stdout)
	expect := func(want string) {
		t.Helper()
		if !lines.Scan() || lines.Text() != want {
			cmd.Process.Kill()
			t.Fatalf("child said %q, want %q (%v)", lines.Text(), want, lines.Err())
		}
	}
	expect("writing")
	if got := names(t, dir); len(got) != 1 || !strings.HasPrefix(got[0], ".out.png.tmp-") {
		t.Fatalf("during the write the folder holds %v", got)
	}
	cmd.Process.Signal(os.Interrupt)
	expect("cancelled")
	cmd.Process.Signal(os.Interrupt)
	err = cmd.Wait()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 130 {
		t.Errorf("child ended with %v, want exit status 130", err)
	}
	if got := names(t, dir); len(got) != 0 {
		t.Errorf("after the second interrupt the folder holds %v", got)
	}
}

package batch

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"tsdsr/imageio"
	"tsdsr/sr"
)

func writeImage(t *testing.T, path string, w, h int) {
	t.Helper()
	if err := imageio.WriteFile(path, imageio.NewImage(w, h, 3), nil); err != nil {
		t.Fatal(err)
	}
}

// TestRunGoesOnAfterAFailure: a library user gets the command's batch: a
// corrupt file fails alone, an existing output is skipped or refused, and
// earlier results in the output folder are not taken for inputs.
func TestRunGoesOnAfterAFailure(t *testing.T) {
	in := t.TempDir()
	writeImage(t, filepath.Join(in, "a.png"), 4, 3)
	writeImage(t, filepath.Join(in, "b.png"), 2, 2)
	if err := os.WriteFile(filepath.Join(in, "bad.png"), []byte("not a png"), 0o644); err != nil {
		t.Fatal(err)
	}
	o := &Options{In: in, Out: in, Suffix: "_x4"}
	jobs, earlier, err := Plan(o)
	if err != nil || len(jobs) != 3 || earlier != 0 {
		t.Fatalf("Plan: %d jobs, %d earlier, %v", len(jobs), earlier, err)
	}
	pipe := sr.New(sr.Bicubic{Factor: 4}, nil)
	var failed []string
	s := Run(context.Background(), pipe, o, jobs, Events{Failed: func(j *Job, err error) { failed = append(failed, filepath.Base(j.In)) }})
	if s.Done != 2 || s.Failed != 1 || s.Interrupted || len(failed) != 1 || failed[0] != "bad.png" {
		t.Fatalf("summary %+v, failed %v", s, failed)
	}
	m, err := imageio.ReadFile(filepath.Join(in, "a_x4.png"), nil)
	if err != nil || m.Width != 16 || m.Height != 12 {
		t.Fatalf("a.png: %v", err)
	}
	if sw, err := imageio.ReadSoftware(filepath.Join(in, "a_x4.png")); err != nil || sw != SoftwareMark {
		t.Errorf("Software %q, %v", sw, err)
	}

	// The results sit beside their inputs: a second plan leaves them out
	// (marked), and existing outputs are refused unless skipped.
	jobs, earlier, err = Plan(o)
	if err != nil || len(jobs) != 3 || earlier != 2 {
		t.Fatalf("second Plan: %d jobs, %d earlier, %v", len(jobs), earlier, err)
	}
	if _, err := Upscale(context.Background(), pipe, o, jobs[0], nil); err == nil || !strings.Contains(err.Error(), "exists") {
		t.Errorf("existing output: %v", err)
	}
	o.SkipExisting = true
	if _, err := Upscale(context.Background(), pipe, o, jobs[0], nil); !errors.Is(err, ErrSkipped) {
		t.Errorf("--skip-existing: %v", err)
	}
}

// TestPlanRefusesOverwritingAnInput: with the output folder equal to the
// input folder and no suffix, every output would replace its input.
func TestPlanRefusesOverwritingAnInput(t *testing.T) {
	dir := t.TempDir()
	writeImage(t, filepath.Join(dir, "a.png"), 2, 2)
	jobs, _, err := Plan(&Options{In: dir, Out: dir})
	if err != nil || len(jobs) != 1 || jobs[0].Err == nil || !strings.Contains(jobs[0].Err.Error(), "it is an input") {
		t.Fatalf("jobs %v, err %v", jobs, err)
	}
	jobs, _, err = Plan(&Options{In: dir, Out: dir, Suffix: "_x4"})
	if err != nil || jobs[0].Err != nil || filepath.Base(jobs[0].Out) != "a_x4.png" {
		t.Fatalf("with a suffix: %+v, %v", jobs[0], err)
	}
}

package main

import (
	"bytes"
	"context"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const evalRealSR = "../../../shared/data/realsr"

// copyShared makes dst a copy of src (the shared data is read-only).
func copyShared(t *testing.T, src, dst string) {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Skipf("shared test data missing: %v", err)
	}
	if err := os.WriteFile(dst, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestEvalCommandRealSR runs `tsdsr eval --json` on three RealSR results
// whose ground truths are renamed with an _HR suffix, and compares with
// the values pyiqa logged for OSEDiff (osediff-metrics.log).
func TestEvalCommandRealSR(t *testing.T) {
	dir := t.TempDir()
	srDir, gtDir := filepath.Join(dir, "sr"), filepath.Join(dir, "gt")
	os.Mkdir(srDir, 0o755)
	os.Mkdir(gtDir, 0o755)
	for _, n := range []string{"Canon_001", "Canon_002", "Nikon_050"} {
		copyShared(t, filepath.Join(evalRealSR, "osediff", n+"_LR4.png"), filepath.Join(srDir, n+"_LR4.png"))
		copyShared(t, filepath.Join(evalRealSR, "HR", n+"_LR4.png"), filepath.Join(gtDir, n+"_HR.png"))
	}
	var out, errb bytes.Buffer
	err := runEval(context.Background(), []string{"--sr", srDir, "--gt", gtDir, "--json", "-j", "2"}, &out, &errb, false)
	if err != nil {
		t.Fatalf("%v\n%s", err, errb.String())
	}
	if errb.Len() != 0 {
		t.Errorf("unexpected stderr without a terminal: %q", errb.String())
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 4 {
		t.Fatalf("want 3 image lines and a summary, got:\n%s", out.String())
	}
	var first map[string]any
	if err := json.Unmarshal([]byte(lines[0]), &first); err != nil {
		t.Fatal(err)
	}
	// pyiqa's values for Canon_001 in osediff-metrics.log.
	want := map[string]float64{"psnr": 25.793726, "ssim": 0.851268, "niqe": 5.673670}
	if first["name"] != "Canon_001_LR4.png" {
		t.Errorf("first line %v", first)
	}
	for k, v := range want {
		if g, _ := first[k].(float64); math.Abs(g-v) > 2e-6 {
			t.Errorf("%s = %v, pyiqa %v", k, first[k], v)
		}
	}
	var sum map[string]float64
	if err := json.Unmarshal([]byte(lines[3]), &sum); err != nil {
		t.Fatal(err)
	}
	if len(sum) != 4 || sum["n"] != 3 || sum["psnr"] == 0 || sum["ssim"] == 0 || sum["niqe"] == 0 {
		t.Errorf("summary %s", lines[3])
	}

	// No-reference run: NIQE only, table output, progress bar as on a
	// terminal (stderr only).
	out.Reset()
	errb.Reset()
	if err := runEval(context.Background(), []string{"--sr", srDir}, &out, &errb, true); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(errb.String(), "evaluating") {
		t.Errorf("no progress bar on stderr: %q", errb.String())
	}
	if !strings.Contains(out.String(), "niqe") || strings.Contains(out.String(), "psnr") || !strings.Contains(out.String(), "mean (3)") {
		t.Errorf("NIQE-only table:\n%s", out.String())
	}
}

// TestEvalCommandBaseline evaluates the bicubic baseline on two RealSR LR
// images as CSV.
func TestEvalCommandBaseline(t *testing.T) {
	dir := t.TempDir()
	lrDir, gtDir := filepath.Join(dir, "lr"), filepath.Join(dir, "gt")
	os.Mkdir(lrDir, 0o755)
	os.Mkdir(gtDir, 0o755)
	for _, n := range []string{"Canon_003_LR4.png", "Nikon_010_LR4.png"} {
		copyShared(t, filepath.Join(evalRealSR, "LR", n), filepath.Join(lrDir, n))
		copyShared(t, filepath.Join(evalRealSR, "HR", n), filepath.Join(gtDir, n))
	}
	var out, errb bytes.Buffer
	args := []string{"--baseline", "bicubic", "--lr", lrDir, "--gt", gtDir, "--metrics", "psnr,ssim", "--csv"}
	if err := runEval(context.Background(), args, &out, &errb, false); err != nil {
		t.Fatalf("%v\n%s", err, errb.String())
	}
	recs := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(recs) != 4 || recs[0] != "name,psnr,ssim" || !strings.HasPrefix(recs[3], "mean,") {
		t.Fatalf("CSV:\n%s", out.String())
	}
	// Bicubic x4 on RealSR sits far below the GT and well above noise.
	for _, r := range recs[1:] {
		f := strings.Split(r, ",")
		var p float64
		json.Unmarshal([]byte(f[1]), &p)
		if p < 20 || p > 40 {
			t.Errorf("implausible bicubic PSNR in %q", r)
		}
	}
}

func TestEvalCommandErrors(t *testing.T) {
	var out, errb bytes.Buffer
	run := func(args ...string) error {
		out.Reset()
		errb.Reset()
		return runEval(context.Background(), args, &out, &errb, false)
	}
	dir := t.TempDir()
	if err := run("--sr", dir, "--metrics", "psnr"); err == nil || !strings.Contains(err.Error(), "--gt") {
		t.Errorf("psnr without --gt: %v", err)
	}
	if err := run("--sr", dir, "--metrics", "lpips"); err == nil || !strings.Contains(err.Error(), "unavailable") {
		t.Errorf("lpips: %v", err)
	}
	if err := run("--sr", dir, "--json", "--csv"); err == nil {
		t.Error("--json with --csv accepted")
	}
	if err := run("--baseline", "nearest", "--lr", dir); err == nil {
		t.Error("unknown baseline accepted")
	}
	if err := run("--sr", dir); err == nil || !strings.Contains(err.Error(), "no images") {
		t.Errorf("empty folder: %v", err)
	}
	if err := run("--help"); err == nil || !strings.Contains(errb.String(), "lpips") || !strings.Contains(errb.String(), "weights") {
		t.Errorf("--help: %v\n%s", err, errb.String())
	}
}

package train

import (
	"context"
	"errors"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"tsdsr/nn"
	"tsdsr/rng"
)

func checkpointNames(t *testing.T, dir string) []string {
	t.Helper()
	ents, _ := os.ReadDir(filepath.Join(dir, "checkpoints"))
	var out []string
	for _, e := range ents {
		out = append(out, e.Name())
	}
	return out
}

// TestResumeWithoutStateJSON: with the run's state.json gone, --resume
// used to start over and delete every checkpoint. It must resume from the
// newest checkpoint's own record (exactly, as from state.json), keep a
// checkpoint that is not this run's, and refuse when no checkpoint has a
// record.
func TestResumeWithoutStateJSON(t *testing.T) {
	straight, split := t.TempDir(), t.TempDir()
	if err := trainTo(t, straight, false, 20, 0); err != nil {
		t.Fatal(err)
	}
	if err := trainTo(t, split, false, 20, 15); !errors.Is(err, context.Canceled) {
		t.Fatalf("interrupted run: %v", err)
	}
	// Checkpoints at 7 and 14 (SaveEvery 7) and 15 (the interruption).
	if err := os.Remove(filepath.Join(split, stateFile)); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(Options{Dir: split, Seed: 5, Config: map[string]any{"steps": 20}}); err == nil {
		t.Error("a fresh start was allowed beside existing checkpoints")
	}
	// A checkpoint of another recipe, in the way of nothing.
	foreign := filepath.Join(split, "checkpoints", "step-00000003")
	os.MkdirAll(foreign, 0o755)
	os.WriteFile(filepath.Join(foreign, stateFile), []byte(`{"step": 3, "seed": 1, "config": {"other": true}}`), 0o644)
	if err := trainTo(t, split, true, 20, 0); err != nil {
		t.Fatal(err)
	}
	for _, part := range []string{"model", "optimizer", "ema"} {
		a, _ := LatestPart(straight, part)
		b, _ := LatestPart(split, part)
		ba, _ := os.ReadFile(a)
		bb, _ := os.ReadFile(b)
		if len(ba) == 0 || string(ba) != string(bb) {
			t.Errorf("%s: resuming from the checkpoint's own record is not exact", part)
		}
	}
	if got := strings.Join(checkpointNames(t, split), " "); got != "step-00000003 step-00000015 step-00000020" {
		t.Errorf("checkpoints after the resume: %s", got)
	}

	// Checkpoint folders, none with a record: refuse, delete nothing.
	bare := t.TempDir()
	os.MkdirAll(filepath.Join(bare, "checkpoints", "step-00000007"), 0o755)
	os.WriteFile(filepath.Join(bare, "checkpoints", "step-00000007", "model.safetensors"), []byte("weights"), 0o644)
	run, err := Open(Options{Dir: bare, Seed: 5, Resume: true})
	if err != nil {
		t.Fatal(err)
	}
	defer run.Close()
	if _, err := run.Restore(); err == nil || !strings.Contains(err.Error(), "refusing") {
		t.Errorf("checkpoints without records: %v", err)
	}
	if _, err := os.Stat(filepath.Join(bare, "checkpoints", "step-00000007", "model.safetensors")); err != nil {
		t.Error(err)
	}
}

// TestResumeRefusesChangedFile: a part file that differs from the SHA-256
// its state recorded is refused.
func TestResumeRefusesChangedFile(t *testing.T) {
	dir := t.TempDir()
	if err := trainTo(t, dir, false, 7, 0); err != nil {
		t.Fatal(err)
	}
	st, err := ReadState(dir)
	if err != nil || len(st.SHA256) != 3 {
		t.Fatalf("state records %d checksums, %v", len(st.SHA256), err)
	}
	path, _ := LatestPart(dir, "ema")
	b, _ := os.ReadFile(path)
	b[len(b)-1] ^= 1 // one bit of one weight: still a valid file
	os.WriteFile(path, b, 0o644)
	_, p := newStandIn(11, 4, 16)
	run, err := Open(Options{Dir: dir, Seed: 5, Resume: true, Config: map[string]any{"steps": 7}})
	if err != nil {
		t.Fatal(err)
	}
	defer run.Close()
	run.Add("model", Weights(p))
	run.Add("optimizer", nn.NewAdamW(p.List(), nn.AdamWConfig{}))
	run.Add("ema", nn.NewEMA(p.List(), 0.9))
	if _, err := run.Restore(); err == nil || !strings.Contains(err.Error(), "SHA-256") {
		t.Errorf("resume from a changed file: %v", err)
	}
}

// TestResumeRefusesNonFinite: a checkpoint whose weights hold NaN used to
// resume "successfully" into skipped steps; it is refused at load.
func TestResumeRefusesNonFinite(t *testing.T) {
	dir := t.TempDir()
	_, p := newStandIn(1, 4, 8)
	p.List()[0].T.Data[2] = float32(math.NaN())
	run, err := Open(Options{Dir: dir, Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	run.Add("model", Weights(p))
	if err := run.Save(4); err != nil {
		t.Fatal(err)
	}
	run.Close()
	_, q := newStandIn(2, 4, 8)
	run, err = Open(Options{Dir: dir, Seed: 1, Resume: true})
	if err != nil {
		t.Fatal(err)
	}
	defer run.Close()
	run.Add("model", Weights(q))
	if _, err := run.Restore(); err == nil || !strings.Contains(err.Error(), "non-finite") {
		t.Errorf("resume from NaN weights: %v", err)
	}
}

// TestLoopStopsOnNonFiniteSteps: five non-finite steps in a row stop the
// run with an error and no checkpoint; isolated ones do not.
func TestLoopStopsOnNonFiniteSteps(t *testing.T) {
	for _, c := range []struct {
		name    string
		metrics func(s int) Metrics
		stopAt  int // 0: runs to the end
	}{
		{"nan loss", func(int) Metrics { return Metrics{"loss": math.NaN()} }, 5},
		{"skipped", func(int) Metrics { return Metrics{"loss": 1, "skipped": 1} }, 5},
		{"inf gradient after 3 good", func(s int) Metrics {
			if s < 3 {
				return Metrics{"loss": 1, "grad_norm": 1}
			}
			return Metrics{"loss": 1, "grad_norm": math.Inf(1)}
		}, 8},
		{"every other step", func(s int) Metrics { return Metrics{"loss": []float64{1, math.NaN()}[s%2]} }, 0},
	} {
		dir := t.TempDir()
		run, err := Open(Options{Dir: dir, Seed: 1})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := run.Restore(); err != nil {
			t.Fatal(err)
		}
		steps := 0
		err = run.Loop(context.Background(), Loop{Steps: 12, Step: func(s int, _ *rng.Rand) (Metrics, int, error) {
			steps++
			return c.metrics(s), 1, nil
		}})
		run.Close()
		if c.stopAt == 0 {
			if err != nil || steps != 12 {
				t.Errorf("%s: %v after %d steps", c.name, err, steps)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), "non-finite") || steps != c.stopAt {
			t.Errorf("%s: %v after %d steps, want an error after %d", c.name, err, steps, c.stopAt)
		}
		if _, err := os.Stat(filepath.Join(dir, stateFile)); err == nil {
			t.Errorf("%s: a checkpoint was saved", c.name)
		}
	}
}

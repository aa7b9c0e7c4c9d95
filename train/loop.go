package train

import (
	"context"
	"fmt"
	"io"
	"math"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/schollz/progressbar/v3"

	"tsdsr/rng"
)

// Loop describes a training loop for Run.Loop.
type Loop struct {
	Steps     int // total optimiser steps of the run
	SaveEvery int // checkpoint period in steps (0: only at the end or on interruption)
	EvalEvery int // evaluation period in steps (0: only at the end, when Eval is set)
	LogEvery  int // period of train.log lines with the step's metrics (default 50)
	// MaxNonFinite stops the run with an error after this many consecutive
	// steps whose loss or gradient norm is not finite, or that report
	// "skipped" (default 5; negative: never). Such steps change nothing,
	// so a run of them is broken weights or data, not bad luck.
	MaxNonFinite int

	// Step runs optimiser step s (0-based), drawing every random number from
	// r, and returns its metrics and the number of training samples it used.
	Step func(s int, r *rng.Rand) (Scalars, int, error)
	// Eval, when set, measures the model after step optimiser steps; it must
	// leave the training state as it found it.
	Eval func(step int) (Scalars, error)

	Progress io.Writer // progress bar destination (nil: no bar)
	Show     []string  // metrics shown on the bar (default "loss")
	Plot     []string  // prefixes of the metrics plotted in loss.png (default "loss", "val")
}

// Loop runs steps from the restored step up to l.Steps, recording metrics,
// evaluating and checkpointing as configured. When ctx is cancelled it saves
// a checkpoint of the steps done and returns ctx's error; a run resumed from
// it continues exactly.
func (r *Run) Loop(ctx context.Context, l Loop) error {
	if l.LogEvery <= 0 {
		l.LogEvery = 50
	}
	if len(l.Show) == 0 {
		l.Show = []string{"loss"}
	}
	if len(l.Plot) == 0 {
		l.Plot = []string{"loss", "val"}
	}
	if l.MaxNonFinite == 0 {
		l.MaxNonFinite = DefaultMaxNonFinite
	}
	bad := 0 // consecutive non-finite steps
	start := r.step
	var bar *progressbar.ProgressBar
	if l.Progress != nil {
		// The bar counts this session's steps, so its time estimate is not
		// fooled by the steps a resumed run did before; the description
		// shows the run's step.
		bar = progressbar.NewOptions(max(0, l.Steps-start), progressbar.OptionSetWriter(l.Progress),
			progressbar.OptionSetPredictTime(true), progressbar.OptionSetWidth(25),
			progressbar.OptionThrottle(200*time.Millisecond), progressbar.OptionSetDescription("training"))
	}
	t0 := time.Now()
	var seen int64 // samples in this session
	saved, evaluated := start, -1
	finish := func(step int) error {
		if bar != nil {
			fmt.Fprintln(l.Progress)
		}
		if l.Eval != nil && evaluated != step && step > start {
			if err := r.eval(l, step); err != nil {
				return err
			}
		}
		if saved != step {
			if err := r.Save(step); err != nil {
				return err
			}
		}
		return PlotLog(filepath.Join(r.Dir, metricsFile), filepath.Join(r.Dir, "loss.png"), l.Plot...)
	}
	for s := start; s < l.Steps; s++ {
		if ctx.Err() != nil {
			r.Log.Info("interrupted", "step", s)
			if err := finish(s); err != nil {
				return err
			}
			return ctx.Err()
		}
		m, n, err := l.Step(s, r.Rand(s))
		if err != nil {
			return fmt.Errorf("train: step %d: %w", s, err)
		}
		r.samples += int64(n)
		seen += int64(n)
		rate := float64(seen) / time.Since(t0).Seconds()
		m["samples_per_s"] = rate
		if err := r.Record(s+1, m); err != nil {
			return err
		}
		if bad = bad + 1; !nonFinite(m) {
			bad = 0
		}
		if l.MaxNonFinite > 0 && bad >= l.MaxNonFinite {
			r.Log.Error("non-finite steps", "step", s+1, "consecutive", bad)
			if bar != nil {
				fmt.Fprintln(l.Progress)
			}
			return fmt.Errorf("train: %d consecutive steps up to %d had a non-finite loss or gradient and changed nothing: stopped without a checkpoint (the weights or the data are broken; resume from an earlier checkpoint, perhaps with a lower learning rate)", bad, s+1)
		}
		if bar != nil {
			bar.Describe(fmt.Sprintf("step %d/%d  %s", s+1, l.Steps, describe(m, l.Show, rate)))
			bar.Set(s + 1 - start)
		}
		if (s+1)%l.LogEvery == 0 {
			r.Log.Info("step", metricAttrs(s+1, m)...)
		}
		if l.Eval != nil && l.EvalEvery > 0 && (s+1)%l.EvalEvery == 0 {
			if err := r.eval(l, s+1); err != nil {
				return err
			}
			evaluated = s + 1
		}
		if l.SaveEvery > 0 && (s+1)%l.SaveEvery == 0 && s+1 < l.Steps {
			if err := r.Save(s + 1); err != nil {
				return err
			}
			saved = s + 1
			if err := PlotLog(filepath.Join(r.Dir, metricsFile), filepath.Join(r.Dir, "loss.png"), l.Plot...); err != nil {
				return err
			}
		}
	}
	return finish(max(start, l.Steps))
}

// DefaultMaxNonFinite is Loop.MaxNonFinite's default.
const DefaultMaxNonFinite = 5

// nonFinite reports a step that skipped its update or whose loss or
// gradient norm is NaN or Inf.
func nonFinite(m Scalars) bool {
	if m["skipped"] != 0 {
		return true
	}
	for _, k := range []string{"loss", "grad_norm"} {
		if v, ok := m[k]; ok && (math.IsNaN(v) || math.IsInf(v, 0)) {
			return true
		}
	}
	return false
}

func (r *Run) eval(l Loop, step int) error {
	m, err := l.Eval(step)
	if err != nil {
		return fmt.Errorf("train: evaluation at step %d: %w", step, err)
	}
	r.Log.Info("eval", metricAttrs(step, m)...)
	return r.Record(step, m)
}

// describe formats the shown metrics and the throughput for the bar.
func describe(m Scalars, show []string, rate float64) string {
	var b strings.Builder
	for _, k := range show {
		if v, ok := m[k]; ok {
			fmt.Fprintf(&b, "%s %.4g  ", k, v)
		}
	}
	fmt.Fprintf(&b, "%.3g samples/s", rate)
	return b.String()
}

// metricAttrs lists step and metrics as slog key-value pairs in name order.
func metricAttrs(step int, m Scalars) []any {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	out := []any{"step", step}
	for _, k := range keys {
		v := m[k]
		if !math.IsNaN(v) && !math.IsInf(v, 0) {
			v = float64(float32(v)) // short, as the float32 it came from
		}
		out = append(out, k, v)
	}
	return out
}

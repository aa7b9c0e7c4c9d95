package distill

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"time"

	"tsdsr/data"
	"tsdsr/degrade"
	"tsdsr/internal/parallel"
	"tsdsr/model/mmdit"
	"tsdsr/model/taesd"
	"tsdsr/rng"
	"tsdsr/safetensors"
	"tsdsr/tensor"
	"tsdsr/train"
)

// Recipe is what a resumed distillation must repeat exactly; it is saved
// in every checkpoint's state.json.
type Recipe struct {
	Distill Config       `json:"distill"`
	Model   mmdit.Config `json:"model"`
	Batch   int          `json:"batch"`
	Size    int          `json:"size"`
	Init    string       `json:"init,omitempty"`
	// Degrade is the degradation mixture of the pairs (crop side Size);
	// absent: Real-ESRGAN's model alone.
	Degrade degrade.Mixture `json:"degrade,omitempty"`
}

// loaderSeed decorrelates the data stream from the training draws: both
// derive generators by Child(index) from their seed, so one seed for both
// would give pair k and step k the same stream.
const loaderSeed = 0x9e3779b97f4a7c15

// LossColumns are the columns of a run's loss.csv, in order.
var LossColumns = []string{"step", "loss", "mse", "tsd", "pix", "fake", "grad_norm", "fake_grad_norm", "lr", "lr_fake", "samples_per_s"}

// AdvColumns follow LossColumns in loss.csv when the run has the
// adversarial term.
var AdvColumns = []string{"adv", "disc", "disc_grad_norm", "lr_disc"}

// RunOptions describe a distillation run in a directory.
type RunOptions struct {
	Config Config
	// Prior is the teacher; Start, when not nil, is the student's starting
	// point (a student trained earlier), recorded in the recipe as Init.
	Prior, Start *mmdit.Model
	Init         string
	PriorName    string // where the prior came from, for the log
	DataDir      string // HR photos, degraded on the fly
	// Degrade is the degradation mixture (nil: Real-ESRGAN's second-order
	// model); each component's crop side is set to Size.
	Degrade     degrade.Mixture
	Dir         string // run directory
	Batch, Size int    // pairs per step; HR crop side (LR is Size/4)
	Steps       int
	SaveEvery   int
	// SnapshotEvery, when positive, writes the student of every
	// SnapshotEvery-th step (its EMA with Config.EMA) to
	// Dir/students/step-N.safetensors in BF16, so a checkpoint can be
	// chosen afterwards on held-out pairs (run checkpoints keep only the
	// last two).
	SnapshotEvery int
	Resume        bool
	Progress      io.Writer // progress bar and messages (nil: none)
}

// Result is where a run ended.
type Result struct {
	Step        int           // optimiser steps done
	Elapsed     time.Duration // training wall time over all sessions
	Student     string        // the saved student.safetensors
	Interrupted bool          // ctx was cancelled: a checkpoint and the student of that step were saved
}

// Run distils o.Prior into a one-step student: the HR/LR pairs stream from
// o.DataDir through the degradation pipeline, are encoded by TAESD3 and
// feed Trainer.Step in a train.Run loop (checkpoints, exact resume,
// metrics.jsonl, loss.png). At the end, or when ctx is cancelled, it
// writes loss.csv (LossColumns) and student.safetensors (SaveStudent).
func Run(ctx context.Context, o RunOptions) (Result, error) {
	var res Result
	start := o.Start
	if start == nil {
		start = o.Prior
	}
	tr, err := NewTrainerFrom(o.Config, o.Prior, start)
	if err != nil {
		return res, err
	}
	enc, dec, err := taesd.Embedded()
	if err != nil {
		return res, err
	}
	if o.Config.NeedsPixels() {
		tr.Decoder = dec
	}
	mix := make(degrade.Mixture, len(o.Degrade))
	for i, c := range o.Degrade {
		opts := *c.Options
		opts.Crop.Size = o.Size
		mix[i] = degrade.Component{Name: c.Name, Weight: c.Weight, Options: &opts}
	}
	if len(mix) > 0 {
		if err := mix.Validate(); err != nil {
			return res, err
		}
	}
	run, err := train.Open(train.Options{Dir: o.Dir, Seed: o.Config.Seed, Resume: o.Resume,
		Config: Recipe{Distill: o.Config, Model: o.Prior.Config, Batch: o.Batch, Size: o.Size, Init: o.Init, Degrade: mix}})
	if err != nil {
		return res, err
	}
	defer run.Close()
	tr.Register(run)
	first, err := run.Restore()
	if err != nil {
		return res, err
	}
	photos, err := data.OpenDir(o.DataDir, 256<<20)
	if err != nil {
		return res, err
	}
	opts := degrade.DefaultOptions()
	opts.Crop.Size = o.Size
	// The loader ignores Ctrl-C: the loop notices it between steps and
	// checkpoints first; a step failing on a cancelled batch would not.
	loader, err := data.NewLoader(context.WithoutCancel(ctx), photos, data.Config{Batch: o.Batch, Seed: o.Config.Seed ^ loaderSeed, Start: first, Options: opts, Mixture: mix})
	if err != nil {
		return res, err
	}
	defer loader.Close()

	run.Log.Info("distill", "prior", o.PriorName, "trainable", tr.Describe(), "degrade", mix.String(), "threads", parallel.Threads())
	if o.Progress != nil {
		fmt.Fprintf(o.Progress, "distill: %s; %dx%d HR -> %dx%d LR, batch %d, run in %s\n",
			tr.Describe(), o.Size, o.Size, o.Size/4, o.Size/4, o.Batch, o.Dir)
	}
	step := func(s int, r *rng.Rand) (train.Scalars, int, error) {
		b, err := loader.Next()
		if err != nil {
			return nil, 0, err
		}
		if b.Index != s {
			return nil, 0, fmt.Errorf("data batch %d for step %d", b.Index, s)
		}
		m, err := tr.Step(EncodeBatch(enc, b), r)
		return m, b.N, err
	}
	var snapshot func(int) (train.Scalars, error)
	if o.SnapshotEvery > 0 {
		snapshot = func(s int) (train.Scalars, error) {
			// Recorded in metrics.jsonl, so the log says which steps have one.
			return train.Scalars{"snapshot": 1}, saveSnapshot(filepath.Join(o.Dir, "students", fmt.Sprintf("step-%08d.safetensors", s)), tr)
		}
	}
	shown := []string{"loss", "mse", "tsd", "pix", "fake"}
	err = run.Loop(ctx, train.Loop{Steps: o.Steps, SaveEvery: o.SaveEvery, EvalEvery: o.SnapshotEvery, Eval: snapshot,
		Step: step, Progress: o.Progress, Show: shown, Plot: shown})
	if err != nil && !errors.Is(err, context.Canceled) {
		return res, err
	}
	res.Interrupted = err != nil
	cols := LossColumns
	if o.Config.WAdv > 0 {
		cols = append(slices.Clone(cols), AdvColumns...)
	}
	if err := train.WriteLogCSV(filepath.Join(o.Dir, "metrics.jsonl"), filepath.Join(o.Dir, "loss.csv"), cols); err != nil {
		return res, err
	}
	res.Student = filepath.Join(o.Dir, "student.safetensors")
	if tr.EMA != nil {
		// The average is the model; the last weights stay in the checkpoint.
		tr.EMA.Swap()
		defer tr.EMA.Swap()
	}
	if err := SaveStudent(res.Student, tr.Student, safetensors.F32); err != nil {
		return res, err
	}
	res.Step, res.Elapsed = run.Step(), run.Elapsed()
	return res, nil
}

// saveSnapshot writes the trainer's student (its EMA when there is one)
// to path in BF16, leaving the training state as it was.
func saveSnapshot(path string, tr *Trainer) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	if tr.EMA != nil {
		tr.EMA.Swap()
		defer tr.EMA.Swap()
	}
	return SaveStudent(path, tr.Student, safetensors.BF16)
}

// EncodeBatch turns a pair batch into scaled TAESD3 latents, without
// gradients: z_L from the bicubic-upsampled LR clamped to [0, 1] (as an
// image, the form the upscaler encodes), z_H from the HR crop.
func EncodeBatch(enc *taesd.Encoder, b *data.Batch) Batch {
	defer tensor.NoGrad()()
	hr := tensor.FromData(b.HR, b.N, 3, b.Size, b.Size)
	lr := tensor.Clamp(tensor.FromData(b.LRUp, b.N, 3, b.Size, b.Size), 0, 1)
	return Batch{
		ZL: tensor.Scale(enc.Forward(lr), taesd.LatentScale),
		ZH: tensor.Scale(enc.Forward(hr), taesd.LatentScale),
		HR: hr,
	}
}

package main

import (
	"bytes"
	"context"
	"encoding/csv"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"tsdsr/data"
	"tsdsr/degrade"
	"tsdsr/distill"
	"tsdsr/internal/parallel"
	"tsdsr/model/mmdit"
	"tsdsr/model/taesd"
	"tsdsr/rng"
	"tsdsr/safetensors"
	"tsdsr/tensor"
	"tsdsr/train"
)

func init() {
	registerTrainer("distill", "TSD-SR one-step student by target score distillation from a prior", runTrainDistill)
}

// distillRecipe is what a resumed distillation must repeat exactly; it is
// saved in every checkpoint's state.json.
type distillRecipe struct {
	Distill distill.Config `json:"distill"`
	Model   mmdit.Config   `json:"model"`
	Batch   int            `json:"batch"`
	Size    int            `json:"size"`
	Init    string         `json:"init,omitempty"`
}

// distillLoaderSeed decorrelates the data stream from the training draws:
// both derive generators by Child(index) from their seed, so one seed for
// both would give pair k and step k the same stream.
const distillLoaderSeed = 0x9e3779b97f4a7c15

// lossColumns are the columns of loss.csv, in order.
var lossColumns = []string{"step", "loss", "mse", "tsd", "pix", "fake", "grad_norm", "fake_grad_norm", "lr", "lr_fake", "samples_per_s"}

// runTrainDistill is `tsdsr train distill`: TSD-SR's one-step student
// distilled from a prior (see package distill).
func runTrainDistill(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("train distill", flag.ContinueOnError)
	fs.Usage = func() {
		w := fs.Output()
		fmt.Fprintln(w, "Usage: tsdsr train distill --prior DIR|FILE --data DIR --out DIR [--resume] [flags]")
		fmt.Fprintln(w, "\nDistils the prior into a one-step super-resolution student by Target Score Distillation")
		fmt.Fprintln(w, "(TSD-SR): z_hat = z_L - G(z_L, t=1000) on TAESD3 latents of bicubic-upsampled LR crops,")
		fmt.Fprintln(w, "L = w_mse MSE(z_hat, z_H) + w_pix pixel + w_tsd L_TSD, with a fake score trained online.")
		fmt.Fprintln(w, "HR/LR pairs stream from --data through the Real-ESRGAN degradation (--size HR -> size/4 LR).")
		fmt.Fprintln(w, "\nAblations: --reg none (MSE only), --reg vsd (lambda 1), --reg tsd --dasm=false, --reg tsd (default).")
		fmt.Fprintln(w, "The pixel loss (--w-pix) is a Charbonnier (smooth L1) distance on TAESD3-decoded output, a")
		fmt.Fprintln(w, "stand-in for TSD-SR's LPIPS, whose ImageNet backbone is not available.")
		fmt.Fprintln(w, "\n--prior is a run directory of `tsdsr train prior` (EMA weights when present), a diffusers")
		fmt.Fprintln(w, "directory (config.json + diffusion_pytorch_model.safetensors) or a safetensors file with its")
		fmt.Fprintln(w, "config in the metadata or a config.json beside it. --init starts the student from an earlier")
		fmt.Fprintln(w, "student (two-stage training: --reg none first, then score distillation from it).")
		fmt.Fprintln(w, "\nOUT gets student.safetensors (merged weights, config in the metadata: what the upscaler")
		fmt.Fprintln(w, "loads), checkpoints/, state.json, metrics.jsonl, loss.csv, loss.png and train.log. Ctrl-C saves")
		fmt.Fprint(w, "a checkpoint; --resume continues bit for bit.\n\n")
		fs.PrintDefaults()
	}
	def := distill.DefaultConfig()
	prior := fs.String("prior", "", "`path` of the prior: run directory, diffusers directory or safetensors file (see above)")
	initFrom := fs.String("init", "", "start the student from this `student.safetensors` (e.g. a --reg none run) instead of the prior")
	dataDir := fs.String("data", "", "directory of HR photos")
	out := fs.String("out", "", "run directory")
	steps := fs.Int("steps", 2000, "student steps (each followed by one fake-score step)")
	batch := fs.Int("batch", 2, "pairs per step")
	size := fs.Int("size", 256, "HR crop side (LR is size/4; latents size/8)")
	lr := fs.Float64("lr", def.LR, "student peak learning rate (cosine decay after warm-up; the paper's SD3 value is 5e-6)")
	lrFake := fs.Float64("lr-fake", def.LRFake, "fake-score peak learning rate (the paper's SD3 value is 1e-6)")
	warmup := fs.Int("warmup", def.Warmup, "linear warm-up steps of both learning rates")
	loraRank := fs.Int("lora-rank", def.LoRARank, "student LoRA rank (alpha = rank)")
	fakeRank := fs.Int("fake-rank", def.FakeRank, "fake-score LoRA rank (attention projections)")
	full := fs.Bool("full-finetune", false, "train every student weight instead of a LoRA")
	reg := fs.String("reg", def.Reg, "score regulariser: none, vsd or tsd")
	lambda := fs.Float64("lambda", def.Lambda, "VSD share of the TSD gradient (--reg tsd)")
	dasm := fs.Bool("dasm", def.DASM, "distribution-aware sampling: accumulate the gradient along Euler trajectories")
	dasmSteps := fs.Int("dasm-steps", def.DASMSteps, "DASM trajectory length (weights 1, 0.3, 0.3, ...)")
	wMSE := fs.Float64("w-mse", def.WMSE, "weight of the latent MSE")
	wTSD := fs.Float64("w-tsd", def.WTSD, "weight of L_TSD")
	wPix := fs.Float64("w-pix", def.WPix, "weight of the pixel loss (Charbonnier on TAESD3-decoded output; 0: off)")
	seed := fs.Uint64("seed", 0, "seed of the adapters, the data stream and the noise")
	resume := fs.Bool("resume", false, "continue the run in OUT from its latest checkpoint")
	saveEvery := fs.Int("save-every", 100, "checkpoint period in steps (also at the end and on Ctrl-C)")
	threads := fs.Int("threads", 0, "worker threads (0 = all cores)")
	quiet := fs.Bool("quiet", false, "no progress bar")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *prior == "" || *dataDir == "" || *out == "" || *steps <= 0 || *batch <= 0 || fs.NArg() > 0 {
		fs.Usage()
		return errUsage
	}
	if *size <= 0 || *size%(4*taesd.Factor) != 0 {
		return fmt.Errorf("--size %d: must be a positive multiple of %d (4x LR, 8x latents)", *size, 4*taesd.Factor)
	}
	if *threads > 0 {
		parallel.SetThreads(*threads)
	}
	cfg := distill.Config{LoRARank: *loraRank, FakeRank: *fakeRank, FullFinetune: *full, Reg: *reg, Lambda: *lambda,
		DASM: *dasm, DASMSteps: *dasmSteps, WMSE: *wMSE, WTSD: *wTSD, WPix: *wPix, LR: *lr, LRFake: *lrFake,
		Warmup: *warmup, Steps: *steps, WeightDecay: def.WeightDecay, ClipNorm: def.ClipNorm, Seed: *seed}
	if err := cfg.Validate(); err != nil {
		return err
	}
	model, err := distill.LoadPrior(*prior)
	if err != nil {
		return fmt.Errorf("prior: %w", err)
	}
	mc := model.Config
	if lat := *size / taesd.Factor; lat%mc.PatchSize != 0 || lat/mc.PatchSize > mc.PosEmbedMaxSize {
		return fmt.Errorf("--size %d gives %dx%d latents, which do not fit patch %d and position grid %d", *size, lat, lat, mc.PatchSize, mc.PosEmbedMaxSize)
	}
	if mc.ContextTokens == 0 {
		return errors.New("prior: the model has no learned prompt (context_tokens = 0)")
	}
	from := model
	if *initFrom != "" {
		if from, err = distill.LoadStudent(*initFrom); err != nil {
			return fmt.Errorf("--init: %w", err)
		}
	}
	tr, err := distill.NewTrainerFrom(cfg, model, from)
	if err != nil {
		return err
	}
	enc, dec, err := taesd.Embedded()
	if err != nil {
		return err
	}
	if cfg.WPix > 0 {
		tr.Decoder = dec
	}

	run, err := train.Open(train.Options{Dir: *out, Seed: *seed, Resume: *resume,
		Config: distillRecipe{Distill: cfg, Model: mc, Batch: *batch, Size: *size, Init: *initFrom}})
	if err != nil {
		return err
	}
	defer run.Close()
	tr.Register(run)
	start, err := run.Restore()
	if err != nil {
		return err
	}
	photos, err := data.OpenDir(*dataDir, 256<<20)
	if err != nil {
		return err
	}
	opts := degrade.DefaultOptions()
	opts.Crop.Size = *size
	// The loader ignores Ctrl-C: the loop notices it between steps and
	// checkpoints first; a step failing on a cancelled batch would not.
	loader, err := data.NewLoader(context.WithoutCancel(ctx), photos, data.Config{Batch: *batch, Seed: *seed ^ distillLoaderSeed, Start: start, Options: opts})
	if err != nil {
		return err
	}
	defer loader.Close()

	var progress io.Writer = os.Stderr
	if *quiet {
		progress = nil
	}
	run.Log.Info("distill", "prior", *prior, "trainable", tr.Describe(), "threads", parallel.Threads())
	if progress != nil {
		fmt.Fprintf(progress, "distill: %s; %dx%d HR -> %dx%d LR, batch %d, run in %s\n",
			tr.Describe(), *size, *size, *size/4, *size/4, *batch, *out)
	}
	step := func(s int, r *rng.Rand) (train.Metrics, int, error) {
		b, err := loader.Next()
		if err != nil {
			return nil, 0, err
		}
		if b.Index != s {
			return nil, 0, fmt.Errorf("data batch %d for step %d", b.Index, s)
		}
		m, err := tr.Step(encodeBatch(enc, b), r)
		return m, b.N, err
	}
	err = run.Loop(ctx, train.Loop{Steps: *steps, SaveEvery: *saveEvery, Step: step, Progress: progress,
		Show: []string{"loss", "mse", "tsd", "pix", "fake"}, Plot: []string{"loss", "mse", "tsd", "pix", "fake"}})
	if err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	interrupted := err != nil
	if err := writeLossCSV(filepath.Join(*out, "metrics.jsonl"), filepath.Join(*out, "loss.csv")); err != nil {
		return err
	}
	studentPath := filepath.Join(*out, "student.safetensors")
	if err := distill.SaveStudent(studentPath, tr.Student, safetensors.F32); err != nil {
		return err
	}
	if interrupted {
		return fmt.Errorf("interrupted: checkpoint saved at step %d in %s (student of that step in %s); continue with --resume", run.Step(), *out, studentPath)
	}
	if progress != nil {
		fmt.Fprintf(progress, "done: %d steps in %s of training; student in %s\n", run.Step(), run.Elapsed().Round(time.Second), studentPath)
	}
	return nil
}

// encodeBatch turns a pair batch into scaled TAESD3 latents, without
// gradients: z_L from the bicubic-upsampled LR clamped to [0, 1] (as an
// image, the form the upscaler encodes), z_H from the HR crop.
func encodeBatch(enc *taesd.Encoder, b *data.Batch) distill.Batch {
	defer tensor.NoGrad()()
	hr := tensor.FromData(b.HR, b.N, 3, b.Size, b.Size)
	lr := tensor.Clamp(tensor.FromData(b.LRUp, b.N, 3, b.Size, b.Size), 0, 1)
	return distill.Batch{
		ZL: tensor.Scale(enc.Forward(lr), taesd.LatentScale),
		ZH: tensor.Scale(enc.Forward(hr), taesd.LatentScale),
		HR: hr,
	}
}

// writeLossCSV writes the per-step rows of metrics.jsonl as CSV with the
// columns of lossColumns (empty where a step has no such value).
func writeLossCSV(metricsPath, csvPath string) error {
	rows, err := train.ReadMetrics(metricsPath)
	if err != nil {
		return err
	}
	var buf bytes.Buffer
	w := csv.NewWriter(&buf)
	w.Write(lossColumns)
	for _, row := range rows {
		rec := make([]string, len(lossColumns))
		for i, k := range lossColumns {
			if v, ok := row[k]; ok {
				rec[i] = strconv.FormatFloat(v, 'g', -1, 64)
			}
		}
		w.Write(rec)
	}
	w.Flush()
	if err := w.Error(); err != nil {
		return err
	}
	return train.WriteFileAtomic(csvPath, buf.Bytes())
}

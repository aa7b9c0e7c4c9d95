package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"tsdsr/latents"
	"tsdsr/model/mmdit"
	"tsdsr/nn"
	"tsdsr/rng"
	"tsdsr/train"
)

func init() {
	register(&command{name: "train", summary: "train a model (train prior: the flow-matching latent prior)", run: runTrain})
	registerTrainer("prior", "flow-matching MMDiT prior on TAESD3 latents of HR photos", runTrainPrior)
}

// trainers are the subcommands of "tsdsr train" (prior here; the
// distillation trainer registers its own).
var trainers = map[string]*command{}

func registerTrainer(name, summary string, run func(context.Context, []string) error) {
	if _, dup := trainers[name]; dup {
		panic("tsdsr: duplicate trainer " + name)
	}
	trainers[name] = &command{name: name, summary: summary, run: run}
}

// runSub dispatches "tsdsr <cmd> <sub> [flags]" to one of subs.
func runSub(ctx context.Context, cmd string, subs map[string]*command, args []string) error {
	if len(args) > 0 {
		if c, ok := subs[args[0]]; ok {
			return c.run(ctx, args[1:])
		}
	}
	w := os.Stderr
	if len(args) > 0 && (args[0] == "-h" || args[0] == "--help") {
		w = os.Stdout
	} else if len(args) > 0 {
		fmt.Fprintf(w, "tsdsr %s: unknown %s %q\n\n", cmd, cmd, args[0])
	}
	fmt.Fprintf(w, "Usage: tsdsr %s <what> [flags]   (tsdsr %s <what> -h for its flags)\n\n", cmd, cmd)
	listCommands(w, subs)
	if w == os.Stdout {
		return flag.ErrHelp
	}
	return errUsage
}

func runTrain(ctx context.Context, args []string) error { return runSub(ctx, "train", trainers, args) }

// runFlags are the flags of every trainer's run directory: where it is,
// resuming it, the checkpoint period, and --threads and --quiet.
type runFlags struct {
	jobFlags
	out       string
	resume    bool
	saveEvery int
}

func (r *runFlags) register(fs *flag.FlagSet, saveEvery int) {
	fs.StringVar(&r.out, "out", "", "run directory")
	fs.BoolVar(&r.resume, "resume", false, "continue the run in OUT from its latest checkpoint")
	fs.IntVar(&r.saveEvery, "save-every", saveEvery, "checkpoint period in steps (also at the end and on Ctrl-C)")
	r.jobFlags.register(fs)
}

const trainPriorUsage = `Usage: tsdsr train prior --out DIR --steps N [--config model.json] [--data DIR] [--cache FILE] [--resume] [flags]

Trains the MMDiT prior by flow matching (SD3: loss = MSE(v, eps - x0), logit-normal noise levels,
shift 3) on TAESD3 latents of random HR crops. The latents are encoded once into --cache
(built from --data when the file does not exist). OUT gets config.json, checkpoints/,
state.json, metrics.jsonl, loss.png and train.log; Ctrl-C saves a checkpoint, and --resume
continues exactly where it stopped.

`

func runTrainPrior(ctx context.Context, args []string) error {
	fs := newFlagSet("train prior", trainPriorUsage)
	def := train.DefaultPriorOptions()
	config := fs.String("config", "", "model config JSON (diffusers SD3 keys + context_tokens; default: the built-in small prior)")
	initFrom := fs.String("init", "", "start from these weights (safetensors, e.g. an earlier run's EMA) with a fresh optimiser")
	dataDir := fs.String("data", "", "directory of HR photos for the latent cache")
	cache := fs.String("cache", "", "latent cache file (default OUT/latents.safetensors); built from --data if missing")
	crop := fs.Int("crop", 256, "HR crop side for a new cache (latents are crop/8)")
	perPhoto := fs.Int("crops-per-photo", 8, "crops per photo for a new cache")
	steps := fs.Int("steps", def.Steps, "optimiser steps")
	batch := fs.Int("batch", def.Batch, "latents per step")
	lr := fs.Float64("lr", def.LR, "peak learning rate (cosine decay after warm-up)")
	warmup := fs.Int("warmup", def.Warmup, "linear warm-up steps")
	wd := fs.Float64("weight-decay", def.WeightDecay, "AdamW weight decay")
	clip := fs.Float64("clip", def.ClipNorm, "gradient-norm clipping (0: none)")
	ema := fs.Float64("ema", def.EMADecay, "EMA decay of the weights (0: no EMA)")
	logitMean := fs.Float64("logit-mean", def.LogitMean, "mean of the logit-normal noise-level density")
	logitStd := fs.Float64("logit-std", def.LogitStd, "std of the logit-normal noise-level density")
	seed := fs.Uint64("seed", 0, "seed of the initialisation, batches, noise and the cache")
	valEvery := fs.Int("val-every", def.EvalEvery, "validation period in steps (also run at the end)")
	valFraction := fs.Float64("val-fraction", 0.05, "fraction of photos held out for validation")
	valN := fs.Int("val-n", 64, "held-out latents in the validation loss (0: all)")
	var rd runFlags
	rd.register(fs, def.SaveEvery)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if rd.out == "" || *steps <= 0 || *batch <= 0 || *lr <= 0 || fs.NArg() > 0 {
		fs.Usage()
		return errUsage
	}
	progress := rd.start()
	cfg := mmdit.Small()
	if *config != "" {
		var err error
		if cfg, err = mmdit.LoadConfig(*config); err != nil {
			return err
		}
	}
	if err := cfg.Validate(); err != nil {
		return err
	}
	if *cache == "" {
		*cache = filepath.Join(rd.out, "latents.safetensors")
	}
	if err := os.MkdirAll(rd.out, 0o755); err != nil {
		return err
	}
	c, err := latents.Open(ctx, *cache, *dataDir, latents.BuildOptions{Crop: *crop, PerPhoto: *perPhoto, Seed: *seed}, progress)
	if err != nil {
		return err
	}
	if s := c.Latents.Shape[2]; !cfg.Fits(s) {
		return fmt.Errorf("latents of %d px (crop %d) do not fit patch %d and position grid %d", s, c.Crop, cfg.PatchSize, cfg.PosEmbedMaxSize)
	}
	model, err := mmdit.New(cfg, nn.NewParams(rng.New(*seed)))
	if err != nil {
		return err
	}
	if *initFrom != "" && !rd.resume {
		// On --resume the checkpoint holds the weights: the file is not read
		// (it may be gone), only compared with the recipe's record.
		if err := model.LoadWeights(*initFrom); err != nil {
			return fmt.Errorf("--init %s: %w", *initFrom, err)
		}
	}
	recipe := train.PriorRecipe{Model: cfg, Steps: *steps, Batch: *batch, LR: *lr, Warmup: *warmup, WeightDecay: *wd,
		Clip: *clip, EMA: *ema, LogitMean: *logitMean, LogitStd: *logitStd,
		Cache:       train.CacheInfo{Source: c.Source, Crop: c.Crop, Seed: c.Seed, Count: len(c.Photo)},
		ValFraction: *valFraction, ValN: *valN, ValEvery: *valEvery, Init: *initFrom}
	o := def
	o.SaveEvery = rd.saveEvery
	res, err := train.RunPrior(ctx, train.PriorRun{Dir: rd.out, Seed: *seed, Resume: rd.resume, Recipe: recipe, Model: model,
		Cache: c, CacheName: *cache, Options: o, Progress: progress})
	if errors.Is(err, context.Canceled) {
		return fmt.Errorf("interrupted: checkpoint saved at step %d in %s; continue with --resume", res.Step, rd.out)
	}
	if err != nil {
		return err
	}
	if v := res.Val; v != nil && progress != nil {
		fmt.Fprintf(progress, "step %d: validation loss %.4f (sigma 0.2/0.5/0.8: %.4f %.4f %.4f)\n", int(v["step"]),
			v["val"], v["val_0.2"], v["val_0.5"], v["val_0.8"])
	}
	if progress != nil {
		fmt.Fprintf(progress, "done: %d steps in %s of training; weights in %s\n", res.Step, res.Elapsed.Round(time.Second), rd.out)
	}
	return nil
}

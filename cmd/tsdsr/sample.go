package main

import (
	"context"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/schollz/progressbar/v3"

	"tsdsr/imageio"
	"tsdsr/internal/parallel"
	"tsdsr/latents"
	"tsdsr/model/taesd"
	"tsdsr/sample"
	"tsdsr/train"
)

// samplers are the subcommands of "tsdsr sample".
var samplers = map[string]*command{
	"prior": {name: "prior", summary: "unconditional samples of the flow-matching prior, decoded by TAESD3", run: runSamplePrior},
}

func init() {
	register(&command{name: "sample", summary: "draw samples from a trained model (sample prior)", run: func(ctx context.Context, args []string) error {
		return runSub(ctx, "sample", samplers, args)
	}})
}

const samplePriorUsage = `Usage: tsdsr sample prior --model DIR|FILE -o grid.png [--steps 28] [--n 16] [--size 256] [--seed S]

Draws n latents from N(0, I), integrates the prior's flow with an Euler sampler over SD3's
shift-3 schedule, decodes them with TAESD3 and writes them as a grid. --model is a training
run directory (latest checkpoint, EMA weights) or a weights file with config.json beside it.

`

func runSamplePrior(ctx context.Context, args []string) error {
	fs := newFlagSet("sample prior", samplePriorUsage)
	model := fs.String("model", "", "run directory or weights file")
	part := fs.String("weights", "ema", "checkpoint part of a run directory: ema or model")
	steps := fs.Int("steps", 28, "Euler steps")
	n := fs.Int("n", 16, "samples")
	size := fs.Int("size", 256, "image side in pixels (a multiple of 8 x patch size)")
	seed := fs.Uint64("seed", 0, "noise seed")
	batch := fs.Int("batch", 4, "samples per model pass")
	cols := fs.Int("cols", 0, "grid columns (0: about sqrt(n))")
	output := fs.String("o", "", "output image (png, jpg, webp)")
	var job jobFlags
	job.register(fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *model == "" || *output == "" || *steps < 1 || *n < 1 || *batch < 1 || *size < taesd.Factor || *size%taesd.Factor != 0 || fs.NArg() > 0 {
		fs.Usage()
		return errUsage
	}
	progress := job.start()
	m, weights, err := train.LoadPrior(*model, *part)
	if err != nil {
		return err
	}
	s := *size / taesd.Factor
	if !m.Config.Fits(s) {
		return fmt.Errorf("size %d gives %dx%d latents, which do not fit patch %d and position grid %d", *size, s, s, m.Config.PatchSize, m.Config.PosEmbedMaxSize)
	}
	_, dec, err := taesd.Embedded()
	if err != nil {
		return err
	}
	var bar *progressbar.ProgressBar
	if progress != nil {
		fmt.Fprintf(progress, "sampling %d images of %dx%d from %s (%d steps)\n", *n, *size, *size, weights, *steps)
		bar = progressbar.NewOptions(*n**steps, progressbar.OptionSetWriter(progress),
			progressbar.OptionSetDescription("sampling"), progressbar.OptionShowCount(),
			progressbar.OptionSetPredictTime(true), progressbar.OptionSetWidth(25),
			progressbar.OptionThrottle(200*time.Millisecond))
	}
	o := sample.PriorOptions{Steps: *steps, N: *n, Size: *size, Batch: *batch, Seed: *seed}
	if bar != nil {
		o.Progress = func(k int) { bar.Add(k) }
	}
	images, err := sample.Prior(ctx, m, dec, o)
	if err != nil {
		return err
	}
	if progress != nil {
		bar.Finish()
		fmt.Fprintln(progress)
	}
	if err := imageio.WriteFile(*output, sample.Grid(images, *cols), nil); err != nil {
		return err
	}
	if progress != nil {
		fmt.Fprintf(progress, "wrote %s\n", *output)
	}
	return nil
}

func init() {
	samplers["denoise"] = &command{name: "denoise", summary: "one-step denoising of held-out latents: PSNR of x0 predictions vs noisy input and blur", run: runSampleDenoise}
}

const sampleDenoiseUsage = `Usage: tsdsr sample denoise --model DIR|FILE --cache FILE [--n 16] [--sigmas 0.2,0.5,0.8] [-o grid.png]

Noises held-out latents of the cache (the photos training held out) at each sigma and prints
the mean RGB PSNR against the decoded clean latent of: the decoded noisy latent, the best
Gaussian blur of it (sigma 0.5-8 px, chosen per level) and the decoded x0 prediction.
-o writes a grid: clean, then noisy and predicted per level, one row per latent.

`

// runSampleDenoise measures the prior as a denoiser, the check that
// it learned the data: held-out latents are noised at fixed levels, and the
// decoded x0 prediction x_t - sigma v is compared (RGB PSNR) with the decoded
// noisy input, with the best of several Gaussian blurs of it, all against
// the decoded clean latent (the cache holds latents, not pixels).
func runSampleDenoise(ctx context.Context, args []string) error {
	fs := newFlagSet("sample denoise", sampleDenoiseUsage)
	model := fs.String("model", "", "run directory or weights file")
	part := fs.String("weights", "ema", "checkpoint part of a run directory: ema or model")
	cache := fs.String("cache", "", "latent cache (default MODEL/latents.safetensors)")
	valFraction := fs.Float64("val-fraction", -1, "held-out photo fraction (default: the run's, else 0.05)")
	n := fs.Int("n", 16, "held-out latents")
	sigmaList := fs.String("sigmas", "0.2,0.5,0.8", "noise levels")
	seed := fs.Uint64("seed", 0, "noise seed")
	output := fs.String("o", "", "optional grid image")
	threads := fs.Int("threads", 0, "worker threads (0 = all cores)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	var sigmas []float32
	for _, f := range strings.Split(*sigmaList, ",") {
		v, err := strconv.ParseFloat(strings.TrimSpace(f), 32)
		if err != nil || v <= 0 || v > 1 {
			fs.Usage()
			return errUsage
		}
		sigmas = append(sigmas, float32(v))
	}
	if *model == "" || *n < 1 || fs.NArg() > 0 {
		fs.Usage()
		return errUsage
	}
	if *threads > 0 {
		parallel.SetThreads(*threads)
	}
	m, weights, err := train.LoadPrior(*model, *part)
	if err != nil {
		return err
	}
	if *cache == "" {
		*cache = filepath.Join(*model, "latents.safetensors")
	}
	if *valFraction < 0 {
		*valFraction = 0.05
		if r, err := train.ReadPriorRecipe(*model); err == nil {
			*valFraction = r.ValFraction
		}
	}
	c, err := latents.Load(*cache)
	if err != nil {
		return err
	}
	_, val := c.Split(*valFraction)
	if val.Len() == 0 {
		return fmt.Errorf("%s has no held-out latents at --val-fraction %g", *cache, *valFraction)
	}
	x0 := val.First(*n)
	_, dec, err := taesd.Embedded()
	if err != nil {
		return err
	}
	fmt.Printf("denoising %d held-out latents (%s) with %s; RGB PSNR (dB) against the decoded clean latent\n",
		x0.Shape[0], *cache, weights)
	fmt.Printf("%6s  %8s  %8s  %10s  %11s\n", "sigma", "noisy", "blur", "(blur px)", "prediction")
	rep, err := sample.Denoise(ctx, m, dec, x0, sigmas, *seed)
	if err != nil {
		return err
	}
	for _, l := range rep.Levels {
		fmt.Printf("%6g  %8.2f  %8.2f  %10g  %11.2f\n", l.Sigma, l.Noisy, l.Blur, l.BlurPx, l.Predicted)
	}
	if *output == "" {
		return nil
	}
	return imageio.WriteFile(*output, rep.Grid(), nil)
}

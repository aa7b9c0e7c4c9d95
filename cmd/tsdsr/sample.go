package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/schollz/progressbar/v3"

	"tsdsr/degrade"
	"tsdsr/flow"
	"tsdsr/imageio"
	"tsdsr/internal/parallel"
	"tsdsr/latents"
	"tsdsr/model/mmdit"
	"tsdsr/model/taesd"
	"tsdsr/nn"
	"tsdsr/rng"
	"tsdsr/safetensors"
	"tsdsr/tensor"
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

// loadPrior reads a prior from
//   - a training run directory (one with state.json): config.json and the
//     latest checkpoint's part, or its "model" weights when it has no such part;
//   - a directory with config.json and <part>.safetensors or model.safetensors;
//   - a weights file, with config.json beside it or in the run directory
//     above its checkpoint.
func loadPrior(path, part string) (*mmdit.Model, string, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, "", err
	}
	var weights string
	configDirs := []string{path}
	if !st.IsDir() {
		weights = path
		d := filepath.Dir(path)
		configDirs = []string{d, filepath.Dir(filepath.Dir(d))}
	} else {
		var candidates []string
		if _, err := train.ReadState(path); err == nil {
			for _, p := range []string{part, "model"} {
				w, _ := train.LatestPart(path, p)
				candidates = append(candidates, w)
			}
		} else {
			candidates = []string{filepath.Join(path, part+".safetensors"), filepath.Join(path, "model.safetensors")}
		}
		for _, w := range candidates {
			if _, err := os.Stat(w); err == nil {
				weights = w
				break
			}
		}
		if weights == "" {
			return nil, "", fmt.Errorf("%s: no weights (looked for %v)", path, candidates)
		}
	}
	var cfgPath string
	for _, d := range configDirs {
		if _, err := os.Stat(filepath.Join(d, "config.json")); err == nil {
			cfgPath = filepath.Join(d, "config.json")
			break
		}
	}
	if cfgPath == "" {
		return nil, "", fmt.Errorf("no config.json for %s", weights)
	}
	cfg, err := mmdit.LoadConfig(cfgPath)
	if err != nil {
		return nil, "", err
	}
	params := nn.NewParams(nil)
	m, err := mmdit.New(cfg, params)
	if err != nil {
		return nil, "", err
	}
	f, err := safetensors.Load(weights)
	if err != nil {
		return nil, "", err
	}
	if _, err := params.Load(f, true); err != nil {
		return nil, "", fmt.Errorf("%s: %w", weights, err)
	}
	params.Freeze()
	return m, weights, nil
}

func runSamplePrior(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("sample prior", flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "Usage: tsdsr sample prior --model DIR|FILE -o grid.png [--steps 28] [--n 16] [--size 256] [--seed S]")
		fmt.Fprintln(fs.Output(), "\nDraws n latents from N(0, I), integrates the prior's flow with an Euler sampler over SD3's")
		fmt.Fprintln(fs.Output(), "shift-3 schedule, decodes them with TAESD3 and writes them as a grid. --model is a training")
		fmt.Fprint(fs.Output(), "run directory (latest checkpoint, EMA weights) or a weights file with config.json beside it.\n\n")
		fs.PrintDefaults()
	}
	model := fs.String("model", "", "run directory or weights file")
	part := fs.String("weights", "ema", "checkpoint part of a run directory: ema or model")
	steps := fs.Int("steps", 28, "Euler steps")
	n := fs.Int("n", 16, "samples")
	size := fs.Int("size", 256, "image side in pixels (a multiple of 8 x patch size)")
	seed := fs.Uint64("seed", 0, "noise seed")
	batch := fs.Int("batch", 4, "samples per model pass")
	cols := fs.Int("cols", 0, "grid columns (0: about sqrt(n))")
	output := fs.String("o", "", "output image (png, jpg, webp)")
	threads := fs.Int("threads", 0, "worker threads (0 = all cores)")
	quiet := fs.Bool("quiet", false, "no progress bar")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *model == "" || *output == "" || *steps < 1 || *n < 1 || *batch < 1 || *size < taesd.Factor || *size%taesd.Factor != 0 || fs.NArg() > 0 {
		fs.Usage()
		return errUsage
	}
	if *threads > 0 {
		parallel.SetThreads(*threads)
	}
	m, weights, err := loadPrior(*model, *part)
	if err != nil {
		return err
	}
	s := *size / taesd.Factor
	if s%m.Config.PatchSize != 0 || s/m.Config.PatchSize > m.Config.PosEmbedMaxSize {
		return fmt.Errorf("size %d gives %dx%d latents, which do not fit patch %d and position grid %d", *size, s, s, m.Config.PatchSize, m.Config.PosEmbedMaxSize)
	}
	_, dec, err := taesd.Embedded()
	if err != nil {
		return err
	}
	var progress io.Writer = os.Stderr
	if *quiet {
		progress = nil
	}
	var bar *progressbar.ProgressBar
	if progress != nil {
		fmt.Fprintf(progress, "sampling %d images of %dx%d from %s (%d steps)\n", *n, *size, *size, weights, *steps)
		bar = progressbar.NewOptions(*n**steps, progressbar.OptionSetWriter(progress),
			progressbar.OptionSetDescription("sampling"), progressbar.OptionShowCount(),
			progressbar.OptionSetPredictTime(true), progressbar.OptionSetWidth(25),
			progressbar.OptionThrottle(200*time.Millisecond))
	}
	var canceled error
	velocity := func(x *tensor.Tensor, t []float32) *tensor.Tensor {
		if ctx.Err() != nil {
			// Stop cheaply: the rest of the batch is thrown away.
			canceled = ctx.Err()
			return tensor.New(x.Shape...)
		}
		v := m.Velocity(x, t)
		if bar != nil {
			bar.Add(x.Shape[0])
		}
		return v
	}
	// Sample i's noise comes from its own generator, so the images do not
	// depend on --batch.
	sigmas := flow.SD3().InferenceSigmas(*steps)
	images := make([]*tensor.Tensor, 0, *n)
	for lo := 0; lo < *n; lo += *batch {
		hi := min(*n, lo+*batch)
		per := 16 * s * s
		x := tensor.New(hi-lo, 16, s, s)
		for i := lo; i < hi; i++ {
			rng.New(*seed).Child(uint64(i)).FillNormal(x.Data[(i-lo)*per:(i-lo+1)*per], 0, 1)
		}
		z := flow.Sample(velocity, x, sigmas)
		if canceled != nil {
			return canceled
		}
		restore := tensor.NoGrad()
		for i := range hi - lo {
			zi := tensor.FromData(z.Data[i*per:(i+1)*per], 1, 16, s, s)
			images = append(images, dec.Forward(tensor.Scale(zi, 1/taesd.LatentScale)))
		}
		restore()
	}
	if progress != nil {
		bar.Finish()
		fmt.Fprintln(progress)
	}
	if err := imageio.WriteFile(*output, grid(images, *cols), nil); err != nil {
		return err
	}
	if progress != nil {
		fmt.Fprintf(progress, "wrote %s\n", *output)
	}
	return nil
}

// gridPad is the white gap between grid cells, in pixels.
const gridPad = 2

// grid lays out images [1, 3, H, W] (values clamped to [0, 1]) in rows of
// cols cells (about square when cols is 0) on a white background.
func grid(images []*tensor.Tensor, cols int) *imageio.Image {
	h, w := images[0].Shape[2], images[0].Shape[3]
	if cols <= 0 {
		cols = int(math.Ceil(math.Sqrt(float64(len(images)))))
	}
	cols = min(cols, len(images))
	rows := (len(images) + cols - 1) / cols
	gw, gh := cols*w+(cols+1)*gridPad, rows*h+(rows+1)*gridPad
	out := imageio.NewImage(gw, gh, 3)
	for i := range out.Pix {
		out.Pix[i] = 1
	}
	for k, img := range images {
		x0, y0 := gridPad+(k%cols)*(w+gridPad), gridPad+(k/cols)*(h+gridPad)
		for c := range 3 {
			for y := range h {
				src := img.Data[(c*h+y)*w:][:w]
				dst := out.Pix[c*gw*gh+(y0+y)*gw+x0:][:w]
				for x, v := range src {
					dst[x] = min(1, max(0, v))
				}
			}
		}
	}
	return out
}

func init() {
	samplers["denoise"] = &command{name: "denoise", summary: "one-step denoising of held-out latents: PSNR of x0 predictions vs noisy input and blur", run: runSampleDenoise}
}

// runSampleDenoise measures the prior as a denoiser, the check that
// it learned the data: held-out latents are noised at fixed levels, and the
// decoded x0 prediction x_t - sigma v is compared (RGB PSNR) with the decoded
// noisy input, with the best of several Gaussian blurs of it, all against
// the decoded clean latent (the cache holds latents, not pixels).
func runSampleDenoise(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("sample denoise", flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "Usage: tsdsr sample denoise --model DIR|FILE --cache FILE [--n 16] [--sigmas 0.2,0.5,0.8] [-o grid.png]")
		fmt.Fprintln(fs.Output(), "\nNoises held-out latents of the cache (the photos training held out) at each sigma and prints")
		fmt.Fprintln(fs.Output(), "the mean RGB PSNR against the decoded clean latent of: the decoded noisy latent, the best")
		fmt.Fprintln(fs.Output(), "Gaussian blur of it (sigma 0.5-8 px, chosen per level) and the decoded x0 prediction.")
		fmt.Fprint(fs.Output(), "-o writes a grid: clean, then noisy and predicted per level, one row per latent.\n\n")
		fs.PrintDefaults()
	}
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
	m, weights, err := loadPrior(*model, *part)
	if err != nil {
		return err
	}
	if *cache == "" {
		*cache = filepath.Join(*model, "latents.safetensors")
	}
	if *valFraction < 0 {
		*valFraction = 0.05
		if st, err := train.ReadState(*model); err == nil {
			var r priorRecipe
			if json.Unmarshal(st.Config, &r) == nil {
				*valFraction = r.ValFraction
			}
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
	defer tensor.NoGrad()()
	clean := decodeAll(dec, x0)
	fmt.Printf("denoising %d held-out latents (%s) with %s; RGB PSNR (dB) against the decoded clean latent\n",
		len(clean), *cache, weights)
	fmt.Printf("%6s  %8s  %8s  %10s  %11s\n", "sigma", "noisy", "blur", "(blur px)", "prediction")
	cols := [][]*tensor.Tensor{clean}
	per := x0.Numel() / x0.Shape[0]
	for k, sg := range sigmas {
		if err := ctx.Err(); err != nil {
			return err
		}
		eps := tensor.New(x0.Shape...)
		rng.New(*seed).Child(uint64(k)).FillNormal(eps.Data, 0, 1)
		sig := make([]float32, x0.Shape[0])
		for i := range sig {
			sig[i] = sg
		}
		xt := flow.Noise(x0, eps, sig)
		pred := tensor.New(x0.Shape...)
		for lo := 0; lo < x0.Shape[0]; lo += 4 {
			hi := min(x0.Shape[0], lo+4)
			shape := append([]int{hi - lo}, x0.Shape[1:]...)
			xb := tensor.FromData(xt.Data[lo*per:hi*per], shape...)
			v := m.Velocity(xb, flow.Timesteps(sig[lo:hi]))
			copy(pred.Data[lo*per:hi*per], flow.X0(xb, v, sig[lo:hi]).Data)
		}
		noisy, denoised := decodeAll(dec, xt), decodeAll(dec, pred)
		pNoisy, pPred := meanPSNR(noisy, clean), meanPSNR(denoised, clean)
		bestBlur, bestPx := math.Inf(-1), 0.0
		for _, px := range []float64{0.5, 1, 2, 4, 8} {
			blurred := make([]*tensor.Tensor, len(noisy))
			for i, im := range noisy {
				blurred[i] = gaussianBlur(im, px)
			}
			if p := meanPSNR(blurred, clean); p > bestBlur {
				bestBlur, bestPx = p, px
			}
		}
		fmt.Printf("%6g  %8.2f  %8.2f  %10g  %11.2f\n", sg, pNoisy, bestBlur, bestPx, pPred)
		cols = append(cols, noisy, denoised)
	}
	if *output == "" {
		return nil
	}
	var cells []*tensor.Tensor
	for i := range clean {
		for _, col := range cols {
			cells = append(cells, col[i])
		}
	}
	return imageio.WriteFile(*output, grid(cells, len(cols)), nil)
}

// decodeAll decodes scaled latents [N, 16, h, w] one at a time (bounding
// memory) into images [1, 3, 8h, 8w] clamped to [0, 1].
func decodeAll(dec *taesd.Decoder, z *tensor.Tensor) []*tensor.Tensor {
	per := z.Numel() / z.Shape[0]
	out := make([]*tensor.Tensor, z.Shape[0])
	for i := range out {
		zi := tensor.FromData(z.Data[i*per:(i+1)*per], append([]int{1}, z.Shape[1:]...)...)
		out[i] = tensor.Clamp(dec.Forward(tensor.Scale(zi, 1/taesd.LatentScale)), 0, 1)
	}
	return out
}

// meanPSNR is the mean over pairs of the RGB PSNR (peak 1) of a against b.
func meanPSNR(a, b []*tensor.Tensor) float64 {
	var sum float64
	for i := range a {
		var se float64
		for j, v := range a[i].Data {
			d := float64(v - b[i].Data[j])
			se += d * d
		}
		sum += 10 * math.Log10(float64(len(a[i].Data))/max(se, 1e-20))
	}
	return sum / float64(len(a))
}

// gaussianBlur blurs each plane of an image [1, 3, H, W] with a Gaussian of
// std px pixels (reflected borders).
func gaussianBlur(im *tensor.Tensor, px float64) *tensor.Tensor {
	h, w := im.Shape[2], im.Shape[3]
	size := 2*int(math.Ceil(3*px)) + 1
	k1 := degrade.GaussianKernel1D(size, px)
	k := make([]float32, size*size)
	for y := range size {
		for x := range size {
			k[y*size+x] = float32(k1[y] * k1[x])
		}
	}
	out := tensor.New(im.Shape...)
	for c := range 3 {
		copy(out.Data[c*h*w:(c+1)*h*w], degrade.Correlate(im.Data[c*h*w:(c+1)*h*w], w, h, k, size, size))
	}
	return out
}

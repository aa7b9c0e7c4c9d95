package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"strings"
	"time"

	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"

	"tsdsr/batch"
	"tsdsr/catalog"
	"tsdsr/imageio"
	"tsdsr/internal/parallel"
	"tsdsr/internal/sysmem"
	"tsdsr/internal/termsafe"
	"tsdsr/sr"
)

// shiftsUsage is --shifts' text in upscale and serve.
const shiftsUsage = "token-grid phases the restoration is averaged over: 1, 2 or 4 (each phase is one more pass, so 2 doubles the time; cancels a 16-pixel grid; 0 = the model's default)"

func init() {
	register(&command{name: "upscale", summary: "upscale photos (a file or a folder) 4x", run: runUpscale})
}

// upscaleConfig is the parsed command line of `tsdsr upscale`.
type upscaleConfig struct {
	batch.Options
	quiet bool
}

func runUpscale(ctx context.Context, args []string) error {
	fl := flag.NewFlagSet("upscale", flag.ContinueOnError)
	var c upscaleConfig
	var (
		scale, width, height, threads, tile, tileOverlap, shifts int
		outscale                                                 float64
		colorFix, format, model                                  string
		sd3                                                      catalog.SD3Files
	)
	fl.StringVar(&c.In, "i", "", "input image file or folder (required)")
	fl.StringVar(&c.In, "input", "", "same as -i")
	fl.StringVar(&c.Out, "o", "", "output file, or folder when -i is a folder (required)")
	fl.StringVar(&c.Out, "output", "", "same as -o")
	fl.BoolVar(&c.Recursive, "recursive", false, "walk sub-folders of an input folder, mirroring them in the output")
	fl.IntVar(&scale, "s", 4, "native model scale (the model's own; use --outscale for other sizes)")
	fl.IntVar(&scale, "scale", 4, "same as -s")
	fl.Float64Var(&outscale, "outscale", 0, "output scale F: the model runs at its native scale, then a Lanczos resize gives round(F*w) x round(F*h)")
	fl.IntVar(&width, "width", 0, "output width in pixels (height follows the aspect ratio unless --height is set)")
	fl.IntVar(&height, "height", 0, "output height in pixels")
	fl.IntVar(&tile, "tile", 64, "model tile size in latent pixels (0 = the model's default); unused by the bicubic baseline")
	fl.IntVar(&tileOverlap, "tile-overlap", 8, "tile overlap in latent pixels; unused by the bicubic baseline")
	fl.IntVar(&shifts, "shifts", 0, shiftsUsage)
	fl.StringVar(&colorFix, "color-fix", "wavelet", "colour fix: wavelet, adain or none")
	fl.StringVar(&format, "format", "", "output format: png, jpg, or webp-if-possible (writes png: Go has no WebP encoder); default: from -o's extension for a file, the input's format for a folder")
	fl.IntVar(&c.Quality, "quality", imageio.DefaultJPEGQuality, "JPEG quality 1..100")
	fl.StringVar(&c.Suffix, "suffix", "", "added to output file names in folder mode, e.g. _x4")
	fl.BoolVar(&c.SkipExisting, "skip-existing", false, "skip inputs whose output exists")
	fl.BoolVar(&c.Overwrite, "overwrite", false, "replace existing outputs (inputs are never overwritten)")
	fl.StringVar(&model, "model", "", "model: a student checkpoint (.safetensors from tsdsr train distill) or a built-in name (tsdsr models); default: the embedded default model")
	fl.StringVar(&sd3.SD3, "sd3", "", "run the official TSD-SR model: a diffusers Stable Diffusion 3 folder (transformer/, vae/); needs --lora and --embeds and about 10 GB of RAM")
	fl.StringVar(&sd3.LoRA, "lora", "", "with --sd3: folder of TSD-SR's LoRA files (transformer.safetensors, vae.safetensors)")
	fl.StringVar(&sd3.Embeds, "embeds", "", "with --sd3: folder of TSD-SR's prompt embeddings (prompt_embeds.pt, pool_embeds.pt, or .safetensors)")
	fl.BoolVar(&sd3.BF16, "sd3-bf16", false, "with --sd3: keep the transformer's weights as bfloat16 after loading (4 GB less memory; outputs within about 1e-3)")
	fl.IntVar(&threads, "threads", 0, "worker threads (0 = all cores)")
	fl.BoolVar(&c.quiet, "quiet", false, "print only errors")
	fl.IntVar(&c.MaxPixels, "max-pixels", 0, fmt.Sprintf("refuse inputs with more pixels than this, from the header (0 = %d)", imageio.DefaultMaxPixels))
	fl.IntVar(&c.MaxOutPixels, "max-output-pixels", batch.DefaultMaxOutPixels, "refuse a file whose output would have more pixels than this, before upscaling it (it also needs to fit in the available memory)")
	fl.Usage = func() {
		fmt.Fprintln(fl.Output(), "Usage: tsdsr upscale -i IN -o OUT [flags]\n\nIN and OUT are both files or both folders. Alpha, gray and 16-bit inputs keep\ntheir alpha, gray-ness and depth. Exit status 1 if any file failed.\n\nFlags:")
		fl.PrintDefaults()
	}
	if err := parseFlags(fl, args); err != nil {
		return err
	}
	if fl.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q (use -i and -o)", fl.Args())
	}
	if c.In == "" || c.Out == "" {
		fl.Usage()
		return errUsage
	}
	switch {
	case c.Quality < 1 || c.Quality > 100:
		return fmt.Errorf("--quality %d: want 1..100", c.Quality)
	case width < 0 || height < 0 || outscale < 0 || tile < 0 || tileOverlap < 0 || c.MaxOutPixels < 0:
		return errors.New("--width, --height, --outscale, --tile, --tile-overlap and --max-output-pixels must not be negative")
	case math.IsNaN(outscale) || math.IsInf(outscale, 0):
		return fmt.Errorf("--outscale %v: want a finite factor", outscale)
	case c.SkipExisting && c.Overwrite:
		return errors.New("--skip-existing and --overwrite contradict each other")
	}
	switch strings.ToLower(format) {
	case "":
	case "png":
		c.Format = "png"
	case "jpg", "jpeg":
		c.Format = "jpeg"
	case "webp-if-possible", "webp":
		c.Format = "png"
		if !c.quiet {
			fmt.Fprintln(os.Stderr, "tsdsr upscale: WebP encoding is not available (no pure-Go encoder); writing PNG")
		}
	default:
		return fmt.Errorf("--format %q: want png, jpg or webp-if-possible", format)
	}
	cf, err := sr.ParseColorFix(colorFix)
	if err != nil {
		return err
	}
	if err := sr.ValidateTiling(tile, tileOverlap); err != nil {
		return fmt.Errorf("--tile %d --tile-overlap %d: %w", tile, tileOverlap, err)
	}
	if err := sr.ValidateShifts(shifts); err != nil {
		return fmt.Errorf("--shifts: %w", err)
	}
	var up sr.Upscaler
	switch {
	case sd3.SD3 == "" && (sd3.LoRA != "" || sd3.Embeds != "" || sd3.BF16):
		return errors.New("--lora, --embeds and --sd3-bf16 go with --sd3")
	case sd3.SD3 != "":
		if model != "" || scale != 4 {
			return errors.New("--sd3 runs the official 4x TSD-SR model: drop --model and --scale")
		}
		if sd3.LoRA == "" || sd3.Embeds == "" {
			return errors.New("--sd3 needs --lora DIR (TSD-SR's transformer.safetensors) and --embeds DIR (prompt_embeds.pt, pool_embeds.pt)")
		}
		sd3.Tile, sd3.Overlap = tile, tileOverlap
		lowerGCPercent(sd3GCPercent)
		if up, err = catalog.LoadSD3(sd3); err != nil {
			return err
		}
	default:
		if up, err = catalog.Open(model, scale); err != nil {
			return err
		}
	}
	if err := sr.CheckTiling(up, tile, tileOverlap); err != nil {
		return fmt.Errorf("--tile %d --tile-overlap %d: %w", tile, tileOverlap, err)
	}
	if threads > 0 {
		parallel.SetThreads(threads)
	}
	c.Memory = sysmem.AvailableBytes
	pipe := sr.New(up, &sr.Options{
		OutScale: outscale, Width: width, Height: height, ColorFix: cf,
		Model: sr.ModelOptions{Tile: tile, TileOverlap: tileOverlap, Shifts: shifts},
	})
	jobs, earlier, err := batch.Plan(&c.Options)
	if err != nil {
		return err
	}
	if earlier > 0 && !c.quiet {
		fmt.Fprintf(os.Stderr, "tsdsr upscale: left out %d earlier result(s) of tsdsr upscale in the output folder (marked %q)\n", earlier, batch.SoftwareMark)
	}
	if err := batch.CheckWritable(jobs); err != nil {
		return err
	}
	return runJobs(ctx, pipe, jobs, &c, os.Stderr, term.IsTerminal(int(os.Stderr.Fd())))
}

// runJobs runs the batch with a progress bar on a terminal, or a line a
// file otherwise, and the summary.
func runJobs(ctx context.Context, pipe *sr.Pipeline, jobs []*batch.Job, c *upscaleConfig, stderr io.Writer, tty bool) error {
	var bar *progressbar.ProgressBar
	if tty && !c.quiet && len(jobs) > 1 {
		bar = progressbar.NewOptions(len(jobs), progressbar.OptionSetWriter(stderr),
			progressbar.OptionSetDescription("upscaling"), progressbar.OptionShowCount(),
			progressbar.OptionSetPredictTime(true), progressbar.OptionClearOnFinish(),
			progressbar.OptionSetWidth(30), progressbar.OptionThrottle(100*time.Millisecond))
	}
	say := func(always bool, format string, args ...any) {
		if c.quiet && !always {
			return
		}
		if bar != nil {
			bar.Clear()
		}
		// Names are quoted where they are formatted; messages from below
		// (decoder errors) may still hold raw ones.
		fmt.Fprintf(stderr, "%s\n", termsafe.Escape(fmt.Sprintf(format, args...), false))
	}
	q := termsafe.Name
	sum := batch.Run(ctx, pipe, &c.Options, jobs, batch.Events{
		Cleaned: func(n int, dir string) {
			say(false, "removed %d temporary files left in %s by an interrupted run", n, q(dir))
		},
		Done: func(j *batch.Job, note string) {
			if bar == nil {
				say(false, "%s -> %s %s", q(j.In), q(j.Out), note)
			}
		},
		Skipped: func(j *batch.Job) { say(false, "skip %s: %s exists", q(j.In), q(j.Out)) },
		Failed:  func(j *batch.Job, err error) { say(true, "tsdsr upscale: %s: %v", q(j.In), err) },
		Warn:    func(j *batch.Job, w string) { say(false, "tsdsr upscale: %s: %s", q(j.In), w) },
		Next: func() {
			if bar != nil {
				bar.Add(1)
			}
		},
	})
	if bar != nil {
		bar.Finish()
	}
	if sum.Interrupted {
		return fmt.Errorf("interrupted: %s; no partial files written", sum)
	}
	if sum.Failed > 0 {
		return fmt.Errorf("%s", sum)
	}
	say(false, "%s", sum)
	return nil
}

package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"

	"tsdsr/imageio"
	"tsdsr/internal/parallel"
	"tsdsr/models"
	"tsdsr/sr"
)

func init() {
	register(&command{name: "upscale", summary: "upscale photos (a file or a folder) 4x", run: runUpscale})
}

// parseBytes reads a size such as 1500000, 512MB, 2GiB or 1.5G (decimal
// units for B/KB/MB/GB, binary for KiB/MiB/GiB and the bare K/M/G).
func parseBytes(s string) (int64, error) {
	t := strings.TrimSpace(strings.ToUpper(s))
	mult := 1.0
	for _, u := range []struct {
		suffix string
		m      float64
	}{{"KIB", 1 << 10}, {"MIB", 1 << 20}, {"GIB", 1 << 30}, {"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9}, {"K", 1 << 10}, {"M", 1 << 20}, {"G", 1 << 30}, {"B", 1}} {
		if strings.HasSuffix(t, u.suffix) {
			t, mult = strings.TrimSpace(strings.TrimSuffix(t, u.suffix)), u.m
			break
		}
	}
	v, err := strconv.ParseFloat(t, 64)
	if err != nil || v < 0 || v*mult > 1<<62 {
		return 0, fmt.Errorf("bad size %q (e.g. 1500000, 512MB, 2GiB)", s)
	}
	return int64(v * mult), nil
}

// imageExts are the inputs a folder walk picks up.
var imageExts = map[string]bool{".png": true, ".jpg": true, ".jpeg": true, ".webp": true, ".bmp": true, ".tif": true, ".tiff": true, ".gif": true}

// job is one input file and where its result goes.
type job struct {
	in, out, format string
	err             error // set when the job is refused before running
}

// upscaleConfig is the parsed command line of `tsdsr upscale`.
type upscaleConfig struct {
	in, out                 string
	recursive               bool
	format                  string // "", "png" or "jpeg"
	quality                 int
	suffix                  string
	skipExisting, overwrite bool
	quiet                   bool
	maxPixels               int
}

func runUpscale(ctx context.Context, args []string) error {
	fl := flag.NewFlagSet("upscale", flag.ContinueOnError)
	var c upscaleConfig
	var (
		scale, width, height, threads, tile, tileOverlap int
		outscale                                         float64
		maxMemory, colorFix, format, model               string
		sd3                                              models.SD3Files
		seed                                             uint64
	)
	fl.StringVar(&c.in, "i", "", "input image file or folder (required)")
	fl.StringVar(&c.in, "input", "", "same as -i")
	fl.StringVar(&c.out, "o", "", "output file, or folder when -i is a folder (required)")
	fl.StringVar(&c.out, "output", "", "same as -o")
	fl.BoolVar(&c.recursive, "recursive", false, "walk sub-folders of an input folder, mirroring them in the output")
	fl.IntVar(&scale, "s", 4, "native model scale (the model's own; use --outscale for other sizes)")
	fl.IntVar(&scale, "scale", 4, "same as -s")
	fl.Float64Var(&outscale, "outscale", 0, "output scale F: the model runs at its native scale, then a Lanczos resize gives round(F*w) x round(F*h)")
	fl.IntVar(&width, "width", 0, "output width in pixels (height follows the aspect ratio unless --height is set)")
	fl.IntVar(&height, "height", 0, "output height in pixels")
	fl.IntVar(&tile, "tile", 64, "model tile size in latent pixels (0 = from --max-memory); unused by the bicubic baseline")
	fl.IntVar(&tileOverlap, "tile-overlap", 8, "tile overlap in latent pixels; unused by the bicubic baseline")
	fl.StringVar(&maxMemory, "max-memory", "", "memory budget for automatic tiling, e.g. 1.5GB; unused by the bicubic baseline")
	fl.StringVar(&colorFix, "color-fix", "wavelet", "colour fix: wavelet, adain or none")
	fl.StringVar(&format, "format", "", "output format: png, jpg, or webp-if-possible (writes png: Go has no WebP encoder); default: from -o's extension for a file, the input's format for a folder")
	fl.IntVar(&c.quality, "quality", imageio.DefaultJPEGQuality, "JPEG quality 1..100")
	fl.StringVar(&c.suffix, "suffix", "", "added to output file names in folder mode, e.g. _x4")
	fl.BoolVar(&c.skipExisting, "skip-existing", false, "skip inputs whose output exists")
	fl.BoolVar(&c.overwrite, "overwrite", false, "replace existing outputs (inputs are never overwritten)")
	fl.StringVar(&model, "model", "", "model: a student checkpoint (.safetensors from tsdsr train distill) or a built-in name (tsdsr models); default: the embedded default model")
	fl.StringVar(&sd3.SD3, "sd3", "", "run the official TSD-SR model: a diffusers Stable Diffusion 3 folder (transformer/, vae/); needs --lora and --embeds and about 10 GB of RAM")
	fl.StringVar(&sd3.LoRA, "lora", "", "with --sd3: folder of TSD-SR's LoRA files (transformer.safetensors, vae.safetensors)")
	fl.StringVar(&sd3.Embeds, "embeds", "", "with --sd3: folder of TSD-SR's prompt embeddings (prompt_embeds.pt, pool_embeds.pt, or .safetensors)")
	fl.BoolVar(&sd3.BF16, "sd3-bf16", false, "with --sd3: keep the transformer's weights as bfloat16 after loading (4 GB less memory; outputs within about 1e-3)")
	fl.IntVar(&threads, "threads", 0, "worker threads (0 = all cores)")
	fl.Uint64Var(&seed, "seed", 0, "seed for the model's noise: same input and seed, same bytes")
	fl.BoolVar(&c.quiet, "quiet", false, "print only errors")
	fl.IntVar(&c.maxPixels, "max-pixels", 0, fmt.Sprintf("refuse inputs with more pixels than this, from the header (0 = %d)", imageio.DefaultMaxPixels))
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
	if c.in == "" || c.out == "" {
		fl.Usage()
		return errUsage
	}
	switch {
	case c.quality < 1 || c.quality > 100:
		return fmt.Errorf("--quality %d: want 1..100", c.quality)
	case width < 0 || height < 0 || outscale < 0 || tile < 0 || tileOverlap < 0:
		return errors.New("--width, --height, --outscale, --tile and --tile-overlap must not be negative")
	case c.skipExisting && c.overwrite:
		return errors.New("--skip-existing and --overwrite contradict each other")
	}
	switch strings.ToLower(format) {
	case "":
	case "png":
		c.format = "png"
	case "jpg", "jpeg":
		c.format = "jpeg"
	case "webp-if-possible", "webp":
		c.format = "png"
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
	var mem int64
	if maxMemory != "" {
		if mem, err = parseBytes(maxMemory); err != nil {
			return fmt.Errorf("--max-memory: %w", err)
		}
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
		if up, err = models.LoadSD3(sd3); err != nil {
			return err
		}
	default:
		if up, err = models.Open(model, scale); err != nil {
			return err
		}
	}
	if threads > 0 {
		parallel.SetThreads(threads)
	}
	pipe := sr.New(up, &sr.Options{
		OutScale: outscale, Width: width, Height: height, ColorFix: cf,
		Model: sr.ModelOptions{Tile: tile, TileOverlap: tileOverlap, MaxMemory: mem, Seed: seed},
	})
	jobs, err := planJobs(&c)
	if err != nil {
		return err
	}
	return runJobs(ctx, pipe, jobs, &c, os.Stderr, term.IsTerminal(int(os.Stderr.Fd())))
}

// planJobs lists the inputs and their outputs, refusing up front any output
// that would overwrite an input or another output.
func planJobs(c *upscaleConfig) ([]*job, error) {
	st, err := os.Stat(c.in)
	if err != nil {
		return nil, err
	}
	var jobs []*job
	if !st.IsDir() {
		out := c.out
		if ost, err := os.Stat(out); err == nil && ost.IsDir() {
			f := c.format
			if f == "" {
				f = defaultFormat(c.in)
			}
			out = filepath.Join(out, outputName(c.in, c.suffix, f))
		}
		f := c.format
		if f == "" {
			f = imageio.FormatFromPath(out)
		} else if ext := strings.ToLower(filepath.Ext(out)); ext == ".webp" {
			out = strings.TrimSuffix(out, filepath.Ext(out)) + ".png"
		}
		if f == "" {
			return nil, fmt.Errorf("-o %s: unknown extension (want .png, .jpg or .jpeg, or give --format)", out)
		}
		jobs = append(jobs, &job{in: c.in, out: out, format: f})
	} else {
		if ost, err := os.Stat(c.out); err == nil && !ost.IsDir() {
			return nil, fmt.Errorf("-i is a folder, so -o must be one too: %s is a file", c.out)
		}
		outAbs := absPath(c.out)
		err := filepath.WalkDir(c.in, func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if d.IsDir() {
				// The output folder may sit inside the input folder: never
				// take earlier results for inputs.
				if path != c.in && (!c.recursive || strings.HasPrefix(d.Name(), ".") || absPath(path) == outAbs) {
					return filepath.SkipDir
				}
				return nil
			}
			if strings.HasPrefix(d.Name(), ".") || !imageExts[strings.ToLower(filepath.Ext(path))] {
				return nil
			}
			rel, err := filepath.Rel(c.in, path)
			if err != nil {
				return err
			}
			f := c.format
			if f == "" {
				f = defaultFormat(path)
			}
			out := filepath.Join(c.out, filepath.Dir(rel), outputName(path, c.suffix, f))
			jobs = append(jobs, &job{in: path, out: out, format: f})
			return nil
		})
		if err != nil {
			return nil, err
		}
		if len(jobs) == 0 {
			return nil, fmt.Errorf("no images in %s (looked for %s)", c.in, "png, jpg, webp, bmp, tiff, gif")
		}
	}

	inputs := map[string]bool{}
	for _, j := range jobs {
		inputs[absPath(j.in)] = true
	}
	outputs := map[string]string{}
	for _, j := range jobs {
		a := absPath(j.out)
		if inputs[a] || sameFile(j.in, j.out) {
			j.err = fmt.Errorf("refusing to write %s: it is an input (choose another -o or a --suffix)", j.out)
		} else if prev, dup := outputs[a]; dup {
			j.err = fmt.Errorf("output %s is also the output of %s", j.out, prev)
		} else {
			outputs[a] = j.in
		}
	}
	return jobs, nil
}

// defaultFormat keeps JPEG inputs JPEG; everything else becomes PNG, the
// one lossless format imageio writes (with alpha and 16 bits).
func defaultFormat(in string) string {
	if imageio.FormatFromPath(in) == "jpeg" {
		return "jpeg"
	}
	return "png"
}

// outputName is in's base name with suffix and the extension of format.
func outputName(in, suffix, format string) string {
	ext := ".png"
	if format == "jpeg" {
		ext = ".jpg"
	}
	base := filepath.Base(in)
	return strings.TrimSuffix(base, filepath.Ext(base)) + suffix + ext
}

func absPath(p string) string {
	a, err := filepath.Abs(p)
	if err != nil {
		return filepath.Clean(p)
	}
	return a
}

// sameFile reports whether a and b are the same existing file (hard links
// and symlinks included).
func sameFile(a, b string) bool {
	sa, err1 := os.Stat(a)
	sb, err2 := os.Stat(b)
	return err1 == nil && err2 == nil && os.SameFile(sa, sb)
}

// runJobs upscales the jobs one after another (each uses every core),
// reporting failures and going on; it stops at cancellation. Results are
// written atomically, so an interrupted file leaves nothing behind.
func runJobs(ctx context.Context, pipe *sr.Pipeline, jobs []*job, c *upscaleConfig, stderr io.Writer, tty bool) error {
	start := time.Now()
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
		fmt.Fprintf(stderr, format+"\n", args...)
	}
	var done, skipped, failed int
	interrupted := false
	for _, j := range jobs {
		if ctx.Err() != nil {
			interrupted = true
			break
		}
		err := j.err
		if err == nil {
			var msg string
			msg, err = runJob(ctx, pipe, j, c)
			switch {
			case errors.Is(err, errSkipped):
				skipped++
				say(false, "skip %s: %s exists", j.in, j.out)
			case err == nil:
				done++
				if bar == nil {
					say(false, "%s -> %s %s", j.in, j.out, msg)
				}
			}
		}
		if err != nil && !errors.Is(err, errSkipped) {
			if ctx.Err() != nil && errors.Is(err, ctx.Err()) {
				interrupted = true
				break
			}
			failed++
			say(true, "tsdsr upscale: %s: %v", j.in, err)
		}
		if bar != nil {
			bar.Add(1)
		}
	}
	if bar != nil {
		bar.Finish()
	}
	summary := fmt.Sprintf("%d upscaled, %d skipped, %d failed of %d in %v", done, skipped, failed, len(jobs), time.Since(start).Round(time.Millisecond))
	if interrupted {
		return fmt.Errorf("interrupted: %s; no partial files written", summary)
	}
	if failed > 0 {
		return fmt.Errorf("%s", summary)
	}
	say(false, "%s", summary)
	return nil
}

var errSkipped = errors.New("skipped")

// runJob reads, upscales and writes one file, returning a short note.
func runJob(ctx context.Context, pipe *sr.Pipeline, j *job, c *upscaleConfig) (string, error) {
	if _, err := os.Stat(j.out); err == nil {
		if c.skipExisting {
			return "", errSkipped
		}
		if !c.overwrite {
			return "", fmt.Errorf("%s exists (use --overwrite or --skip-existing)", j.out)
		}
	}
	t0 := time.Now()
	in, err := imageio.ReadFile(j.in, &imageio.DecodeOptions{MaxPixels: c.maxPixels})
	if err != nil {
		return "", err
	}
	out, err := pipe.UpscaleImage(ctx, in)
	if err != nil {
		return "", err
	}
	if err := os.MkdirAll(filepath.Dir(j.out), 0o755); err != nil {
		return "", err
	}
	if err := imageio.WriteFile(j.out, out, &imageio.EncodeOptions{Format: j.format, Quality: c.quality}); err != nil {
		return "", err
	}
	return fmt.Sprintf("(%dx%d -> %dx%d, %v)", in.Width, in.Height, out.Width, out.Height, time.Since(t0).Round(time.Millisecond)), nil
}

package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"

	"tsdsr/imageio"
	"tsdsr/internal/atomicfile"
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
	maxOutPixels            int
	// memory returns the memory the process may still use (0: unknown);
	// nil skips the memory check.
	memory func() int64
}

func runUpscale(ctx context.Context, args []string) error {
	fl := flag.NewFlagSet("upscale", flag.ContinueOnError)
	var c upscaleConfig
	var (
		scale, width, height, threads, tile, tileOverlap int
		outscale                                         float64
		colorFix, format, model                          string
		sd3                                              models.SD3Files
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
	fl.IntVar(&tile, "tile", 64, "model tile size in latent pixels (0 = the model's default); unused by the bicubic baseline")
	fl.IntVar(&tileOverlap, "tile-overlap", 8, "tile overlap in latent pixels; unused by the bicubic baseline")
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
	fl.BoolVar(&c.quiet, "quiet", false, "print only errors")
	fl.IntVar(&c.maxPixels, "max-pixels", 0, fmt.Sprintf("refuse inputs with more pixels than this, from the header (0 = %d)", imageio.DefaultMaxPixels))
	fl.IntVar(&c.maxOutPixels, "max-output-pixels", defaultMaxOutPixels, "refuse a file whose output would have more pixels than this, before upscaling it (it also needs to fit in the available memory)")
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
	case width < 0 || height < 0 || outscale < 0 || tile < 0 || tileOverlap < 0 || c.maxOutPixels < 0:
		return errors.New("--width, --height, --outscale, --tile, --tile-overlap and --max-output-pixels must not be negative")
	case math.IsNaN(outscale) || math.IsInf(outscale, 0):
		return fmt.Errorf("--outscale %v: want a finite factor", outscale)
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
	if err := sr.ValidateTiling(tile, tileOverlap); err != nil {
		return fmt.Errorf("--tile %d --tile-overlap %d: %w", tile, tileOverlap, err)
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
	if err := sr.CheckTiling(up, tile, tileOverlap); err != nil {
		return fmt.Errorf("--tile %d --tile-overlap %d: %w", tile, tileOverlap, err)
	}
	if threads > 0 {
		parallel.SetThreads(threads)
	}
	if c.maxOutPixels == 0 {
		c.maxOutPixels = defaultMaxOutPixels
	}
	c.memory = availableMemory
	pipe := sr.New(up, &sr.Options{
		OutScale: outscale, Width: width, Height: height, ColorFix: cf,
		Model: sr.ModelOptions{Tile: tile, TileOverlap: tileOverlap},
	})
	jobs, earlier, err := planJobs(&c)
	if err != nil {
		return err
	}
	if earlier > 0 && !c.quiet {
		fmt.Fprintf(os.Stderr, "tsdsr upscale: left out %d earlier result(s) of tsdsr upscale in the output folder (marked %q)\n", earlier, softwareMark)
	}
	if err := checkWritable(jobs); err != nil {
		return err
	}
	return runJobs(ctx, pipe, jobs, &c, os.Stderr, term.IsTerminal(int(os.Stderr.Fd())))
}

// defaultMaxOutPixels bounds an output: 400 megapixels (20000 x 20000),
// 4.8 GB per float32 RGB copy; the memory check usually binds first.
const defaultMaxOutPixels = 400_000_000

// peakBytes estimates the memory (resident, Go's collector included) that
// upscaling a w x h input to ow x oh with up takes beyond the loaded model:
// per pixel at the native scale, per pixel of a resized output, and the
// model's tile working set. Measured with /usr/bin/time on 2 cores, the
// built-in student peaked at 0.27 GB for 0.07 MP at native scale (a
// single small tile), 0.95 GB for 1 MP and 1.44 GB for 4 MP (full tiles:
// about 0.75 GB plus 165 bytes a pixel); bicubic at 0.63 GB for 12 MP; an
// 8x outscale added 0.38 GB for 16 MP of output. For --sd3, whose tiles
// are larger, it is a lower bound.
func peakBytes(up sr.Upscaler, w, h, ow, oh int) int64 {
	s := up.Scale()
	native := int64(w*s) * int64(h*s)
	out := int64(ow) * int64(oh)
	if out == native {
		out = 0
	}
	per, base := int64(100), int64(64<<20)
	if _, ok := up.(*sr.OneStep); ok {
		per, base = 170, 768<<20
	}
	return base + per*native + 30*out
}

// checkOutput refuses, before any upscaling, an output that is larger than
// --max-output-pixels, than the available memory allows, or than the
// format can hold; the message says what would fit.
func checkOutput(pipe *sr.Pipeline, c *upscaleConfig, j *job, w, h int) error {
	ow, oh, err := pipe.OutputSize(w, h)
	if err != nil {
		return err
	}
	if float64(ow)*float64(oh) > float64(c.maxOutPixels) { // float: no overflow

		return fmt.Errorf("output %dx%d (%.0f MP) is larger than --max-output-pixels %d: choose a smaller --outscale/--width/--height", ow, oh, float64(ow)*float64(oh)/1e6, c.maxOutPixels)
	}
	if c.memory != nil {
		if need, avail := peakBytes(pipe.Upscaler(), w, h, ow, oh), c.memory(); avail > 0 && need > avail {
			return fmt.Errorf("output %dx%d needs about %.1f GB of memory, %.1f GB are available: choose a smaller --outscale/--width/--height", ow, oh, float64(need)/1e9, float64(avail)/1e9)
		}
	}
	if j.format == "jpeg" && (ow > 65535 || oh > 65535) {
		return fmt.Errorf("output %dx%d: JPEG sides are at most 65535 pixels (write PNG)", ow, oh)
	}
	return nil
}

// availableMemory is the memory this process may still take: Linux's
// MemAvailable, bounded by a cgroup v2 limit, or 0 when unknown.
func availableMemory() int64 {
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return 0
	}
	var avail int64
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "MemAvailable:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			if err != nil {
				return 0
			}
			avail = kb << 10
		}
	}
	if b, err := os.ReadFile("/sys/fs/cgroup/memory.max"); err == nil {
		if limit, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64); err == nil {
			used := int64(0)
			if b, err := os.ReadFile("/sys/fs/cgroup/memory.current"); err == nil {
				used, _ = strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
			}
			if free := limit - used; avail == 0 || free < avail {
				avail = max(free, 1)
			}
		}
	}
	return avail
}

// checkWritable makes sure the output folder can be written to, by creating
// and removing a file there, before anything is upscaled.
func checkWritable(jobs []*job) error {
	for _, j := range jobs {
		if j.err != nil {
			continue
		}
		dir := filepath.Dir(j.out)
		for {
			if _, err := os.Stat(dir); err == nil || filepath.Dir(dir) == dir {
				break
			}
			dir = filepath.Dir(dir) // the nearest folder that exists
		}
		f, err := os.CreateTemp(dir, ".tsdsr-write-test-*")
		if err != nil {
			return fmt.Errorf("output folder %s is not writable: %w", quoteName(dir), err)
		}
		f.Close()
		os.Remove(f.Name())
		return nil
	}
	return nil
}

// softwareMark is recorded in every output of tsdsr upscale (PNG tEXt
// "Software", JPEG comment): a folder walk that finds it on a file inside the
// output folder knows the file for an earlier result, whatever its name.
const softwareMark = "tsdsr upscale"

// planJobs lists the inputs and their outputs, refusing up front any output
// that would overwrite an input or another output. In folder mode it walks
// the folder -i names (through a symlink too), takes only regular files
// (a symlink to one included; pipes, devices and links to them become
// per-file errors), does not descend into the output folder (paths compared
// resolved), and leaves out files in the output folder that carry
// softwareMark; it returns how many it left out that way.
func planJobs(c *upscaleConfig) ([]*job, int, error) {
	st, err := os.Stat(c.in)
	if err != nil {
		return nil, 0, err
	}
	var jobs []*job
	earlier := 0
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
			return nil, 0, fmt.Errorf("-o %s: unknown extension (want .png, .jpg or .jpeg, or give --format)", quoteName(out))
		}
		jobs = append(jobs, &job{in: c.in, out: out, format: f})
	} else {
		if ost, err := os.Stat(c.out); err == nil && !ost.IsDir() {
			return nil, 0, fmt.Errorf("-i is a folder, so -o must be one too: %s is a file", quoteName(c.out))
		}
		// WalkDir does not follow a symlink given as its root: walk the
		// folder it names, and report paths under -i as given.
		root, err := filepath.EvalSymlinks(c.in)
		if err != nil {
			return nil, 0, err
		}
		outReal := resolvePath(c.out)
		err = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if d.IsDir() {
				// The output folder may sit inside the input folder: never
				// take earlier results for inputs.
				if path != root && (!c.recursive || strings.HasPrefix(d.Name(), ".") || resolvePath(path) == outReal) {
					return filepath.SkipDir
				}
				return nil
			}
			if strings.HasPrefix(d.Name(), ".") || !imageExts[strings.ToLower(filepath.Ext(path))] {
				return nil
			}
			rel, err := filepath.Rel(root, path)
			if err != nil {
				return err
			}
			in := filepath.Join(c.in, rel)
			if within(resolvePath(filepath.Dir(path)), outReal) {
				if sw, err := imageio.ReadSoftware(path); err == nil && sw == softwareMark {
					earlier++
					return nil
				}
			}
			f := c.format
			if f == "" {
				f = defaultFormat(path)
			}
			// Pipes, devices and symlinks to them are jobs that
			// imageio.ReadFile refuses before reading a byte.
			jobs = append(jobs, &job{in: in, out: filepath.Join(c.out, filepath.Dir(rel), outputName(path, c.suffix, f)), format: f})
			return nil
		})
		if err != nil {
			return nil, 0, err
		}
		if len(jobs) == 0 && earlier == 0 {
			return nil, 0, fmt.Errorf("no images in %s (looked for %s)", quoteName(c.in), "png, jpg, webp, bmp, tiff, gif")
		}
	}

	inputs := map[string]bool{}
	for _, j := range jobs {
		inputs[absPath(j.in)] = true
	}
	outputs := map[string]string{}
	for _, j := range jobs {
		a := absPath(j.out)
		if j.err != nil {
			continue
		} else if inputs[a] || sameFile(j.in, j.out) {
			j.err = fmt.Errorf("refusing to write %s: it is an input (choose another -o or a --suffix)", quoteName(j.out))
		} else if prev, dup := outputs[a]; dup {
			j.err = fmt.Errorf("output %s is also the output of %s", quoteName(j.out), quoteName(prev))
		} else {
			outputs[a] = j.in
		}
	}
	return jobs, earlier, nil
}

// resolvePath is p made absolute with every symlink resolved; for a path
// that does not exist yet, the longest existing prefix is resolved.
func resolvePath(p string) string {
	a := absPath(p)
	var rest []string
	for {
		if r, err := filepath.EvalSymlinks(a); err == nil {
			return filepath.Join(append([]string{r}, rest...)...)
		}
		parent := filepath.Dir(a)
		if parent == a {
			return absPath(p)
		}
		rest = append([]string{filepath.Base(a)}, rest...)
		a = parent
	}
}

// within reports whether path is dir or lies under it (both resolved).
func within(path, dir string) bool {
	rel, err := filepath.Rel(dir, path)
	return err == nil && rel != ".." && !strings.HasPrefix(rel, ".."+string(filepath.Separator)) && !filepath.IsAbs(rel)
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
		// Names are quoted where they are formatted; messages from below
		// (decoder errors) may still hold raw ones.
		fmt.Fprintf(stderr, "%s\n", escapeControl(fmt.Sprintf(format, args...), false))
	}
	removeStaleTemps(jobs, func(n int, dir string) {
		say(false, "removed %d temporary files left in %s by an interrupted run", n, quoteName(dir))
	})
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
			msg, err = runJob(ctx, pipe, j, c, func(warning string) { say(false, "tsdsr upscale: %s: %s", quoteName(j.in), warning) })
			switch {
			case errors.Is(err, errSkipped):
				skipped++
				say(false, "skip %s: %s exists", quoteName(j.in), quoteName(j.out))
			case err == nil:
				done++
				if bar == nil {
					say(false, "%s -> %s %s", quoteName(j.in), quoteName(j.out), msg)
				}
			}
		}
		if err != nil && !errors.Is(err, errSkipped) {
			if ctx.Err() != nil && errors.Is(err, ctx.Err()) {
				interrupted = true
				break
			}
			failed++
			say(true, "tsdsr upscale: %s: %v", quoteName(j.in), err)
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

// runJob reads, upscales and writes one file, returning a short note; warn
// reports what the user should know about a result (alpha dropped).
func runJob(ctx context.Context, pipe *sr.Pipeline, j *job, c *upscaleConfig, warn func(string)) (string, error) {
	if _, err := os.Stat(j.out); err == nil {
		if c.skipExisting {
			return "", errSkipped
		}
		if !c.overwrite {
			return "", fmt.Errorf("%s exists (use --overwrite or --skip-existing)", quoteName(j.out))
		}
	}
	t0 := time.Now()
	in, err := imageio.ReadFile(j.in, &imageio.DecodeOptions{MaxPixels: c.maxPixels})
	if err != nil {
		return "", err
	}
	if err := checkOutput(pipe, c, j, in.Width, in.Height); err != nil {
		return "", err
	}
	out, err := pipe.UpscaleImage(ctx, in)
	if err != nil {
		return "", err
	}
	if j.format == "jpeg" && out.Alpha != nil {
		warn("JPEG has no alpha channel: transparency dropped (write PNG to keep it)")
	}
	if err := os.MkdirAll(filepath.Dir(j.out), 0o755); err != nil {
		return "", err
	}
	if err := imageio.WriteFile(j.out, out, &imageio.EncodeOptions{Format: j.format, Quality: c.quality, Software: softwareMark}); err != nil {
		return "", err
	}
	return fmt.Sprintf("(%dx%d -> %dx%d, %v)", in.Width, in.Height, out.Width, out.Height, time.Since(t0).Round(time.Millisecond)), nil
}

// removeStaleTemps deletes, in every output folder, the temporary files an
// earlier run killed while writing one of these outputs left behind (see
// atomicfile.RemoveStale: only older than atomicfile.StaleAge, so another
// run's write in progress is safe), reporting each folder cleaned.
func removeStaleTemps(jobs []*job, report func(n int, dir string)) {
	byDir := map[string]map[string]bool{}
	for _, j := range jobs {
		d := filepath.Dir(j.out)
		if byDir[d] == nil {
			byDir[d] = map[string]bool{}
		}
		byDir[d][filepath.Base(j.out)] = true
	}
	for d, names := range byDir {
		if n, _ := atomicfile.RemoveStale(d, func(name string) bool { return names[name] }, atomicfile.StaleAge); n > 0 {
			report(n, d)
		}
	}
}

// Package batch upscales a photo or a folder of photos into an output file
// or folder, the way `tsdsr upscale` does, without losing data: it plans every
// job before running one (refusing outputs that would overwrite an input or
// each other, and earlier results found in the output folder), refuses a file
// whose output would not fit in memory before reading its pixels, writes each
// result atomically, and goes on after a file fails.
//
// Messages name the command's flags (--overwrite, --max-output-pixels), the
// options a library user sets through Options.
package batch

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"tsdsr/imageio"
	"tsdsr/internal/atomicfile"
	"tsdsr/internal/termsafe"
	"tsdsr/sr"
)

// DefaultMaxOutPixels bounds an output: 400 megapixels (20000 x 20000),
// 4.8 GB per float32 RGB copy; the memory check usually binds first.
const DefaultMaxOutPixels = 400_000_000

// SoftwareMark is recorded in every output (PNG tEXt "Software", JPEG
// comment): a folder walk that finds it on a file inside the output folder
// knows the file for an earlier result, whatever its name.
const SoftwareMark = "tsdsr upscale"

// ImageExts are the inputs a folder walk picks up.
var ImageExts = map[string]bool{".png": true, ".jpg": true, ".jpeg": true, ".webp": true, ".bmp": true, ".tif": true, ".tiff": true, ".gif": true}

// ErrSkipped is a job's result when its output exists and
// Options.SkipExisting is set.
var ErrSkipped = errors.New("skipped")

// Options describe a batch: where inputs come from and how results are
// written.
type Options struct {
	In, Out                 string // both files, or both folders
	Recursive               bool   // walk sub-folders of In, mirrored in Out
	Format                  string // "", "png" or "jpeg" ("": from Out's extension, or the input's format)
	Quality                 int    // JPEG quality 1..100 (0: imageio's default)
	Suffix                  string // added to output names in folder mode
	SkipExisting, Overwrite bool   // what to do with an existing output (neither: refuse the job)
	MaxPixels               int    // input limit from the header (0: imageio.DefaultMaxPixels)
	MaxOutPixels            int    // output limit (0: DefaultMaxOutPixels)
	// Memory returns the memory the process may still use (0: unknown),
	// e.g. sysmem.AvailableBytes; nil skips the memory check.
	Memory func() int64
}

// Job is one input file and where its result goes.
type Job struct {
	In, Out, Format string
	Err             error // set when the job is refused before running
}

// Plan lists the inputs and their outputs, refusing up front (Job.Err) any
// output that would overwrite an input or another output. In folder mode it
// walks the folder In names (through a symlink too), takes only regular
// files (a symlink to one included; pipes, devices and links to them become
// per-file errors), does not descend into the output folder (paths compared
// resolved), and leaves out files in the output folder that carry
// SoftwareMark; it returns how many it left out that way.
func Plan(o *Options) (jobs []*Job, earlier int, err error) {
	st, err := os.Stat(o.In)
	if err != nil {
		return nil, 0, err
	}
	if !st.IsDir() {
		j, err := planFile(o)
		if err != nil {
			return nil, 0, err
		}
		jobs = []*Job{j}
	} else if jobs, earlier, err = planFolder(o); err != nil {
		return nil, 0, err
	}
	inputs := map[string]bool{}
	for _, j := range jobs {
		inputs[absPath(j.In)] = true
	}
	outputs := map[string]string{}
	for _, j := range jobs {
		a := absPath(j.Out)
		switch prev, dup := outputs[a]; {
		case j.Err != nil:
		case inputs[a] || sameFile(j.In, j.Out):
			j.Err = fmt.Errorf("refusing to write %s: it is an input (choose another -o or a --suffix)", termsafe.Name(j.Out))
		case dup:
			j.Err = fmt.Errorf("output %s is also the output of %s", termsafe.Name(j.Out), termsafe.Name(prev))
		default:
			outputs[a] = j.In
		}
	}
	return jobs, earlier, nil
}

func planFile(o *Options) (*Job, error) {
	out := o.Out
	if ost, err := os.Stat(out); err == nil && ost.IsDir() {
		f := o.Format
		if f == "" {
			f = defaultFormat(o.In)
		}
		out = filepath.Join(out, outputName(o.In, o.Suffix, f))
	}
	f := o.Format
	if f == "" {
		f = imageio.FormatFromPath(out)
	} else if ext := strings.ToLower(filepath.Ext(out)); ext == ".webp" {
		out = strings.TrimSuffix(out, filepath.Ext(out)) + ".png"
	}
	if f == "" {
		return nil, fmt.Errorf("-o %s: unknown extension (want .png, .jpg or .jpeg, or give --format)", termsafe.Name(out))
	}
	return &Job{In: o.In, Out: out, Format: f}, nil
}

func planFolder(o *Options) ([]*Job, int, error) {
	if ost, err := os.Stat(o.Out); err == nil && !ost.IsDir() {
		return nil, 0, fmt.Errorf("-i is a folder, so -o must be one too: %s is a file", termsafe.Name(o.Out))
	}
	// WalkDir does not follow a symlink given as its root: walk the folder
	// it names, and report paths under In as given.
	root, err := filepath.EvalSymlinks(o.In)
	if err != nil {
		return nil, 0, err
	}
	var jobs []*Job
	earlier := 0
	outReal := resolvePath(o.Out)
	err = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			// The output folder may sit inside the input folder: never take
			// earlier results for inputs.
			if path != root && (!o.Recursive || strings.HasPrefix(d.Name(), ".") || resolvePath(path) == outReal) {
				return filepath.SkipDir
			}
			return nil
		}
		if strings.HasPrefix(d.Name(), ".") || !ImageExts[strings.ToLower(filepath.Ext(path))] {
			return nil
		}
		rel, err := filepath.Rel(root, path)
		if err != nil {
			return err
		}
		if within(resolvePath(filepath.Dir(path)), outReal) {
			if sw, err := imageio.ReadSoftware(path); err == nil && sw == SoftwareMark {
				earlier++
				return nil
			}
		}
		f := o.Format
		if f == "" {
			f = defaultFormat(path)
		}
		// Pipes, devices and symlinks to them are jobs that imageio.ReadFile
		// refuses before reading a byte.
		jobs = append(jobs, &Job{In: filepath.Join(o.In, rel), Out: filepath.Join(o.Out, filepath.Dir(rel), outputName(path, o.Suffix, f)), Format: f})
		return nil
	})
	if err != nil {
		return nil, 0, err
	}
	if len(jobs) == 0 && earlier == 0 {
		return nil, 0, fmt.Errorf("no images in %s (looked for %s)", termsafe.Name(o.In), "png, jpg, webp, bmp, tiff, gif")
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

// CheckWritable makes sure the output folder can be written to, by
// creating and removing a file there, before anything is upscaled.
func CheckWritable(jobs []*Job) error {
	for _, j := range jobs {
		if j.Err != nil {
			continue
		}
		dir := filepath.Dir(j.Out)
		for {
			if _, err := os.Stat(dir); err == nil || filepath.Dir(dir) == dir {
				break
			}
			dir = filepath.Dir(dir) // the nearest folder that exists
		}
		f, err := os.CreateTemp(dir, ".tsdsr-write-test-*")
		if err != nil {
			return fmt.Errorf("output folder %s is not writable: %w", termsafe.Name(dir), err)
		}
		f.Close()
		os.Remove(f.Name())
		return nil
	}
	return nil
}

// CheckOutput refuses, before any upscaling, an output of a w x h input
// that is larger than MaxOutPixels, than the available memory allows
// (sr.Pipeline.PeakMemory), or than j's format can hold; the message says
// what would fit.
func CheckOutput(pipe *sr.Pipeline, o *Options, j *Job, w, h int) error {
	ow, oh, err := pipe.OutputSize(w, h)
	if err != nil {
		return err
	}
	limit := o.MaxOutPixels
	if limit == 0 {
		limit = DefaultMaxOutPixels
	}
	if float64(ow)*float64(oh) > float64(limit) { // float: no overflow
		return fmt.Errorf("output %dx%d (%.0f MP) is larger than --max-output-pixels %d: choose a smaller --outscale/--width/--height", ow, oh, float64(ow)*float64(oh)/1e6, limit)
	}
	if o.Memory != nil {
		need, err := pipe.PeakMemory(w, h)
		if err != nil {
			return err
		}
		if avail := o.Memory(); avail > 0 && need > avail {
			return fmt.Errorf("output %dx%d needs about %.1f GB of memory, %.1f GB are available: choose a smaller --outscale/--width/--height", ow, oh, float64(need)/1e9, float64(avail)/1e9)
		}
	}
	if j.Format == "jpeg" && (ow > 65535 || oh > 65535) {
		return fmt.Errorf("output %dx%d: JPEG sides are at most 65535 pixels (write PNG)", ow, oh)
	}
	return nil
}

// Upscale reads, upscales and writes one job's file, returning a short note
// ("(WxH -> WxH, time)"); warn reports what the user should know about a
// result (alpha dropped). An existing output is ErrSkipped with
// SkipExisting, replaced with Overwrite, and an error otherwise.
func Upscale(ctx context.Context, pipe *sr.Pipeline, o *Options, j *Job, warn func(string)) (string, error) {
	if _, err := os.Stat(j.Out); err == nil {
		if o.SkipExisting {
			return "", ErrSkipped
		}
		if !o.Overwrite {
			return "", fmt.Errorf("%s exists (use --overwrite or --skip-existing)", termsafe.Name(j.Out))
		}
	}
	t0 := time.Now()
	in, err := imageio.ReadFile(j.In, &imageio.DecodeOptions{MaxPixels: o.MaxPixels})
	if err != nil {
		return "", err
	}
	if err := CheckOutput(pipe, o, j, in.Width, in.Height); err != nil {
		return "", err
	}
	out, err := pipe.UpscaleImage(ctx, in)
	if err != nil {
		return "", err
	}
	if j.Format == "jpeg" && out.Alpha != nil && warn != nil {
		warn("JPEG has no alpha channel: transparency dropped (write PNG to keep it)")
	}
	if err := os.MkdirAll(filepath.Dir(j.Out), 0o755); err != nil {
		return "", err
	}
	if err := imageio.WriteFile(j.Out, out, &imageio.EncodeOptions{Format: j.Format, Quality: o.Quality, Software: SoftwareMark}); err != nil {
		return "", err
	}
	return fmt.Sprintf("(%dx%d -> %dx%d, %v)", in.Width, in.Height, out.Width, out.Height, time.Since(t0).Round(time.Millisecond)), nil
}

// RemoveStaleTemps deletes, in every output folder, the temporary files an
// earlier run killed while writing one of these outputs left behind (see
// atomicfile.RemoveStale: only older than atomicfile.StaleAge, so another
// run's write in progress is safe), reporting each folder cleaned.
func RemoveStaleTemps(jobs []*Job, report func(n int, dir string)) {
	byDir := map[string]map[string]bool{}
	for _, j := range jobs {
		d := filepath.Dir(j.Out)
		if byDir[d] == nil {
			byDir[d] = map[string]bool{}
		}
		byDir[d][filepath.Base(j.Out)] = true
	}
	for d, names := range byDir {
		if n, _ := atomicfile.RemoveStale(d, func(name string) bool { return names[name] }, atomicfile.StaleAge); n > 0 && report != nil {
			report(n, d)
		}
	}
}

// Events receive what Run does, for a progress display; nil ones are not
// called. Names in errors are already made terminal-safe; decoder messages
// may hold raw bytes (see termsafe.Escape).
type Events struct {
	Cleaned func(n int, dir string)      // stale temporary files removed
	Done    func(j *Job, note string)    // a result written
	Skipped func(j *Job)                 // output exists, SkipExisting
	Failed  func(j *Job, err error)      // refused or failed; the batch goes on
	Warn    func(j *Job, warning string) // written, with a caveat
	Next    func()                       // after each job, whatever its end
}

// Summary counts a run's jobs.
type Summary struct {
	Done, Skipped, Failed, Total int
	Interrupted                  bool // ctx ended the run; the job in progress wrote nothing
	Elapsed                      time.Duration
}

func (s Summary) String() string {
	return fmt.Sprintf("%d upscaled, %d skipped, %d failed of %d in %v", s.Done, s.Skipped, s.Failed, s.Total, s.Elapsed.Round(time.Millisecond))
}

// Run upscales the jobs one after another (each uses every core), first
// removing stale temporary files, reporting failures and going on; it stops
// at cancellation. Results are written atomically, so an interrupted file
// leaves nothing behind.
func Run(ctx context.Context, pipe *sr.Pipeline, o *Options, jobs []*Job, ev Events) Summary {
	start := time.Now()
	s := Summary{Total: len(jobs)}
	RemoveStaleTemps(jobs, ev.Cleaned)
	for _, j := range jobs {
		if ctx.Err() != nil {
			s.Interrupted = true
			break
		}
		err := j.Err
		if err == nil {
			var note string
			note, err = Upscale(ctx, pipe, o, j, func(w string) {
				if ev.Warn != nil {
					ev.Warn(j, w)
				}
			})
			switch {
			case errors.Is(err, ErrSkipped):
				s.Skipped++
				if ev.Skipped != nil {
					ev.Skipped(j)
				}
			case err == nil:
				s.Done++
				if ev.Done != nil {
					ev.Done(j, note)
				}
			}
		}
		if err != nil && !errors.Is(err, ErrSkipped) {
			if ctx.Err() != nil && errors.Is(err, ctx.Err()) {
				s.Interrupted = true
				break
			}
			s.Failed++
			if ev.Failed != nil {
				ev.Failed(j, err)
			}
		}
		if ev.Next != nil {
			ev.Next()
		}
	}
	s.Elapsed = time.Since(start)
	return s
}

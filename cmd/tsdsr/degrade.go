package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"tsdsr/data"
	"tsdsr/degrade"
	"tsdsr/imageio"
	"tsdsr/internal/atomicfile"
	"tsdsr/internal/parallel"
)

func init() {
	register(&command{name: "degrade", summary: "synthesise HR/LR training pairs (Real-ESRGAN degradations)", run: runDegrade})
}

// degradeRun is written to OUT/run.json; a resumed run must match it, so
// one output directory never mixes pairs of different settings.
type degradeRun struct {
	Seed    uint64           `json:"seed"`
	Photos  []string         `json:"photos"`
	Options *degrade.Options `json:"options"`
}

func runDegrade(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("degrade", flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "Usage: tsdsr degrade --hr DIR --out DIR --n N [--size 512] [--seed S] [--config opts.json] [-j N]\n       tsdsr degrade --print-config [--config opts.json] [--size N]")
		fmt.Fprintln(fs.Output(), "\nWrites OUT/hr/NNNNNN.png (USM-sharpened HR crop), OUT/lr/NNNNNN.png (degraded, size/4)")
		fmt.Fprintln(fs.Output(), "and OUT/meta/NNNNNN.json (every sampled parameter). Pairs already written are skipped;")
		fmt.Fprint(fs.Output(), "the same seed and settings give the same files.\n\n")
		fs.PrintDefaults()
	}
	hrDir := fs.String("hr", "", "directory of HR photos (png, jpg, webp, bmp, tiff)")
	outDir := fs.String("out", "", "output directory")
	n := fs.Int("n", 0, "number of pairs")
	size := fs.Int("size", 512, "HR crop size (overrides the config's crop.size when given)")
	seed := fs.Uint64("seed", 0, "random seed")
	config := fs.String("config", "", "JSON options file (fields left out keep the Real-ESRGAN defaults)")
	jobs := fs.Int("j", parallel.Threads(), "pairs built in parallel")
	cacheMB := fs.Int64("cache-mb", data.DefaultCacheBytes>>20, "memory for decoded photos, MiB")
	printConfig := fs.Bool("print-config", false, "print the effective options as JSON (a starting point for --config) and exit")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 || !*printConfig && (*hrDir == "" || *outDir == "" || *n <= 0) {
		fs.Usage()
		return errUsage
	}
	opts := degrade.DefaultOptions()
	if *config != "" {
		var err error
		if opts, err = degrade.LoadOptions(*config); err != nil {
			return err
		}
	}
	if *config == "" || degradeFlagSet(fs, "size") {
		opts.Crop.Size = *size
	}
	if err := opts.Validate(); err != nil {
		return err
	}
	if *printConfig {
		js, err := json.MarshalIndent(opts, "", "  ")
		if err != nil {
			return err
		}
		_, err = fmt.Printf("%s\n", js)
		return err
	}
	photos, err := data.OpenDir(*hrDir, *cacheMB<<20)
	if err != nil {
		return err
	}
	run := degradeRun{Seed: *seed, Options: opts}
	for i := range photos.Len() {
		run.Photos = append(run.Photos, photos.Name(i))
	}
	for _, d := range []string{"hr", "lr", "meta"} {
		if err := os.MkdirAll(filepath.Join(*outDir, d), 0o755); err != nil {
			return err
		}
	}
	if err := degradeCheckRun(filepath.Join(*outDir, "run.json"), &run); err != nil {
		return err
	}

	var todo []int
	for k := range *n {
		if _, err := os.Stat(degradePairPath(*outDir, "meta", k)); err != nil {
			todo = append(todo, k)
		}
	}
	done := *n - len(todo)
	if len(todo) == 0 {
		fmt.Fprintf(os.Stderr, "degrade: all %d pairs already in %s\n", *n, *outDir)
		return nil
	}
	if done > 0 {
		fmt.Fprintf(os.Stderr, "degrade: resuming, %d of %d pairs already written\n", done, *n)
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	bar := newDegradeProgress(os.Stderr, *n, done)
	var next atomic.Int64
	var firstErr error
	var errOnce sync.Once
	var wg sync.WaitGroup
	for range max(1, *jobs) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				i := int(next.Add(1)) - 1
				if i >= len(todo) {
					return
				}
				if err := degradeWritePair(photos, *outDir, *seed, todo[i], opts); err != nil {
					errOnce.Do(func() { firstErr = err; cancel() })
					return
				}
				bar.add(1)
			}
		}()
	}
	wg.Wait()
	bar.finish()
	if firstErr != nil {
		return firstErr
	}
	return ctx.Err()
}

// degradeFlagSet reports whether the named flag was given on the command line.
func degradeFlagSet(fs *flag.FlagSet, name string) bool {
	set := false
	fs.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}

func degradePairPath(out, kind string, k int) string {
	ext := ".png"
	if kind == "meta" {
		ext = ".json"
	}
	return filepath.Join(out, kind, fmt.Sprintf("%06d%s", k, ext))
}

// degradeWritePair builds pair k and writes HR, LR, then the sidecar: the sidecar
// exists only once both images do, so it marks a complete pair.
func degradeWritePair(photos *data.Photos, out string, seed uint64, k int, o *degrade.Options) error {
	p, err := photos.Pair(seed, k, o)
	if err != nil {
		return err
	}
	if err := imageio.WriteFile(degradePairPath(out, "hr", k), p.HR, nil); err != nil {
		return err
	}
	if err := imageio.WriteFile(degradePairPath(out, "lr", k), p.LR, nil); err != nil {
		return err
	}
	js, err := json.MarshalIndent(p.Params, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.WriteBytes(degradePairPath(out, "meta", k), append(js, '\n'))
}

// degradeCheckRun writes run.json on the first run and refuses to resume into a
// directory made with another seed, photo set or options.
func degradeCheckRun(path string, run *degradeRun) error {
	want, err := json.MarshalIndent(run, "", "  ")
	if err != nil {
		return err
	}
	want = append(want, '\n')
	have, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return atomicfile.WriteBytes(path, want)
	}
	if err != nil {
		return err
	}
	if string(have) != string(want) {
		return fmt.Errorf("%s was made with another seed, photo set or options; use a new --out", path)
	}
	return nil
}

// degradeProgress draws a one-line bar with rate and ETA, redrawn at most every
// 200 ms on a terminal and every 10% otherwise (logs stay short).
type degradeProgress struct {
	w          io.Writer
	total      int
	start      int
	tty        bool
	began      time.Time
	mu         sync.Mutex
	done, shed int
	last       time.Time
}

func newDegradeProgress(w *os.File, total, done int) *degradeProgress {
	st, err := w.Stat()
	tty := err == nil && st.Mode()&os.ModeCharDevice != 0
	p := &degradeProgress{w: w, total: total, start: done, done: done, tty: tty, began: time.Now()}
	p.draw(true)
	return p
}

func (p *degradeProgress) add(n int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.done += n
	p.draw(false)
}

func (p *degradeProgress) finish() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.tty || p.shed != p.done {
		p.draw(true)
	}
	if p.tty {
		fmt.Fprintln(p.w)
	}
}

func (p *degradeProgress) draw(force bool) {
	now := time.Now()
	if p.tty {
		if !force && now.Sub(p.last) < 200*time.Millisecond {
			return
		}
	} else if step := max(1, p.total/10); !force && p.done/step == p.shed/step {
		return
	}
	p.last, p.shed = now, p.done
	el := now.Sub(p.began).Seconds()
	rate := float64(p.done-p.start) / max(el, 1e-9)
	eta := "?"
	if rate > 0 {
		eta = time.Duration(float64(p.total-p.done) / rate * float64(time.Second)).Round(time.Second).String()
	}
	const width = 30
	fill := width * p.done / max(1, p.total)
	line := fmt.Sprintf("degrade %*d/%d [%s%s] %.1f pairs/s ETA %s", len(fmt.Sprint(p.total)), p.done, p.total,
		strings.Repeat("#", fill), strings.Repeat("-", width-fill), rate, eta)
	if p.tty {
		fmt.Fprintf(p.w, "\r%s\x1b[K", line)
	} else {
		fmt.Fprintln(p.w, line)
	}
}

package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"

	"tsdsr/eval"
	"tsdsr/internal/parallel"
	"tsdsr/metrics"
)

func init() {
	register(&command{name: "eval", summary: "measure results against ground truth (PSNR, SSIM, NIQE as pyiqa computes them)",
		run: func(ctx context.Context, args []string) error {
			return runEval(ctx, args, os.Stdout, os.Stderr, term.IsTerminal(int(os.Stderr.Fd())))
		}})
}

const evalHelp = `Usage:
  tsdsr eval --sr DIR [--gt DIR] [flags]
  tsdsr eval --baseline bicubic --lr DIR [--gt DIR] [flags]

Measures every image of --sr (against its ground truth in --gt for
full-reference metrics) and prints a per-image table and the means.

Metrics (--metrics, comma separated; default psnr,ssim,niqe with --gt,
niqe without):
  psnr  PSNR in dB on the BT.601 Y channel               (reference, higher is better)
  ssim  SSIM on the Y channel, 11x11 Gaussian window     (reference, higher is better)
  niqe  NIQE, MATLAB-compatible, 96x96 blocks            (no reference, lower is better)
  grid  strength of a 16-pixel grid (tsdsr's own; photos  (no reference, lower is better)
        about 0.04, a student drawing its token grid 0.12)
Values of psnr, ssim and niqe reproduce pyiqa (create_metric('psnr'|'ssim', test_y_channel=True,
color_space='ycbcr') and create_metric('niqe')), the numbers of OSEDiff's
and TSD-SR's tables, to about 1e-5; --convention basicsr gives BasicSR's
calculate_psnr/ssim instead (unrounded Y: SSIM about 0.001 higher).
Images are measured as 8-bit RGB, as pyiqa reads them.

Network metrics are not built in because their pretrained weights
(ImageNet/CLIP backbones) cannot be shipped; they plug into the metrics
registry once weights are supplied:
%s
Pairing: a result pairs with the ground truth of the same file name
(extension ignored), else with the one whose name matches after removing
trailing suffixes such as _LR4, _HR, _SR, _GT, _x4, _4x, _out, _output,
_result, _rlt (Canon_001_LR4.png ~ Canon_001_HR.png ~ Canon_001_out.png).
A result without a ground truth is an error.

--baseline bicubic evaluates the bicubic upscale of --lr (PyTorch bicubic as
TSD-SR upsamples its input, clamped and rounded to 8 bits like a saved PNG)
to the size of the ground truth, or --scale times the input without --gt.

With --json, one object per image ({"name": ..., "psnr": ...}) is printed
per line and, last, the summary {"n": N, "psnr": ..., "ssim": ..., "niqe": ...}.
A progress bar is shown on stderr when it is a terminal.

Flags:
`

// evalConfig is the parsed command line of `tsdsr eval`.
type evalConfig struct {
	sr, gt, lr, baseline string
	scale, crop, jobs    int
	metrics, convention  string
	json, csv            bool
}

func parseEval(args []string, stderr io.Writer) (*evalConfig, error) {
	var c evalConfig
	fs := flag.NewFlagSet("eval", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&c.sr, "sr", "", "`folder` of results to measure")
	fs.StringVar(&c.gt, "gt", "", "`folder` of ground truths (needed by psnr and ssim)")
	fs.StringVar(&c.lr, "lr", "", "`folder` of low-resolution inputs (with --baseline)")
	fs.StringVar(&c.baseline, "baseline", "", "evaluate a baseline instead of --sr: bicubic")
	fs.IntVar(&c.scale, "scale", 4, "upscaling factor of --baseline when there is no --gt")
	fs.IntVar(&c.crop, "crop", 0, "`pixels` removed from each border before measuring (4 for classic x4 tables)")
	fs.StringVar(&c.metrics, "metrics", "", "comma-separated `list` of metrics (default psnr,ssim,niqe, or niqe without --gt)")
	fs.StringVar(&c.convention, "convention", "pyiqa", "PSNR/SSIM arithmetic: pyiqa or basicsr")
	fs.BoolVar(&c.json, "json", false, "print JSON lines: one object per image, then the summary")
	fs.BoolVar(&c.csv, "csv", false, "print CSV: a header, one record per image, then the means")
	fs.IntVar(&c.jobs, "j", parallel.Threads(), "images measured in parallel")
	fs.Usage = func() {
		var un strings.Builder
		for _, m := range metrics.Unavailable() {
			fmt.Fprintf(&un, "  %-8s %s\n", m.Name, m.Reason)
		}
		fmt.Fprintf(fs.Output(), evalHelp, un.String())
		fs.PrintDefaults()
	}
	if err := parseFlags(fs, args); err != nil {
		return nil, err
	}
	bad := func(format string, a ...any) (*evalConfig, error) {
		fmt.Fprintf(stderr, "tsdsr eval: "+format+"\n", a...)
		return nil, errUsage
	}
	switch {
	case fs.NArg() > 0:
		return bad("unexpected argument %q (folders go in --sr, --gt, --lr)", fs.Arg(0))
	case c.baseline == "" && c.sr == "":
		return bad("--sr is required (or --baseline bicubic --lr DIR)")
	case c.baseline != "" && c.baseline != "bicubic":
		return bad("--baseline %q: the only baseline is bicubic", c.baseline)
	case c.baseline != "" && (c.lr == "" || c.sr != ""):
		return bad("--baseline needs --lr and no --sr")
	case c.baseline == "" && c.lr != "":
		return bad("--lr is only used with --baseline")
	case c.json && c.csv:
		return bad("--json and --csv exclude each other")
	case c.crop < 0 || c.jobs < 1 || c.scale < 1 || c.scale > 16:
		return bad("--crop must be >= 0, -j >= 1 and --scale 1..16")
	case c.convention != "pyiqa" && c.convention != "basicsr":
		return bad("--convention %q: want pyiqa or basicsr", c.convention)
	}
	if c.metrics == "" {
		c.metrics = "niqe"
		if c.gt != "" {
			c.metrics = "psnr,ssim,niqe"
		}
	}
	return &c, nil
}

func runEval(ctx context.Context, args []string, stdout, stderr io.Writer, tty bool) error {
	c, err := parseEval(args, stderr)
	if err != nil {
		return err
	}
	opts := metrics.Options{Crop: c.crop}
	if c.convention == "basicsr" {
		opts.Convention = metrics.BasicSR
	}
	var ms []metrics.Metric
	var names []string
	for _, n := range strings.Split(c.metrics, ",") {
		n = strings.ToLower(strings.TrimSpace(n))
		if n == "" {
			continue
		}
		m, err := metrics.New(n, opts)
		if err != nil {
			return err
		}
		if m.NeedsReference() && c.gt == "" {
			return fmt.Errorf("%s needs ground truth: add --gt DIR or use --metrics niqe", n)
		}
		ms, names = append(ms, m), append(names, m.Name())
	}
	if len(ms) == 0 {
		return errors.New("--metrics is empty")
	}

	in := c.sr
	load := eval.LoadFiles
	if c.baseline != "" {
		in, load = c.lr, eval.BicubicBaseline(c.scale)
	}
	srs, err := eval.ListImages(in)
	if err != nil {
		return err
	}
	var pairs []eval.Pair
	if c.gt != "" {
		gts, err := eval.ListImages(c.gt)
		if err != nil {
			return err
		}
		var unused []string
		if pairs, unused, err = eval.PairFiles(srs, gts); err != nil {
			return err
		}
		if len(unused) > 0 {
			fmt.Fprintf(stderr, "tsdsr eval: warning: %d ground truths in %s have no result (e.g. %s)\n", len(unused), c.gt, unused[0])
		}
	} else {
		for _, s := range srs {
			pairs = append(pairs, eval.Pair{Name: filepath.Base(s), SR: s})
		}
	}

	var bar *progressbar.ProgressBar
	var tick func()
	if tty {
		bar = progressbar.NewOptions(len(pairs), progressbar.OptionSetWriter(stderr),
			progressbar.OptionSetDescription("evaluating"), progressbar.OptionShowCount(),
			progressbar.OptionSetPredictTime(true), progressbar.OptionClearOnFinish(),
			progressbar.OptionSetWidth(30), progressbar.OptionThrottle(100*time.Millisecond))
		tick = func() { bar.Add(1) }
	}
	res, err := eval.Run(ctx, pairs, ms, load, c.jobs, tick)
	if bar != nil {
		bar.Finish()
	}
	if err != nil {
		return err
	}
	switch {
	case c.json:
		return eval.WriteJSON(stdout, names, res)
	case c.csv:
		return eval.WriteCSV(stdout, names, res)
	}
	return eval.WriteTable(stdout, names, res)
}

package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"

	"tsdsr/data"
	"tsdsr/degrade"
	"tsdsr/internal/parallel"
	"tsdsr/internal/progress"
)

func init() {
	register(&command{name: "degrade", summary: "synthesise HR/LR training pairs (Real-ESRGAN degradations)", run: runDegrade})
}

const degradeUsage = `Usage: tsdsr degrade --hr DIR --out DIR --n N [--size 512] [--seed S] [--config opts.json] [-j N]
       tsdsr degrade --print-config [--config opts.json] [--size N]

Writes OUT/hr/NNNNNN.png (USM-sharpened HR crop), OUT/lr/NNNNNN.png (degraded, size/4)
and OUT/meta/NNNNNN.json (every sampled parameter). Pairs already written are skipped;
the same seed and settings give the same files.

`

func runDegrade(ctx context.Context, args []string) error {
	fs := newFlagSet("degrade", degradeUsage)
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
	dir, err := data.OpenPairDir(*outDir, photos, *seed, opts)
	if err != nil {
		return err
	}
	todo := dir.Missing(*n)
	done := *n - len(todo)
	if len(todo) == 0 {
		fmt.Fprintf(os.Stderr, "degrade: all %d pairs already in %s\n", *n, *outDir)
		return nil
	}
	if done > 0 {
		fmt.Fprintf(os.Stderr, "degrade: resuming, %d of %d pairs already written\n", done, *n)
	}
	bar := progress.New(os.Stderr, "degrade", "pairs", *n, done)
	err = dir.Write(ctx, todo, *jobs, func() { bar.Add(1) })
	bar.Finish()
	return err
}

// degradeFlagSet reports whether the named flag was given on the command line.
func degradeFlagSet(fs *flag.FlagSet, name string) bool {
	set := false
	fs.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}

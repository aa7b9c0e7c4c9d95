package main

import (
	"context"
	"fmt"
	"os"
	"strconv"

	"tsdsr/distill"
	"tsdsr/model/mmdit"
	"tsdsr/safetensors"
)

func init() {
	register(&command{name: "interp", summary: "network interpolation of two students (fidelity vs perceptual trade-off)", run: runInterp})
}

const interpUsage = "Usage: tsdsr interp --a A.safetensors --b B.safetensors --alpha F -o OUT.safetensors\n" +
	"\nWrites the student (1 - alpha) A + alpha B, weight by weight (ESRGAN's network interpolation):\n" +
	"A a fidelity-oriented student (e.g. --reg none), B a perceptual one (score-distilled), both\n" +
	"trained from the same prior. The result loads with `tsdsr upscale --model OUT`.\n\n"

// runInterp is `tsdsr interp`: ESRGAN-style network interpolation between
// two students distilled from the same prior (distill.Interpolate).
func runInterp(ctx context.Context, args []string) error {
	fs := newFlagSet("interp", interpUsage)
	a := fs.String("a", "", "first student (alpha = 0)")
	b := fs.String("b", "", "second student (alpha = 1)")
	alpha := fs.Float64("alpha", 0.5, "weight of the second student, in [0, 1]")
	out := fs.String("o", "", "output safetensors file (F32; must not exist unless --overwrite)")
	overwrite := fs.Bool("overwrite", false, "replace an existing output file")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *a == "" || *b == "" || *out == "" || fs.NArg() > 0 {
		fs.Usage()
		return errUsage
	}
	if *out == *a || *out == *b {
		return fmt.Errorf("-o %s: would overwrite an input", *out)
	}
	if _, err := os.Stat(*out); err == nil && !*overwrite {
		return fmt.Errorf("-o %s exists (use --overwrite)", *out)
	}
	ma, err := mmdit.LoadFile(*a)
	if err != nil {
		return err
	}
	mb, err := mmdit.LoadFile(*b)
	if err != nil {
		return err
	}
	m, err := distill.Interpolate(ma, mb, *alpha)
	if err != nil {
		return err
	}
	if err := distill.SaveStudent(*out, m, safetensors.F32); err != nil {
		return err
	}
	al := strconv.FormatFloat(*alpha, 'g', -1, 64)
	fmt.Printf("wrote %s = (1 - %s) %s + %s %s\n", *out, al, *a, al, *b)
	return nil
}

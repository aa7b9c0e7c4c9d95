//go:build ignore

// Tobf16 re-saves a safetensors checkpoint in BF16, keeping its metadata
// (a student's config, an EMA's decay), as the shipped weights are stored:
// half the size, and tsdsr computes in float32 either way. Run from the
// repository root:
//
//	go run scripts/tobf16.go out/run/student.safetensors catalog/weights/NAME.safetensors
package main

import (
	"fmt"
	"os"

	"tsdsr/safetensors"
	"tsdsr/tensor"
)

func main() {
	if len(os.Args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: go run scripts/tobf16.go IN OUT")
		os.Exit(2)
	}
	if err := convert(os.Args[1], os.Args[2]); err != nil {
		fmt.Fprintln(os.Stderr, "tobf16:", err)
		os.Exit(1)
	}
}

func convert(in, out string) error {
	f, err := safetensors.Load(in)
	if err != nil {
		return err
	}
	ts := map[string]*tensor.Tensor{}
	for _, name := range f.Names() {
		if ts[name], err = f.Tensor(name); err != nil {
			return err
		}
	}
	return safetensors.Save(out, ts, f.Metadata, safetensors.BF16)
}

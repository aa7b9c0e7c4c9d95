//go:build ignore

// Tobf16 re-saves a student checkpoint of `tsdsr train distill` (merged
// float32 weights, config in the metadata) in BF16, as the built-in models
// under models/weights are stored: half the size, and the upscaler computes
// in float32 either way. Run from the repository root:
//
//	go run scripts/tobf16.go out/run/student.safetensors models/weights/NAME.safetensors
package main

import (
	"fmt"
	"os"

	"tsdsr/model/mmdit"
	"tsdsr/safetensors"
)

func main() {
	if len(os.Args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: go run scripts/tobf16.go IN OUT")
		os.Exit(2)
	}
	f, err := safetensors.Load(os.Args[1])
	if err == nil {
		var m *mmdit.Model
		if m, err = mmdit.Load(f); err == nil {
			err = m.Save(os.Args[2], safetensors.BF16, map[string]string{"format": "pt", "model": "tsdsr-student"})
		}
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "tobf16:", err)
		os.Exit(1)
	}
}

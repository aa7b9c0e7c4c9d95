package catalog

import (
	"fmt"
	"os"

	"tsdsr/sr"
)

// Open returns the upscaler that `tsdsr upscale --model nameOrPath --scale
// scale` runs: a student checkpoint file (from `tsdsr train distill`), a
// built-in model name (see List), or "" for the default built-in model, at
// native scale scale. Only the bicubic baseline runs at scales other than
// 4. Its errors name the commands' flags (--model, --scale), since the
// commands print them as they are.
func Open(nameOrPath string, scale int) (sr.Upscaler, error) {
	name := nameOrPath
	if name == "" {
		name = DefaultName()
	}
	if name == Bicubic {
		if scale < 1 || scale > 16 {
			return nil, fmt.Errorf("--scale %d: want 1..16", scale)
		}
		return sr.Bicubic{Factor: scale}, nil
	}
	if scale != 4 {
		return nil, fmt.Errorf("--scale %d: model %s is 4x only (use --outscale for other output sizes)", scale, name)
	}
	if st, err := os.Stat(name); err == nil && !st.IsDir() {
		up, err := LoadFile(name)
		if err != nil {
			return nil, fmt.Errorf("--model %s: %w (built-in models: tsdsr models)", name, err)
		}
		return up, nil
	}
	up, err := Load(name)
	if err != nil {
		return nil, fmt.Errorf("--model %q: not a checkpoint file, and %w", name, err)
	}
	return up, nil
}

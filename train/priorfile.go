package train

import (
	"fmt"
	"log/slog"
	"os"
	"path/filepath"

	"tsdsr/model/mmdit"
)

// LoadPrior loads a prior transformer (frozen) from path, one of
//
//   - a run directory of `tsdsr train prior` (one with state.json): the
//     latest checkpoint's part ("ema", the averaged weights a prior ships
//     with, or "model"), or its "model" weights when it has no such part,
//     with the run's config.json;
//   - a diffusers folder (config.json and diffusion_pytorch_model.safetensors
//     or its shards: mmdit.LoadDir);
//   - a directory with config.json and part.safetensors or model.safetensors
//     (a run's published weights);
//   - a weights file with its config in the metadata (mmdit.Model.Save), or
//     a config.json beside it or in the run directory above its checkpoint.
//
// It returns the weights it read (a file, or the diffusers folder). This is
// the one reader of priors for the distillation, the sampler and the CLI.
func LoadPrior(path, part string) (*mmdit.Model, string, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, "", err
	}
	if !st.IsDir() {
		m, err := loadWeightsFile(path)
		return m, path, err
	}
	var candidates []string
	if _, err := ReadState(path); err == nil {
		for _, p := range []string{part, "model"} {
			w, _ := LatestPart(path, p)
			candidates = append(candidates, w)
		}
	} else {
		single := filepath.Join(path, "diffusion_pytorch_model.safetensors")
		for _, f := range []string{single, single + ".index.json"} {
			if _, err := os.Stat(f); err == nil {
				m, pos, err := mmdit.LoadDir(path)
				if err == nil && pos.Mismatch() {
					slog.Warn("train: prior's stored position table differs from the computed one; using the stored table",
						"dir", path, "max_diff", pos.MaxDiff)
				}
				return m, path, err
			}
		}
		candidates = []string{filepath.Join(path, part+".safetensors"), filepath.Join(path, "model.safetensors")}
	}
	for _, w := range candidates {
		if _, err := os.Stat(w); err == nil {
			m, err := loadWeightsFile(w)
			return m, w, err
		}
	}
	return nil, "", fmt.Errorf("%s: no weights (looked for %v)", path, candidates)
}

// loadWeightsFile reads a transformer file whose config is in its metadata,
// beside it, or in the run directory above a checkpoint
// (RUN/checkpoints/step-N/part.safetensors).
func loadWeightsFile(w string) (*mmdit.Model, error) {
	run := filepath.Dir(filepath.Dir(filepath.Dir(w)))
	return mmdit.LoadFile(w, filepath.Join(run, "config.json"))
}

// Package catalog is the catalogue of upscalers built into the binary: the
// bicubic baseline and the one-step students shipped under weights/ with
// their measured scores. Adding a model means adding its checkpoint and an
// entry to weights/models.json; no code changes.
package catalog

import (
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"sort"

	"tsdsr/model/mmdit"
	"tsdsr/model/taesd"
	"tsdsr/safetensors"
	"tsdsr/sr"
)

//go:embed weights
var weights embed.FS

// Info describes a built-in model.
type Info struct {
	Name        string `json:"name"`
	File        string `json:"file"` // under weights/; "" for bicubic
	Description string `json:"description"`
	// Scores are measured on RealSR (100 pairs, 128 -> 512) with tsdsr eval,
	// keyed by lower-case metric name.
	Scores map[string]float64 `json:"scores,omitempty"`
	// Tile and Overlap are the default latent tiling (latent pixels).
	Tile    int `json:"tile,omitempty"`
	Overlap int `json:"overlap,omitempty"`
	// Shifts is the default number of token-grid phases (sr.OneStep.Shifts).
	Shifts  int  `json:"shifts,omitempty"`
	Default bool `json:"default,omitempty"`
}

// Bicubic is the baseline every model is compared with.
const Bicubic = "bicubic"

// List returns the built-in models, the default first.
func List() ([]Info, error) {
	list := []Info{{Name: Bicubic, Description: "PyTorch-style bicubic x4 (a = -0.75), the baseline",
		Scores: map[string]float64{"psnr": 27.1519, "ssim": 0.7577, "niqe": 9.2273}}}
	b, err := weights.ReadFile("weights/models.json")
	if errors.Is(err, fs.ErrNotExist) {
		list[0].Default = true
		return list, nil
	}
	if err != nil {
		return nil, err
	}
	var shipped []Info
	if err := json.Unmarshal(b, &shipped); err != nil {
		return nil, fmt.Errorf("catalog: weights/models.json: %w", err)
	}
	list = append(list, shipped...)
	sort.SliceStable(list, func(i, j int) bool { return list[i].Default && !list[j].Default })
	if !list[0].Default {
		list[0].Default = true
	}
	return list, nil
}

// DefaultName is the model `tsdsr upscale` uses without --model.
func DefaultName() string {
	list, err := List()
	if err != nil || len(list) == 0 {
		return Bicubic
	}
	return list[0].Name
}

// Load returns the built-in model called name ("" for the default).
func Load(name string) (sr.Upscaler, error) {
	if name == "" {
		name = DefaultName()
	}
	list, err := List()
	if err != nil {
		return nil, err
	}
	for _, m := range list {
		if m.Name != name {
			continue
		}
		if m.File == "" {
			return sr.Bicubic{Factor: 4}, nil
		}
		b, err := weights.ReadFile(path.Join("weights", m.File))
		if err != nil {
			return nil, fmt.Errorf("catalog: %s: %w", m.Name, err)
		}
		f, err := safetensors.Parse(b)
		if err != nil {
			return nil, fmt.Errorf("catalog: %s: %w", m.Name, err)
		}
		o, err := oneStep(f, m.Name, m.Tile, m.Overlap)
		if err != nil {
			return nil, err
		}
		o.Shifts = m.Shifts
		return o, nil
	}
	names := make([]string, len(list))
	for i, m := range list {
		names[i] = m.Name
	}
	return nil, fmt.Errorf("catalog: no built-in model %q (available: %v; tsdsr models lists them)", name, names)
}

// LoadFile returns a one-step upscaler from a student checkpoint written by
// `tsdsr train distill` (merged weights with the config in the metadata).
func LoadFile(file string) (*sr.OneStep, error) {
	f, err := safetensors.Load(file)
	if err != nil {
		return nil, err
	}
	return oneStep(f, path.Base(file), 0, 0)
}

func oneStep(f *safetensors.File, name string, tile, overlap int) (*sr.OneStep, error) {
	student, err := mmdit.Load(f)
	if err != nil {
		return nil, fmt.Errorf("catalog: %s: %w", name, err)
	}
	enc, dec, err := taesd.Embedded()
	if err != nil {
		return nil, err
	}
	if tile == 0 {
		// The latent size the student was trained at; TSD-SR's 64 for SD3.
		tile = student.Config.SampleSize
	}
	if overlap == 0 {
		overlap = max(tile/8, 2)
	}
	return &sr.OneStep{AE: sr.TAESD{Enc: enc, Dec: dec}, Student: student, ModelName: name, Tile: tile, Overlap: overlap}, nil
}

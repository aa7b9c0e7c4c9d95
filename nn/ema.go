package nn

import (
	"fmt"
	"strconv"

	"tsdsr/internal/parallel"
	"tsdsr/safetensors"
	"tsdsr/tensor"
)

// EMA keeps an exponential moving average of parameters,
// shadow = Decay*shadow + (1-Decay)*param after each optimiser step; the
// averaged weights usually evaluate better than the last ones.
type EMA struct {
	Decay   float64
	params  []Param
	shadow  [][]float32
	updates int
}

// NewEMA starts an average of params at their current values.
func NewEMA(params []Param, decay float64) *EMA {
	e := &EMA{Decay: decay, params: params}
	for _, p := range params {
		e.shadow = append(e.shadow, append([]float32(nil), p.T.Data...))
	}
	return e
}

// Updates returns the number of Update calls (restored by Load).
func (e *EMA) Updates() int { return e.updates }

// Update folds the current parameter values into the average.
func (e *EMA) Update() {
	d := float32(e.Decay)
	for i, p := range e.params {
		s, w := e.shadow[i], p.T.Data
		parallel.For(len(w), 1<<14, func(lo, hi int) {
			for j := lo; j < hi; j++ {
				s[j] = d*s[j] + (1-d)*w[j]
			}
		})
	}
	e.updates++
}

// Swap exchanges the parameters' values with the averaged ones (O(1): the
// data slices are swapped). Call it before evaluating and again after to
// continue training. Do not swap while a graph built on the parameters
// awaits Backward.
func (e *EMA) Swap() {
	for i, p := range e.params {
		p.T.Data, e.shadow[i] = e.shadow[i], p.T.Data
	}
}

// CopyTo writes the averaged values into the parameters (for export).
func (e *EMA) CopyTo() {
	for i, p := range e.params {
		copy(p.T.Data, e.shadow[i])
	}
}

// Save writes the averaged weights as F32 under the parameter names, so the
// file is also a model checkpoint that Params.Load accepts.
func (e *EMA) Save(path string) error {
	ts := map[string]*tensor.Tensor{}
	for i, p := range e.params {
		ts[p.Name] = tensor.FromData(e.shadow[i], p.T.Shape...)
	}
	meta := map[string]string{"ema_decay": fmtFloat(e.Decay), "ema_updates": strconv.Itoa(e.updates)}
	return safetensors.Save(path, ts, meta, safetensors.F32)
}

// Load restores an average written by Save (weights, decay, update count).
// On error the average is unchanged.
func (e *EMA) Load(f *safetensors.File) error {
	decay, err := strconv.ParseFloat(f.Metadata["ema_decay"], 64)
	if err != nil {
		return fmt.Errorf("nn.EMA.Load: bad ema_decay %q", f.Metadata["ema_decay"])
	}
	updates, err := strconv.Atoi(f.Metadata["ema_updates"])
	if err != nil || updates < 0 {
		return fmt.Errorf("nn.EMA.Load: bad ema_updates %q", f.Metadata["ema_updates"])
	}
	if err := checkState(f, e.params, ""); err != nil {
		return fmt.Errorf("nn.EMA.Load: %w", err)
	}
	for i, p := range e.params {
		f.ReadInto(p.Name, e.shadow[i])
	}
	e.Decay, e.updates = decay, updates
	return nil
}

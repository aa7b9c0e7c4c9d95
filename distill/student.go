package distill

import (
	"fmt"

	"tsdsr/model/mmdit"
	"tsdsr/nn"
	"tsdsr/safetensors"
)

// SaveStudent writes a one-step student as a single safetensors file in
// mmdit's format (mmdit.Model.Save: base weights under their diffusers
// keys, the config in the metadata, read back by mmdit.LoadFile), with any
// LoRA adapter merged in (W + scale B A), in dtype. The model itself is
// left exactly as it was: its base weights are restored bit for bit after
// the merge, so saving in the middle of a run does not perturb training.
func SaveStudent(path string, m *mmdit.Model, dtype safetensors.DType) error {
	base := m.Params.Filter(func(n string) bool { return !nn.IsLoRA(n) })
	backup := make([][]float32, len(base))
	for i, p := range base {
		backup[i] = append([]float32(nil), p.T.Data...)
	}
	nn.MergeLoRA(m.Params)
	err := m.Save(path, dtype, map[string]string{"format": "pt", "model": "tsdsr-student"})
	nn.UnmergeLoRA(m.Params)
	for i, p := range base {
		copy(p.T.Data, backup[i])
	}
	return err
}

// Interpolate returns the student (1 - alpha) a + alpha b, weight by weight:
// ESRGAN's network interpolation (Wang et al. 2018, section 3.4), which
// trades a fidelity-oriented model (a, e.g. regression-trained) against a
// perceptual one (b, e.g. score-distilled) without retraining. It is only
// meaningful between fine-tunes of one initialisation (here: of one
// prior), whose weights stay close. a and b must share a config; the
// prompt embeddings are interpolated like every other tensor.
func Interpolate(a, b *mmdit.Model, alpha float64) (*mmdit.Model, error) {
	if a.Config != b.Config {
		return nil, fmt.Errorf("distill: interpolate: the models differ in shape (%+v vs %+v)", a.Config, b.Config)
	}
	if !(alpha >= 0 && alpha <= 1) {
		return nil, fmt.Errorf("distill: interpolate: alpha %v not in [0, 1]", alpha)
	}
	out, err := Clone(a)
	if err != nil {
		return nil, err
	}
	bw := nn.Map(b.Params.Filter(func(n string) bool { return !nn.IsLoRA(n) }))
	wa, wb := float32(1-alpha), float32(alpha)
	for _, p := range out.Params.List() {
		q, ok := bw[p.Name]
		if !ok {
			return nil, fmt.Errorf("distill: interpolate: %s missing from the second model", p.Name)
		}
		for i, v := range q.Data {
			p.T.Data[i] = wa*p.T.Data[i] + wb*v
		}
	}
	return out, nil
}

package mmdit

import (
	"fmt"
	"math"
	"strings"
	"testing"

	"tsdsr/nn"
	"tsdsr/nn/nntest"
	"tsdsr/rng"
	"tsdsr/safetensors"
	"tsdsr/tensor"
	"tsdsr/tensor/tensortest"
)

func tiny() Config {
	return Config{SampleSize: 8, PatchSize: 2, InChannels: 16, NumLayers: 2, AttentionHeadDim: 16,
		NumAttentionHeads: 4, JointAttentionDim: 24, CaptionProjectionDim: 64, PooledProjectionDim: 12,
		OutChannels: 16, PosEmbedMaxSize: 12, ContextTokens: 3}
}

func newTiny(t testing.TB, seed uint64) *Model {
	t.Helper()
	m, err := New(tiny(), nn.NewParams(rng.New(seed)))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// randomise gives every parameter (the zero-initialised modulation too)
// small random values, so tests exercise every path.
func randomise(m *Model, seed uint64) {
	r := rng.New(seed)
	for _, p := range m.Params.List() {
		r.FillNormal(p.T.Data, 0, 0.2)
	}
}

// TestSD3MediumKeys checks names and shapes against the SD3-medium state
// dict table. Parameters are allocated but never touched (no initialiser),
// so the 8 GB of float32 stay virtual.
func TestSD3MediumKeys(t *testing.T) {
	if testing.Short() {
		t.Skip("allocates 8 GB of (untouched) virtual memory")
	}
	m, err := New(SD3Medium(), nn.NewParams(nil))
	if err != nil {
		t.Fatal(err)
	}
	_, params := nntest.CheckKeyTable(t, m.Params, "testdata/sd3_medium_transformer.txt")
	if n := m.Params.Count(); params != 2028328000 || n != params {
		t.Errorf("%d parameters (table %d), want 2028328000", n, params)
	}
}

func TestShapesAnySizeMultipleOfPatch(t *testing.T) {
	m := newTiny(t, 1)
	randomise(m, 2)
	defer tensor.NoGrad()()
	r := rng.New(3)
	for _, hw := range [][2]int{{2, 2}, {8, 8}, {4, 10}, {24, 6}, {24, 24}} {
		x := tensor.New(2, 16, hw[0], hw[1])
		r.FillNormal(x.Data, 0, 1)
		v := m.Velocity(x, []float32{1000, 250})
		if !tensor.SameShape(v.Shape, x.Shape) {
			t.Fatalf("%v: output shape %v", hw, v.Shape)
		}
		for _, val := range v.Data {
			if math.IsNaN(float64(val)) {
				t.Fatalf("%v: NaN in output", hw)
			}
		}
	}
}

// TestBlocksStartAsIdentity: with adaLN-Zero modulation zeroed (DiT and SD3
// initialisation) the gates are zero, so every block passes the image
// stream through unchanged, and the zero output projection predicts zero.
func TestBlocksStartAsIdentity(t *testing.T) {
	m := newTiny(t, 4)
	defer tensor.NoGrad()()
	r := rng.New(5)
	x := randT(r, 2, 20, 64)
	ctx := randT(r, 2, 3, 64)
	sc := randT(r, 2, 64)
	for i, b := range m.blocks {
		y, _ := b.forward(x, ctx, sc)
		for j := range y.Data {
			if y.Data[j] != x.Data[j] {
				t.Fatalf("block %d changes the image stream at %d", i, j)
			}
		}
	}
	xin := randT(r, 1, 16, 8, 8)
	for _, v := range m.Velocity(xin, []float32{500}).Data {
		if v != 0 {
			t.Fatal("untrained model predicts non-zero velocity")
		}
	}
}

// TestModulationChunkOrder pins the trap between diffusers' two adaLN
// flavours: adaLN-Zero (norm1) chunks shift, scale, gate; adaLN-continuous
// (norm_out, last block's norm1_context) chunks scale, shift.
func TestModulationChunkOrder(t *testing.T) {
	m := newTiny(t, 6)
	d := m.Config.Hidden()
	defer tensor.NoGrad()()
	// norm_out: scale = -1 makes LayerNorm's output vanish, shift = 0.5
	// then sets every token to the same vector; so all patches of the
	// output get identical values.
	for k := 0; k < d; k++ {
		m.normOut.Bias.Data[k] = -1    // scale
		m.normOut.Bias.Data[d+k] = 0.5 // shift
	}
	r := rng.New(7)
	r.FillNormal(m.projOut.Weight.Data, 0, 1)
	x := randT(r, 1, 16, 4, 4)
	v := m.Velocity(x, []float32{300}) // [1, 16, 4, 4]
	for c := 0; c < 16; c++ {
		// Pixel (2a+i, 2b+j) of channel c comes from token (a, b) feature (i, j, c):
		// equal tokens make the 2x2 pattern repeat.
		pl := v.Data[c*16 : (c+1)*16]
		for y := 0; y < 4; y++ {
			for xx := 0; xx < 4; xx++ {
				if pl[y*4+xx] != pl[(y%2)*4+xx%2] {
					t.Fatalf("norm_out: tokens differ (chunk order scale, shift broken)")
				}
			}
		}
	}
	// adaLN-Zero: gate chunk 2 = 1 opens the attention residual; chunk 0
	// (shift) alone must not.
	b := m.blocks[0]
	x2 := randT(r, 1, 4, d)
	ctx := randT(r, 1, 3, d)
	sc := randT(r, 1, d)
	for k := 0; k < d; k++ {
		b.norm1.Bias.Data[k] = 1 // shift_msa
	}
	y, _ := b.forward(x2, ctx, sc)
	if maxDiff(y, x2) != 0 {
		t.Fatal("shift chunk acted as a gate")
	}
	for k := 0; k < d; k++ {
		b.norm1.Bias.Data[2*d+k] = 1 // gate_msa
	}
	y, _ = b.forward(x2, ctx, sc)
	if maxDiff(y, x2) == 0 {
		t.Fatal("gate chunk did not open the attention residual")
	}
}

func maxDiff(a, b *tensor.Tensor) float64 {
	var d float64
	for i := range a.Data {
		d = math.Max(d, math.Abs(float64(a.Data[i]-b.Data[i])))
	}
	return d
}

func TestTimestepAndPositionEmbeddings(t *testing.T) {
	e := timestepEmbedding([]float32{0, 1000})
	// t = 0: cos = 1, sin = 0.
	for k := 0; k < 128; k++ {
		if e.Data[k] != 1 || e.Data[128+k] != 0 {
			t.Fatal("t=0 embedding is not [1..., 0...]")
		}
	}
	// Frequency 0 at t = 1000: cos(1000), sin(1000).
	if math.Abs(float64(e.Data[256])-math.Cos(1000)) > 1e-5 || math.Abs(float64(e.Data[256+128])-math.Sin(1000)) > 1e-5 {
		t.Fatalf("t=1000 first frequency: %v %v", e.Data[256], e.Data[256+128])
	}
	// Position table: token (i, j) = [sin/cos of column j/step, sin/cos of row i/step].
	tab := posTable(8, 6, 2) // step 3
	row := tab[(4*6+1)*8 : (4*6+2)*8]
	want := []float64{math.Sin(1.0 / 3), math.Sin(1.0 / 3 / 100), math.Cos(1.0 / 3), math.Cos(1.0 / 3 / 100),
		math.Sin(4.0 / 3), math.Sin(4.0 / 3 / 100), math.Cos(4.0 / 3), math.Cos(4.0 / 3 / 100)}
	for k, w := range want {
		if math.Abs(float64(row[k])-w) > 1e-6 {
			t.Fatalf("pos table element %d: %v, want %v", k, row[k], w)
		}
	}
}

func TestGradientReachesEveryParameter(t *testing.T) {
	m := newTiny(t, 8)
	randomise(m, 9)
	r := rng.New(10)
	x := randT(r, 2, 16, 4, 6)
	target := randT(r, 2, 16, 4, 6)
	tensor.MSE(m.Velocity(x, []float32{100, 900}), target).Backward()
	for _, p := range m.Params.List() {
		if strings.HasPrefix(p.Name, "transformer_blocks.1.attn.add_q_proj") {
			if p.T.Grad != nil {
				t.Errorf("%s: the last block's context queries should be skipped", p.Name)
			}
			continue
		}
		if p.T.Grad == nil {
			t.Errorf("no gradient for %s", p.Name)
			continue
		}
		var s float64
		for _, g := range p.T.Grad.Data {
			s += math.Abs(float64(g))
		}
		if s == 0 {
			t.Errorf("zero gradient for %s", p.Name)
		}
	}
}

func TestGradCheckSmallModel(t *testing.T) {
	m := newTiny(t, 11)
	randomise(m, 12)
	r := rng.New(13)
	x := randT(r, 1, 16, 2, 4)
	// Check the input gradient and one weight of each kind.
	w := m.blocks[0].toQ.Weight
	mod := m.blocks[1].norm1Txt.Weight
	tensortest.GradCheck(t, func(in []*tensor.Tensor) *tensor.Tensor {
		return m.Velocity(in[0], []float32{400})
	}, 1e-2, 2e-2, x, w, mod)
}

func ExampleConfig() {
	c := SD3Medium()
	fmt.Println(c.Hidden(), c.Validate())
	// Output: 1536 <nil>
}

func randT(r *rng.Rand, shape ...int) *tensor.Tensor {
	t := tensor.New(shape...)
	r.FillUniform(t.Data, -1, 1)
	return t
}

func TestSaveLoadRoundTrip(t *testing.T) {
	m := newTiny(t, 20)
	randomise(m, 21)
	path := t.TempDir() + "/m.safetensors"
	if err := m.Save(path, "F32", map[string]string{"note": "x"}); err != nil {
		t.Fatal(err)
	}
	f, err := safetensors.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	m2, err := Load(f)
	if err != nil {
		t.Fatal(err)
	}
	if m2.Config != m.Config || f.Metadata["note"] != "x" {
		t.Fatalf("config or metadata lost: %+v", m2.Config)
	}
	x := randT(rng.New(22), 1, 16, 4, 4)
	defer tensor.NoGrad()()
	if d := maxDiff(m.Velocity(x, []float32{700}), m2.Velocity(x, []float32{700})); d != 0 {
		t.Fatalf("reloaded model differs by %g", d)
	}
}

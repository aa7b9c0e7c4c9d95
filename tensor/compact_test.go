package tensor

import (
	"testing"

	"tsdsr/rng"
)

// TestLinearBF16 checks that Linear with a compacted weight gives exactly
// Linear with the bfloat16-rounded float32 weight, with and without bias,
// and that Widen restores those values.
func TestLinearBF16(t *testing.T) {
	r := rng.New(9)
	x, w, b := New(3, 70, 96), New(130, 96), New(130)
	r.FillNormal(x.Data, 0, 1)
	r.FillNormal(w.Data, 0, 0.1)
	r.FillNormal(b.Data, 0, 0.1)
	rounded := New(130, 96)
	for i, v := range w.Data {
		rounded.Data[i] = BF16ToF32(F32ToBF16(v))
	}
	c := &Tensor{Shape: w.Shape, Data: append([]float32(nil), w.Data...)}
	c.CompactBF16()
	if !c.IsBF16() || c.Data != nil {
		t.Fatal("not compacted")
	}
	for _, bias := range []*Tensor{nil, b} {
		want, got := Linear(x, rounded, bias), Linear(x, c, bias)
		for i := range want.Data {
			if got.Data[i] != want.Data[i] {
				t.Fatalf("bias %v: out[%d] = %v, want %v", bias != nil, i, got.Data[i], want.Data[i])
			}
		}
	}
	if got := Linear(x, c.Detach(), nil); got.Data[0] != Linear(x, rounded, nil).Data[0] {
		t.Error("Detach lost the compacted storage")
	}
	c.Widen()
	for i, v := range rounded.Data {
		if c.Data[i] != v {
			t.Fatalf("widened [%d] = %v, want %v", i, c.Data[i], v)
		}
	}
}

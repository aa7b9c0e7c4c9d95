package sr

import (
	"context"
	"errors"
	"testing"

	"tsdsr/tensor"
)

func TestValidateTiling(t *testing.T) {
	for _, ok := range [][2]int{{0, 0}, {0, 8}, {64, 8}, {MinTile, MinTile - 1}, {MaxTile, 0}} {
		if err := ValidateTiling(ok[0], ok[1]); err != nil {
			t.Errorf("tile %d overlap %d: %v", ok[0], ok[1], err)
		}
	}
	for _, bad := range [][2]int{{1, 0}, {2, 0}, {-1, 0}, {64, -1}, {8, 8}, {16, 64}, {MaxTile + 1, 8}} {
		if err := ValidateTiling(bad[0], bad[1]); !errors.Is(err, ErrTiling) {
			t.Errorf("tile %d overlap %d: got %v, want ErrTiling", bad[0], bad[1], err)
		}
	}
}

// TestOneStepTinyTileDoesNotPanic: a 1-pixel tile reached the convolutions
// as an empty tile and panicked; the model now widens it to one patch.
func TestOneStepTinyTileDoesNotPanic(t *testing.T) {
	o := tinyOneStep(t, true)
	z := tensor.New(1, 16, 4, 6)
	defer tensor.NoGrad()()
	for _, tile := range []int{1, 3, 1000} {
		v, err := o.velocity(context.Background(), z, tile, 8)
		if err != nil || v.Shape[2] != 4 || v.Shape[3] != 6 {
			t.Fatalf("tile %d: %v %v", tile, err, v)
		}
	}
}

func TestMemoryEstimateGrowsWithOutput(t *testing.T) {
	small, err := New(Bicubic{}, nil).MemoryEstimate(10, 10)
	if err != nil {
		t.Fatal(err)
	}
	big, err := New(Bicubic{}, &Options{Width: 16000, Height: 16000}).MemoryEstimate(1, 1)
	if err != nil {
		t.Fatal(err)
	}
	// 256 M output pixels: at least their float32 RGB planes (3 GB).
	if small <= 0 || big < 256e6*12 || big <= small {
		t.Fatalf("estimates %d and %d bytes", small, big)
	}
}

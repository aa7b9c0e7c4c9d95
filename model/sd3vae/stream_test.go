package sd3vae

import (
	"context"
	"errors"
	"testing"

	"tsdsr/internal/golden"
)

// setStreamAbove makes stages stream above n bytes for one test.
func setStreamAbove(t *testing.T, n int64) {
	old := streamAbove
	streamAbove = n
	t.Cleanup(func() { streamAbove = old })
}

// TestStreamedEqualsStored checks that streaming (statistics pass, then a
// normalising pass that recomputes the rows) gives the stored path's
// encode and decode up to float32 rounding: with every stage streamed,
// with only the large ones (streamed maps stored again once small), in
// bands of a few rows, and for a batch of two (streamed one at a time).
func TestStreamedEqualsStored(t *testing.T) {
	v := randomVAE(t, Tiny(), 61)
	x, z := randImage(62, 2, 3, 48, 40), randLatent(63, 2, 16, 6, 5)
	passes := statsPasses.Load()
	wantZ, wantY := mustEncode(t, v, x), mustDecode(t, v, z)
	if statsPasses.Load() != passes {
		t.Fatal("the stored path streamed")
	}
	for _, c := range []struct {
		name  string
		above int64
		band  int
	}{
		{"all streamed", 1, 0},
		{"large maps streamed", mapBytes(8, 24, 20), 0},
		{"all streamed, 3-row bands", 1, 3 * 8 * 40},
	} {
		t.Run(c.name, func(t *testing.T) {
			setStreamAbove(t, c.above)
			if c.band > 0 {
				old := bandElems
				bandElems = c.band
				t.Cleanup(func() { bandElems = old })
			}
			passes := statsPasses.Load()
			gotZ, gotY := mustEncode(t, v, x), mustDecode(t, v, z)
			if statsPasses.Load() == passes {
				t.Fatal("nothing streamed")
			}
			de, dd := golden.RelErr(gotZ.Data, wantZ.Data), golden.RelErr(gotY.Data, wantY.Data)
			t.Logf("streamed vs stored: encode %.3g, decode %.3g relative", de, dd)
			if de > 2e-6 || dd > 2e-6 {
				t.Errorf("streamed vs stored: encode %.3g, decode %.3g relative > 2e-6", de, dd)
			}
		})
	}
}

// TestStreamedCancel: a streamed pass stops at a cancelled context.
func TestStreamedCancel(t *testing.T) {
	setStreamAbove(t, 1)
	v := randomVAE(t, Tiny(), 64)
	for _, n := range []int32{0, 3, 20} {
		c := &countCtx{Context: context.Background()}
		c.left.Store(n)
		if _, err := v.Decode(c, randLatent(65, 1, 16, 4, 4)); !errors.Is(err, context.Canceled) {
			t.Errorf("decode cancelled after %d checks: %v", n, err)
		}
	}
}

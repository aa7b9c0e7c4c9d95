package nn

import (
	"bufio"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"testing"

	"tsdsr/rng"
	"tsdsr/tensor"
)

// vmHWM returns the process's peak resident set size in bytes (Linux), or -1.
func vmHWM() float64 {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return -1
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		if rest, ok := strings.CutPrefix(s.Text(), "VmHWM:"); ok {
			kb, err := strconv.Atoi(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")))
			if err != nil {
				return -1
			}
			return float64(kb) * 1024
		}
	}
	return -1
}

// resetHWM resets VmHWM to the current RSS (Linux >= 4.0), so each
// benchmark reports its own peak; it reports whether that worked.
func resetHWM() bool {
	return os.WriteFile("/proc/self/clear_refs", []byte("5"), 0) == nil
}

// BenchmarkTrainStep times one AdamW training step (forward, MSE,
// backward, clip, step) of the tiny transformer and reports the peak RSS
// of the process during the benchmark (peak-RSS-MB) and the bytes allocated
// per step (B/op).
func BenchmarkTrainStep(b *testing.B) {
	for _, c := range []struct{ n, l, in, dim, heads int }{
		{2, 16, 8, 32, 4},     // the training test's model
		{1, 1024, 16, 256, 4}, // 1024 tokens, 0.8M parameters
		{1, 4096, 16, 256, 4}, // 4096 tokens
	} {
		b.Run(fmt.Sprintf("N%d_L%d_dim%d", c.n, c.l, c.dim), func(b *testing.B) {
			x := tensor.New(c.n, c.l, c.in)
			rng.New(1).FillNormal(x.Data, 0, 1)
			y := tensor.New(c.n, c.l, c.in)
			rng.New(2).FillNormal(y.Data, 0, 1)
			p := NewParams(rng.New(3))
			m := newTinyTransformer(p, c.in, c.dim, c.heads)
			o := NewAdamW(p.Trainable(), DefaultAdamW())
			step := func() {
				o.ZeroGrad()
				tensor.MSE(m.forward(x), y).Backward()
				ClipGradNorm(o.Params(), 1)
				o.Step()
			}
			step() // warm-up: first allocations of moments' users, GEMM packing
			runtime.GC()
			reset := resetHWM()
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				step()
			}
			b.StopTimer()
			if reset {
				b.ReportMetric(vmHWM()/(1<<20), "peak-RSS-MB")
			}
			b.ReportMetric(float64(p.Count()), "params")
		})
	}
}

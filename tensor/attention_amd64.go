//go:build amd64

package tensor

import "golang.org/x/sys/cpu"

// hasAVX2 selects the assembly softmax helpers of attention_amd64.s. Tests
// switch it off to check the pure-Go path on the same machine.
var hasAVX2 = cpu.X86.HasAVX2 && cpu.X86.HasFMA

//go:noescape
func expShiftSumAVX2(x *float32, n int, shift float32) float32

//go:noescape
func maxAVX2(x *float32, n int) float32

// expShiftSumVec handles the longest prefix of x the vector code can:
// x[i] = e^(x[i]-shift) for i < done, returning done and the prefix sum.
func expShiftSumVec(x []float32, shift float32) (done int, sum float32) {
	if n := len(x) &^ 7; hasAVX2 && n > 0 {
		return n, expShiftSumAVX2(&x[0], n, shift)
	}
	return 0, 0
}

// maxVec returns the maximum of the longest prefix x[:done] the vector code
// can handle (done == 0 when it handles none).
func maxVec(x []float32) (done int, m float32) {
	if n := len(x) &^ 7; hasAVX2 && n > 0 {
		return n, maxAVX2(&x[0], n)
	}
	return 0, 0
}

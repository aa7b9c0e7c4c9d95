//go:build !amd64

package tensor

// Off amd64 there are no vector softmax helpers: callers do all the work.

var hasAVX2 = false

func expShiftSumVec(x []float32, shift float32) (done int, sum float32) { return 0, 0 }

func maxVec(x []float32) (done int, m float32) { return 0, 0 }

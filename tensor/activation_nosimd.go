//go:build !goexperiment.simd || !amd64

package tensor

// actSIMD: this build has only the Go activation kernels. It is a variable
// (nothing reads it here) so that tests can set it on either build.
var actSIMD = false

func sigmoidForward(y, x []float32) { sigmoidForwardGo(y, x) }

func siluForward(y, x []float32) { siluForwardGo(y, x) }

func siluBackward(gx, g, x, y []float32) { siluBackwardGo(gx, g, x, y) }

func geluForward(y, x []float32) { geluForwardGo(y, x) }

func geluBackward(gx, g, x, y []float32) { geluBackwardGo(gx, g, x, y) }

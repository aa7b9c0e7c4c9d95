package main

import "runtime/debug"

// sd3GCPercent bounds garbage while the official SD3 model runs. Its
// weights are most of the live heap, and Go's default GOGC=100 lets
// garbage grow to the live size before collecting: gigabytes of transient
// activations on top of the weights (measured: 14.8 GB peak RSS for a
// 128 -> 512 upscale at GOGC=100; 20 keeps the slack near 1.7 GB). The
// library never changes the process's collector; the command does.
const sd3GCPercent = 20

// lowerGCPercent sets the collector's percent to p unless it is already
// lower (or off), leaving a user's stricter GOGC alone.
func lowerGCPercent(p int) {
	if old := debug.SetGCPercent(p); old >= 0 && old < p {
		debug.SetGCPercent(old)
	}
}

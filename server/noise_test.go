package server

import "tsdsr/server/loadtest"

// noiseImage is the load test's deterministic input image.
var noiseImage = loadtest.NoiseImage

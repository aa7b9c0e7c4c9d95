//go:build !unix

package imageio

// openFlags: elsewhere there is no non-blocking open; the Stat check before
// opening refuses pipes and devices.
const openFlags = 0

//go:build unix

package imageio

import "syscall"

// openFlags makes opening a named pipe return at once instead of waiting for
// a writer, so ReadFile can refuse it; regular files ignore the flag.
const openFlags = syscall.O_NONBLOCK

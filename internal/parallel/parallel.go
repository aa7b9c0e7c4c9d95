// Package parallel is the worker pool shared by every heavy kernel in tsdsr.
//
// All kernels split their work with For, so one setting (SetThreads, the
// TSDSR_THREADS environment variable, or the CLI's --threads flag) bounds the
// CPU use of the whole program. It is safe for concurrent use. Jobs is the
// coarser loop of the batch commands (one file or request per call), whose
// worker count the caller chooses.
package parallel

import (
	"context"
	"os"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
)

var threads atomic.Int32

func init() {
	n := runtime.GOMAXPROCS(0)
	if s := os.Getenv("TSDSR_THREADS"); s != "" {
		if v, err := strconv.Atoi(s); err == nil && v > 0 {
			n = v
		}
	}
	threads.Store(int32(n))
}

// Threads reports how many goroutines For uses at most.
func Threads() int { return int(threads.Load()) }

// SetThreads sets the number of worker goroutines (n <= 0 means GOMAXPROCS)
// and returns the previous value.
func SetThreads(n int) int {
	if n <= 0 {
		n = runtime.GOMAXPROCS(0)
	}
	return int(threads.Swap(int32(n)))
}

// For calls fn(lo, hi) over disjoint ranges covering [0, n), using at most
// Threads() goroutines. Ranges hold at least grain items (grain < 1 means 1),
// so tiny loops run inline without goroutine overhead. It returns when every
// call has returned.
func For(n, grain int, fn func(lo, hi int)) {
	if n <= 0 {
		return
	}
	if grain < 1 {
		grain = 1
	}
	w := min(Threads(), (n+grain-1)/grain)
	if w <= 1 {
		fn(0, n)
		return
	}
	// Dynamic chunks of roughly n/(4w) balance uneven work.
	chunk := max(grain, (n+4*w-1)/(4*w))
	var next atomic.Int64
	var wg sync.WaitGroup
	wg.Add(w)
	for range w {
		go func() {
			defer wg.Done()
			for {
				lo := int(next.Add(int64(chunk))) - chunk
				if lo >= n {
					return
				}
				fn(lo, min(lo+chunk, n))
			}
		}()
	}
	wg.Wait()
}

// Reduce is For for reductions: fn returns the partial result of its range,
// and merge receives the partials in range order once every chunk is done.
// Merging in completion order instead would make floating-point sums (and
// so training runs) depend on thread scheduling; in range order the result
// depends only on n, grain and Threads().
func Reduce[T any](n, grain int, fn func(lo, hi int) T, merge func(T)) {
	type part struct {
		lo int
		v  T
	}
	var mu sync.Mutex
	var parts []part
	For(n, grain, func(lo, hi int) {
		v := fn(lo, hi)
		mu.Lock()
		parts = append(parts, part{lo, v})
		mu.Unlock()
	})
	slices.SortFunc(parts, func(a, b part) int { return a.lo - b.lo })
	for _, p := range parts {
		merge(p.v)
	}
}

// Jobs calls fn(i) for every i in [0, n), handing the indices out in order
// to up to workers goroutines (at least 1). It stops handing them out at
// the first error or when ctx is done, and returns once every call has
// returned: the first error, else ctx's error.
func Jobs(ctx context.Context, n, workers int, fn func(i int) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		next     atomic.Int64
		once     sync.Once
		firstErr error
		wg       sync.WaitGroup
	)
	for range max(1, min(workers, n)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				if err := fn(i); err != nil {
					once.Do(func() { firstErr = err; cancel() })
					return
				}
			}
		}()
	}
	wg.Wait()
	if firstErr != nil {
		return firstErr
	}
	return ctx.Err()
}

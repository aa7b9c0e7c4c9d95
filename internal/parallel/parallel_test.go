package parallel

import (
	"sync/atomic"
	"testing"
)

func TestForCoversEachIndexOnce(t *testing.T) {
	for _, threads := range []int{1, 2, 7} {
		old := SetThreads(threads)
		for _, n := range []int{0, 1, 5, 1000, 12345} {
			counts := make([]int32, n)
			For(n, 3, func(lo, hi int) {
				for i := lo; i < hi; i++ {
					atomic.AddInt32(&counts[i], 1)
				}
			})
			for i, c := range counts {
				if c != 1 {
					t.Fatalf("threads=%d n=%d: index %d visited %d times", threads, n, i, c)
				}
			}
		}
		SetThreads(old)
	}
}

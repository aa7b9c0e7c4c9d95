package parallel

import (
	"context"
	"errors"
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

// TestReduceMergesInRangeOrder: merge sees the partials in range order
// whatever the scheduling, so a float32 sum is the same bits every run.
func TestReduceMergesInRangeOrder(t *testing.T) {
	old := SetThreads(4)
	defer SetThreads(old)
	x := make([]float32, 100000)
	for i := range x {
		x[i] = float32(i%997) * 1.0001e-3 * float32(1+i%3)
	}
	sum := func() (s float32, los []int) {
		Reduce(len(x), 1000, func(lo, hi int) [2]float32 {
			var p float32
			for _, v := range x[lo:hi] {
				p += v
			}
			return [2]float32{float32(lo), p}
		}, func(p [2]float32) {
			los = append(los, int(p[0]))
			s += p[1]
		})
		return s, los
	}
	want, los := sum()
	for i := 1; i < len(los); i++ {
		if los[i] <= los[i-1] {
			t.Fatalf("merge order %v", los)
		}
	}
	for range 50 {
		if got, _ := sum(); got != want {
			t.Fatalf("sum %v, then %v", want, got)
		}
	}
}

// TestJobs: every index runs once; the first error stops the hand-out and
// is returned; a cancelled context runs nothing and returns its error.
func TestJobs(t *testing.T) {
	for _, workers := range []int{0, 1, 3, 50} {
		counts := make([]int32, 20)
		if err := Jobs(context.Background(), len(counts), workers, func(i int) error {
			atomic.AddInt32(&counts[i], 1)
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		for i, c := range counts {
			if c != 1 {
				t.Fatalf("workers=%d: index %d ran %d times", workers, i, c)
			}
		}
	}
	boom := errors.New("boom")
	var ran atomic.Int32
	err := Jobs(context.Background(), 1000, 1, func(i int) error {
		ran.Add(1)
		if i == 3 {
			return boom
		}
		return nil
	})
	if err != boom || ran.Load() != 4 {
		t.Fatalf("error run: err %v after %d calls, want boom after 4", err, ran.Load())
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	ran.Store(0)
	if err := Jobs(ctx, 10, 2, func(int) error { ran.Add(1); return nil }); !errors.Is(err, context.Canceled) || ran.Load() != 0 {
		t.Fatalf("cancelled: err %v after %d calls", err, ran.Load())
	}
}

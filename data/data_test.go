package data

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"tsdsr/degrade"
	"tsdsr/imageio"
)

// photoDir writes a few small synthetic photos (one gray, one smaller than
// the crop) and a non-image file to a temporary directory.
func photoDir(t *testing.T) string {
	dir := t.TempDir()
	for i, sz := range [][3]int{{200, 150, 3}, {160, 170, 3}, {50, 70, 3}, {120, 90, 1}} {
		m := imageio.NewImage(sz[0], sz[1], sz[2])
		for c := range sz[2] {
			p := m.Plane(c)
			for y := range sz[1] {
				for x := range sz[0] {
					p[y*sz[0]+x] = float32(0.5 + 0.4*math.Sin(float64(x*(i+1))/7+float64(c))*math.Cos(float64(y)/5))
				}
			}
		}
		if err := imageio.WriteFile(filepath.Join(dir, string(rune('a'+i))+".png"), m, nil); err != nil {
			t.Fatal(err)
		}
	}
	os.WriteFile(filepath.Join(dir, "notes.txt"), []byte("not an image"), 0o644)
	return dir
}

func testOptions() *degrade.Options {
	o := degrade.DefaultOptions()
	o.Crop.Size = 64
	return o
}

func hashBatch(b *Batch) [32]byte {
	h := sha256.New()
	for _, s := range [][]float32{b.HR, b.LR, b.LRUp} {
		binary.Write(h, binary.LittleEndian, s)
	}
	var out [32]byte
	copy(out[:], h.Sum(nil))
	return out
}

func TestOpenDirAndCache(t *testing.T) {
	dir := photoDir(t)
	ph, err := OpenDir(dir, 0)
	if err != nil {
		t.Fatal(err)
	}
	if ph.Len() != 4 || ph.Name(0) != "a.png" || ph.Name(3) != "d.png" {
		t.Fatalf("listed %d photos: %v", ph.Len(), ph.names)
	}
	a, err := ph.Photo(0)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := ph.Photo(0)
	if a != b || a.Width != 200 || a.Channels != 3 {
		t.Fatal("second request did not come from the cache")
	}
	g, _ := ph.Photo(3)
	if r := g.Region(0, 0, 4, 4); r.Channels != 3 || r.Pix[0] != r.Pix[16] {
		t.Fatal("gray photo not replicated to RGB")
	}
	// A budget of one photo keeps only the latest.
	small, _ := OpenDir(dir, 1)
	for i := range 4 {
		if _, err := small.Photo(i); err != nil {
			t.Fatal(err)
		}
	}
	if got := small.CachedBytes(); got != 120*90 {
		t.Fatalf("cache holds %d bytes, want the last photo only (%d)", got, 120*90)
	}
	if _, err := OpenDir(t.TempDir(), 0); err == nil {
		t.Fatal("empty directory accepted")
	}
}

// TestPhotoIndexEpochs: every epoch visits every photo once, in a
// different order.
func TestPhotoIndexEpochs(t *testing.T) {
	ph := &Photos{names: make([]string, 7)}
	var orders [][]int
	for e := range 3 {
		seen := map[int]bool{}
		var order []int
		for k := e * 7; k < (e+1)*7; k++ {
			i := ph.PhotoIndex(5, k)
			seen[i] = true
			order = append(order, i)
		}
		if len(seen) != 7 {
			t.Fatalf("epoch %d visits %d photos", e, len(seen))
		}
		orders = append(orders, order)
	}
	if slicesEqual(orders[0], orders[1]) && slicesEqual(orders[1], orders[2]) {
		t.Fatal("every epoch has the same order")
	}
}

func slicesEqual(a, b []int) bool {
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func collect(t *testing.T, ph *Photos, cfg Config, n int) []*Batch {
	l, err := NewLoader(context.Background(), ph, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	var out []*Batch
	for range n {
		b, err := l.Next()
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, b)
	}
	return out
}

// TestLoaderDeterministic: batch contents depend on the seed and batch
// index only, not on workers or prefetch depth, and equal Photos.Pair.
func TestLoaderDeterministic(t *testing.T) {
	ph, err := OpenDir(photoDir(t), 0)
	if err != nil {
		t.Fatal(err)
	}
	o := testOptions()
	one := collect(t, ph, Config{Batch: 3, Workers: 1, Prefetch: 1, Seed: 9, Options: o}, 4)
	many := collect(t, ph, Config{Batch: 3, Workers: 3, Prefetch: 5, Seed: 9, Options: o}, 4)
	for i := range one {
		if one[i].Index != i || many[i].Index != i || hashBatch(one[i]) != hashBatch(many[i]) {
			t.Fatalf("batch %d differs between 1 and 3 workers", i)
		}
		if b := one[i]; b.N != 3 || len(b.HR) != 3*3*64*64 || len(b.LR) != 3*3*16*16 || len(b.LRUp) != len(b.HR) || len(b.Params) != 3 {
			t.Fatalf("batch %d has shape N=%d HR=%d LR=%d", i, b.N, len(b.HR), len(b.LR))
		}
	}
	resumed := collect(t, ph, Config{Batch: 3, Workers: 2, Seed: 9, Start: 2, Options: o}, 1)
	if resumed[0].Index != 2 || hashBatch(resumed[0]) != hashBatch(one[2]) {
		t.Fatal("starting at batch 2 does not reproduce batch 2")
	}
	other := collect(t, ph, Config{Batch: 3, Workers: 2, Seed: 10, Options: o}, 1)
	if hashBatch(other[0]) == hashBatch(one[0]) {
		t.Fatal("seeds 9 and 10 give the same batch")
	}
	p, err := ph.Pair(9, 4, o) // batch 1, item 1
	if err != nil {
		t.Fatal(err)
	}
	n := 3 * 64 * 64
	for i, v := range p.HR.Pix {
		if one[1].HR[n+i] != v {
			t.Fatal("batch item differs from Photos.Pair")
		}
	}
	if one[1].Params[1].Index != 4 || one[1].Params[1].Source != p.Params.Source || p.Params.Seed != 9 {
		t.Fatalf("sidecar %+v", one[1].Params[1])
	}
}

func TestLoaderMixture(t *testing.T) {
	ph, err := OpenDir(photoDir(t), 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	mild := testOptions()
	mild.Stage1.Blur.Prob, mild.Stage2.Blur.Prob, mild.Final.SincProb = 0, 0, 0
	mix := degrade.Mixture{{Name: "harsh", Weight: 1, Options: testOptions()}, {Name: "mild", Weight: 1, Options: mild}}
	one := collect(t, ph, Config{Batch: 3, Workers: 1, Seed: 9, Mixture: mix}, 6)
	many := collect(t, ph, Config{Batch: 3, Workers: 3, Seed: 9, Mixture: mix}, 6)
	seen := map[string]int{}
	for i := range one {
		if hashBatch(one[i]) != hashBatch(many[i]) {
			t.Fatalf("batch %d differs between 1 and 3 workers", i)
		}
		for j, p := range one[i].Params {
			seen[p.Model]++
			o := mix[0].Options
			if p.Model == "mild" {
				o = mild
			} else if p.Model != "harsh" {
				t.Fatalf("pair %d of batch %d: model %q", j, i, p.Model)
			}
			// The pair is Photos.Pair of its component's options.
			want, err := ph.Pair(9, i*3+j, o)
			if err != nil {
				t.Fatal(err)
			}
			n := 3 * 16 * 16
			for k, v := range want.LR.Pix {
				if one[i].LR[j*n+k] != v {
					t.Fatalf("pair %d of batch %d is not its component's pair", j, i)
				}
			}
		}
	}
	if seen["harsh"] < 3 || seen["mild"] < 3 {
		t.Fatalf("18 pairs of an even mixture: %v", seen)
	}
	mild.Crop.Size = 128
	if _, err := NewLoader(context.Background(), ph, Config{Mixture: mix}); err == nil {
		t.Fatal("a mixture of two crop sizes was accepted")
	}
}

func TestLoaderCancel(t *testing.T) {
	ph, err := OpenDir(photoDir(t), 0)
	if err != nil {
		t.Fatal(err)
	}
	before := runtime.NumGoroutine()
	ctx, cancel := context.WithCancel(context.Background())
	l, err := NewLoader(ctx, ph, Config{Batch: 2, Workers: 2, Options: testOptions()})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l.Next(); err != nil {
		t.Fatal(err)
	}
	cancel()
	if _, err := l.Next(); !errors.Is(err, context.Canceled) {
		t.Fatalf("Next after cancel: %v", err)
	}
	done := make(chan struct{})
	go func() { l.Close(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Close did not return after cancellation")
	}
	time.Sleep(10 * time.Millisecond)
	if after := runtime.NumGoroutine(); after > before {
		t.Fatalf("%d goroutines before, %d after Close", before, after)
	}
}

package rng

import (
	"math"
	"testing"
)

func TestDeterministicAndDistinct(t *testing.T) {
	a, b, c := New(42), New(42), New(43)
	same := true
	for i := 0; i < 100; i++ {
		x, y, z := a.Uint64(), b.Uint64(), c.Uint64()
		if x != y {
			t.Fatal("same seed gave different streams")
		}
		if x != z {
			same = false
		}
	}
	if same {
		t.Fatal("different seeds gave the same stream")
	}
	// Golden values pin the algorithm: a change here changes every dataset.
	r := New(1)
	if x, y := r.Uint64(), r.Uint64(); x != 11722706399272220446 || y != 18160466081297704541 {
		t.Fatalf("New(1) stream changed: %d %d", x, y)
	}
	if g := New(2).Normal(); g != 0.16348066135576853 {
		t.Fatalf("New(2).Normal() changed: %v", g)
	}
}

func TestMoments(t *testing.T) {
	r := New(7)
	const n = 200000
	var su, su2, sn, sn2 float64
	for i := 0; i < n; i++ {
		u := r.Float64()
		su += u
		su2 += u * u
		g := r.Normal()
		sn += g
		sn2 += g * g
	}
	mu, vu := su/n, su2/n-(su/n)*(su/n)
	mn, vn := sn/n, sn2/n-(sn/n)*(sn/n)
	if math.Abs(mu-0.5) > 0.005 || math.Abs(vu-1.0/12) > 0.002 {
		t.Errorf("uniform mean %.4f var %.4f", mu, vu)
	}
	if math.Abs(mn) > 0.01 || math.Abs(vn-1) > 0.02 {
		t.Errorf("normal mean %.4f var %.4f", mn, vn)
	}
	counts := make([]int, 7)
	for i := 0; i < 70000; i++ {
		counts[r.IntN(7)]++
	}
	for k, c := range counts {
		if c < 9500 || c > 10500 {
			t.Errorf("IntN(7) bucket %d: %d", k, c)
		}
	}
}

func TestChildIndependentOfUse(t *testing.T) {
	p := New(5)
	c1 := p.Child(3).Uint64()
	c2 := p.Child(3).Uint64()
	c3 := p.Child(4).Uint64()
	if c1 != c2 || c1 == c3 {
		t.Fatalf("Child not deterministic or not distinct: %d %d %d", c1, c2, c3)
	}
	perm := p.Perm(10)
	seen := map[int]bool{}
	for _, v := range perm {
		seen[v] = true
	}
	if len(seen) != 10 {
		t.Fatal("Perm is not a permutation")
	}
}

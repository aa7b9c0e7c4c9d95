package tensor

import "fmt"

// BroadcastShape returns the NumPy-style broadcast of two shapes.
func BroadcastShape(a, b []int) ([]int, error) {
	n := max(len(a), len(b))
	out := make([]int, n)
	for i := 0; i < n; i++ {
		da, db := 1, 1
		if j := len(a) - n + i; j >= 0 {
			da = a[j]
		}
		if j := len(b) - n + i; j >= 0 {
			db = b[j]
		}
		switch {
		case da == db, db == 1:
			out[i] = da
		case da == 1:
			out[i] = db
		default:
			return nil, fmt.Errorf("tensor: shapes %v and %v do not broadcast", a, b)
		}
	}
	return out, nil
}

// broadcastIndex maps each flat index of shape out to the flat index of an
// input of shape in that broadcasts to out. It returns nil when in == out.
func broadcastIndex(in, out []int) []int32 {
	if SameShape(in, out) {
		return nil
	}
	n := Numel(out)
	idx := make([]int32, n)
	// Strides of in, aligned to out's dims; 0 where in broadcasts.
	strides := make([]int, len(out))
	s := 1
	for i := len(out) - 1; i >= 0; i-- {
		j := len(in) - len(out) + i
		if j >= 0 && in[j] != 1 {
			strides[i] = s
		}
		if j >= 0 {
			s *= in[j]
		}
	}
	coord := make([]int, len(out))
	off := 0
	for k := 0; k < n; k++ {
		idx[k] = int32(off)
		for d := len(out) - 1; d >= 0; d-- {
			coord[d]++
			off += strides[d]
			if coord[d] < out[d] {
				break
			}
			off -= strides[d] * coord[d]
			coord[d] = 0
		}
	}
	return idx
}

// reduceTo sums a gradient of shape out back to the shape of a broadcast
// input (idx from broadcastIndex; nil means same shape, returned as is).
func reduceTo(g []float32, idx []int32, n int) []float32 {
	if idx == nil {
		return g
	}
	r := make([]float32, n)
	for k, v := range g {
		r[idx[k]] += v
	}
	return r
}

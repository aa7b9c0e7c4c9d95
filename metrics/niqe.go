package metrics

import (
	_ "embed"
	"errors"
	"fmt"
	"math"
	"sort"
	"sync"

	"gonum.org/v1/gonum/mat"

	"tsdsr/imageio"
	"tsdsr/resize"
)

// NIQE (Mittal et al., "Making a completely blind image quality analyzer",
// 2013) fits a multivariate Gaussian to natural-scene statistics of 96x96
// blocks at two scales and reports its distance to a model fitted on
// pristine images; lower is better.
//
// This is pyiqa's create_metric('niqe') (0.1.10 to 0.1.15) as OSEDiff's
// and TSD-SR's evaluation runs it on CUDA, reproduced operation by
// operation where the last digits depend on it:
//
//   - luma: YIQ Y = 0.299R + 0.587G + 0.114B (pyiqa's NIQE default, not
//     BT.601), a float32 product of RGB = v*float32(1/255), times 255 in
//     float32, rounded half to even; then float64;
//   - crop to whole 96x96 blocks (top-left kept);
//   - MSCN: 7x7 Gaussian (sigma 7/6) computed in float64 but stored in
//     float32 and widened again, so its weights do not sum exactly to 1;
//     replicate padding; (I - mu) / (sqrt(|E[I^2] - mu^2| + eps) + 1);
//   - per block (enumerated column by column): AGGD fits of the MSCN
//     coefficients and of their products with the four circularly shifted
//     neighbours (0,1), (1,0), (1,1), (1,-1); shape by argmin (first
//     minimum) over the float32 grid arange(0.2, 10.001, 0.001);
//   - second scale: MATLAB bicubic imresize by 0.5 (resize.MatlabImresize,
//     float32) of I/255, times 255, 48x48 blocks;
//   - nanmean/nancov of the 36 features; distance
//     sqrt(d' pinv((C_pris + C)/2) d) with pinv's cutoff 36*eps;
//   - the pristine mean and covariance are rounded to float32 first
//     (pyiqa converts them to the input image's dtype).

const niqeBlock = 96

// niqePrisNPZ is BasicSR's niqe_pris_params.npz (Apache-2.0; see
// NOTICE): mu_pris_param (1x36) and cov_pris_param (36x36) of the pristine
// model, the same numbers as the original MATLAB release's
// modelparameters.mat.
//
//go:embed niqe_pris_params.npz
var niqePrisNPZ []byte

type niqeModel struct {
	mu     [36]float64
	cov    [36 * 36]float64
	window [49]float64 // 7x7 MSCN window, float32 values widened
	gam    []float64   // AGGD shape grid
	rgam   []float64   // generalized Gaussian ratio for each grid value
	// monotone records that rgam is strictly increasing, which lets
	// nearest search it instead of scanning all 9801 values.
	monotone bool
}

var (
	niqeOnce sync.Once
	niqeMod  *niqeModel
	niqeErr  error
)

func loadNIQE() (*niqeModel, error) {
	niqeOnce.Do(func() {
		arrs, err := readNPZ(niqePrisNPZ)
		if err != nil {
			niqeErr = fmt.Errorf("niqe: embedded pristine model: %w", err)
			return
		}
		mu, cov := arrs["mu_pris_param"], arrs["cov_pris_param"]
		if len(mu.data) != 36 || len(cov.data) != 36*36 {
			niqeErr = errors.New("niqe: embedded pristine model has unexpected shapes")
			return
		}
		m := &niqeModel{}
		for i, v := range mu.data {
			m.mu[i] = float64(float32(v))
		}
		for i, v := range cov.data {
			m.cov[i] = float64(float32(v))
		}
		m.window = niqeWindow()
		m.gam, m.rgam = aggdGrid()
		m.monotone = true
		for i := 1; i < len(m.rgam); i++ {
			m.monotone = m.monotone && m.rgam[i] > m.rgam[i-1]
		}
		niqeMod = m
	})
	return niqeMod, niqeErr
}

// niqeWindow is pyiqa's fspecial(7, 7/6): exp(-(x^2+y^2)/(2 sigma^2)) over
// -3..3 in float64, divided by its sum (NumPy's pairwise summation), then
// stored as float32.
func niqeWindow() (w [49]float64) {
	sigma := 7.0
	sigma /= 6
	den := 2 * sigma * sigma
	var h [49]float64
	for i := range 7 {
		for j := range 7 {
			y, x := float64(i-3), float64(j-3)
			h[i*7+j] = math.Exp(-(x*x + y*y) / den)
		}
	}
	s := pairwiseSum(h[:])
	for i := range h {
		w[i] = float64(float32(h[i] / s))
	}
	return w
}

// pairwiseSum adds up to 128 values the way NumPy's sum does: eight
// interleaved partial sums combined pairwise, then the remainder in order.
func pairwiseSum(a []float64) float64 {
	n := len(a)
	if n < 8 {
		var s float64
		for _, v := range a {
			s += v
		}
		return s
	}
	var r [8]float64
	copy(r[:], a[:8])
	i := 8
	for ; i < n-n%8; i += 8 {
		for j := range r {
			r[j] += a[i+j]
		}
	}
	s := ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]))
	for ; i < n; i++ {
		s += a[i]
	}
	return s
}

// aggdGrid returns pyiqa's AGGD shape grid, torch.arange(0.2, 10.001,
// 0.001) in float32 (9801 values), and r(g) = Gamma(2/g)^2 /
// (Gamma(1/g) Gamma(3/g)) for each, in float64. c/g is evaluated as
// (1/g)*c, as PyTorch does.
func aggdGrid() (gam, rgam []float64) {
	start, step := 0.2, 0.001
	n := int(math.Ceil((10 + step - start) / step))
	gam = make([]float64, n)
	rgam = make([]float64, n)
	for i := range gam {
		g := float64(float32(start + step*float64(i)))
		r := 1 / g
		gam[i] = g
		rgam[i] = math.Exp(2*lgamma(r*2) - (lgamma(r) + lgamma(r*3)))
	}
	return gam, rgam
}

func lgamma(x float64) float64 {
	v, _ := math.Lgamma(x)
	return v
}

type niqeMetric struct {
	o Options
	m *niqeModel
}

func newNIQE(o Options) (Metric, error) {
	m, err := loadNIQE()
	if err != nil {
		return nil, err
	}
	return niqeMetric{o, m}, nil
}

func (niqeMetric) Name() string         { return "niqe" }
func (niqeMetric) NeedsReference() bool { return false }
func (niqeMetric) HigherIsBetter() bool { return false }

// Compute returns the NIQE score of sr (gt is ignored). The image must
// hold at least two 96x96 blocks after cropping.
func (n niqeMetric) Compute(sr, _ *imageio.Image) (float64, error) { return compute(n, sr, nil) }

func (n niqeMetric) crop() int { return n.o.Crop }

func (n niqeMetric) compute8(img, _ *rgb8) (float64, error) {
	y := make([]float64, img.w*img.h)
	for i := range y {
		fr := float32(float32(img.c[0][i]) * inv255)
		fg := float32(float32(img.c[1][i]) * inv255)
		fb := float32(float32(img.c[2][i]) * inv255)
		l := fma32(fb, 0.114, fma32(fg, 0.587, float32(fr*0.299)))
		y[i] = math.RoundToEven(float64(float32(l * 255)))
	}
	return n.m.score(y, img.w, img.h)
}

func errTooSmall(metric string, w, h, mw, mh int) error {
	return fmt.Errorf("metrics: %s needs at least %dx%d pixels, image is %dx%d", metric, mw, mh, w, h)
}

// score computes NIQE of a luma plane with values 0..255.
func (m *niqeModel) score(img []float64, w, h int) (float64, error) {
	nbh, nbw := h/niqeBlock, w/niqeBlock
	if nbh == 0 || nbw == 0 {
		return 0, errTooSmall("niqe", w, h, niqeBlock, niqeBlock)
	}
	if nbh*nbw < 2 {
		return 0, errors.New("metrics: niqe needs at least two 96x96 blocks")
	}
	cw, ch := nbw*niqeBlock, nbh*niqeBlock
	crop := make([]float64, cw*ch)
	for r := range ch {
		copy(crop[r*cw:(r+1)*cw], img[r*w:])
	}
	nb := nbh * nbw
	feats := make([][36]float64, nb)
	m.blockFeatures(m.mscn(crop, cw, ch), cw, niqeBlock, nbh, nbw, feats, 0)

	half := make([]float32, len(crop))
	for i, v := range crop {
		half[i] = float32(v * (1.0 / 255))
	}
	small, sw, sh := resize.MatlabImresize(half, cw, ch, 0.5)
	img2 := make([]float64, len(small))
	for i, v := range small {
		img2[i] = float64(v) * 255
	}
	m.blockFeatures(m.mscn(img2, sw, sh), sw, niqeBlock/2, nbh, nbw, feats, 18)
	return m.distance(feats)
}

// mscn returns the mean-subtracted contrast-normalised coefficients of a
// plane (7x7 window, replicate padding). The window is symmetric in both
// axes, so each weight multiplies a sum of the two, four or eight samples
// it applies to; this halves the work and only changes float64 rounding.
func (m *niqeModel) mscn(img []float64, w, h int) []float64 {
	// Replicate-pad by 3 once; keep the squares beside.
	pw := w + 6
	pad := make([]float64, pw*(h+6))
	for r := range h + 6 {
		src := img[min(max(r-3, 0), h-1)*w:][:w]
		row := pad[r*pw : (r+1)*pw]
		copy(row[3:], src)
		row[0], row[1], row[2] = src[0], src[0], src[0]
		row[w+3], row[w+4], row[w+5] = src[w-1], src[w-1], src[w-1]
	}
	sq := make([]float64, len(pad))
	for i, v := range pad {
		sq[i] = v * v
	}
	var wt [4][4]float64 // weight at row offset d, column offset e
	for d := range 4 {
		for e := range 4 {
			wt[d][e] = m.window[(3+d)*7+3+e]
		}
	}
	out := make([]float64, w*h)
	mu := make([]float64, w)
	ex2 := make([]float64, w)
	var vp, vs [4][]float64 // vertical pair sums of samples and squares
	for d := range 4 {
		vp[d], vs[d] = make([]float64, pw), make([]float64, pw)
	}
	for r := range h {
		row := func(p []float64, i int) []float64 { return p[(r+i)*pw : (r+i+1)*pw] }
		copy(vp[0], row(pad, 3))
		copy(vs[0], row(sq, 3))
		for d := 1; d < 4; d++ {
			a, b := row(pad, 3-d), row(pad, 3+d)
			as, bs := row(sq, 3-d), row(sq, 3+d)
			for c := range vp[d] {
				vp[d][c] = a[c] + b[c]
				vs[d][c] = as[c] + bs[c]
			}
		}
		clear(mu)
		clear(ex2)
		for d := range 4 {
			p, q := vp[d], vs[d]
			k := wt[d][0]
			for c := range mu {
				mu[c] += k * p[c+3]
				ex2[c] += k * q[c+3]
			}
			for e := 1; e < 4; e++ {
				k := wt[d][e]
				pl, pr, ql, qr := p[3-e:3-e+w], p[3+e:3+e+w], q[3-e:3-e+w], q[3+e:3+e+w]
				for c := range mu {
					mu[c] += k * (pl[c] + pr[c])
					ex2[c] += k * (ql[c] + qr[c])
				}
			}
		}
		orow := out[r*w : (r+1)*w]
		irow := img[r*w : (r+1)*w]
		for c := range orow {
			sigma := math.Sqrt(math.Abs(ex2[c]-mu[c]*mu[c]) + 0x1p-52)
			orow[c] = (irow[c] - mu[c]) / (sigma + 1)
		}
	}
	return out
}

// blockFeatures fills feats[b][off:off+18] for the bs x bs blocks of the
// MSCN plane x (width w), block b = column*nbh + row.
func (m *niqeModel) blockFeatures(x []float64, w, bs, nbh, nbw int, feats [][36]float64, off int) {
	blk := make([]float64, bs*bs)
	prod := make([]float64, bs*bs)
	shifts := [4][2]int{{0, 1}, {1, 0}, {1, 1}, {1, -1}}
	// colIdx[dx+1][c] is the column c-dx wrapped into the block, as
	// torch.roll does.
	var colIdx [3][]int
	for dx := -1; dx <= 1; dx++ {
		colIdx[dx+1] = make([]int, bs)
		for c := range bs {
			colIdx[dx+1][c] = (c - dx + bs) % bs
		}
	}
	for bc := range nbw {
		for br := range nbh {
			for r := range bs {
				copy(blk[r*bs:(r+1)*bs], x[(br*bs+r)*w+bc*bs:])
			}
			f := &feats[bc*nbh+br]
			alpha, bl, brr := m.aggd(blk)
			f[off], f[off+1] = alpha, (bl+brr)/2
			for s, sh := range shifts {
				cols := colIdx[sh[1]+1]
				for r := range bs {
					src := blk[((r-sh[0]+bs)%bs)*bs:][:bs]
					dst, cur := prod[r*bs:(r+1)*bs], blk[r*bs:(r+1)*bs]
					for c, sc := range cols {
						dst[c] = cur[c] * src[sc]
					}
				}
				a, l, rr := m.aggd(prod)
				mean := (rr - l) * math.Exp(lgamma(2*(1/a))-lgamma(1/a))
				o := off + 2 + 4*s
				f[o], f[o+1], f[o+2], f[o+3] = a, mean, l, rr
			}
		}
	}
}

// aggd fits an asymmetric generalized Gaussian by moment matching and
// returns its shape alpha and left/right scales. Blocks without negative
// (or positive) values give NaN scales, as in pyiqa.
func (m *niqeModel) aggd(x []float64) (alpha, betaL, betaR float64) {
	var nl, nr int
	var sl, sr, sabs, ssq float64
	for _, v := range x {
		sq := v * v
		switch {
		case v < 0:
			nl++
			sl += sq
		case v > 0:
			nr++
			sr += sq
		}
		sabs += math.Abs(v)
		ssq += sq
	}
	n := float64(len(x))
	lstd := math.Sqrt(sl / float64(nl))
	rstd := math.Sqrt(sr / float64(nr))
	g := lstd / rstd
	ma := sabs / n
	rhat := (ma * ma) / (ssq / n)
	g2 := g * g
	den := g2 + 1
	rnorm := (rhat * (g2*g + 1) * (g + 1)) / (den * den)
	pos := m.nearest(rnorm)
	alpha = m.gam[pos]
	inv := 1 / alpha
	c := math.Sqrt(math.Exp(lgamma(inv) - lgamma(inv*3)))
	return alpha, lstd * c, rstd * c
}

// nearest returns torch.argmin(|rgam - x|): the first index of the
// minimum, with NaN counting as the minimum (so a NaN or infinite x gives 0). The grid
// is strictly increasing (checked when it is built), so the minimum lies
// next to x's insertion point; a short scan around it applies the exact
// comparison rules.
func (m *niqeModel) nearest(x float64) int {
	if math.IsNaN(x) || math.IsInf(x, 0) {
		return 0 // every distance is NaN or +Inf: the first wins
	}
	if !m.monotone {
		return argminAbs(m.rgam, x, 0, len(m.rgam))
	}
	k := sort.SearchFloat64s(m.rgam, x)
	return argminAbs(m.rgam, x, max(0, k-4), min(len(m.rgam), k+4))
}

// argminAbs is the first index in [lo, hi) minimising |r[i] - x|.
func argminAbs(r []float64, x float64, lo, hi int) int {
	pos, best := lo, math.Abs(r[lo]-x)
	for i := lo + 1; i < hi; i++ {
		if d := math.Abs(r[i] - x); d < best {
			best, pos = d, i
		}
	}
	return pos
}

// distance fits the multivariate Gaussian to the block features (NaN
// entries dropped from the mean, NaN rows from the covariance) and
// returns its distance to the pristine model.
func (m *niqeModel) distance(feats [][36]float64) (float64, error) {
	var mu [36]float64
	for k := range 36 {
		var s float64
		var c int
		for _, f := range feats {
			if !math.IsNaN(f[k]) {
				s += f[k]
				c++
			}
		}
		mu[k] = s / float64(c)
	}
	var rows [][36]float64
	for _, f := range feats {
		ok := true
		for _, v := range f {
			if math.IsNaN(v) {
				ok = false
				break
			}
		}
		if ok {
			rows = append(rows, f)
		}
	}
	if len(rows) < 2 {
		return 0, errors.New("metrics: niqe: fewer than two blocks with finite features")
	}
	var rm [36]float64
	for k := range 36 {
		var s float64
		for _, f := range rows {
			s += f[k]
		}
		rm[k] = s / float64(len(rows))
	}
	fac := 1 / float64(len(rows)-1)
	sym := mat.NewDense(36, 36, nil)
	for i := range 36 {
		for j := range 36 {
			var s float64
			for _, f := range rows {
				s += (fac * (f[i] - rm[i])) * (f[j] - rm[j])
			}
			sym.Set(i, j, (m.cov[i*36+j]+s)*0.5)
		}
	}
	pinv, err := pinv(sym)
	if err != nil {
		return 0, err
	}
	d := make([]float64, 36)
	for k := range d {
		d[k] = m.mu[k] - mu[k]
	}
	dv := mat.NewVecDense(36, d)
	var t mat.VecDense
	t.MulVec(pinv, dv)
	q := mat.Dot(dv, &t)
	return math.Sqrt(q), nil
}

// pinv is the Moore-Penrose pseudo-inverse by SVD with torch.linalg.pinv's
// default cutoff: singular values below max(m, n)*eps*s_max are dropped.
func pinv(a *mat.Dense) (*mat.Dense, error) {
	var svd mat.SVD
	if !svd.Factorize(a, mat.SVDThin) {
		return nil, errors.New("metrics: niqe: SVD did not converge")
	}
	s := svd.Values(nil)
	var u, v mat.Dense
	svd.UTo(&u)
	svd.VTo(&v)
	r, c := a.Dims()
	cut := float64(max(r, c)) * 0x1p-52 * s[0]
	out := mat.NewDense(c, r, nil)
	for k, sv := range s {
		if sv <= cut {
			continue
		}
		for i := range c {
			vi := v.At(i, k) / sv
			for j := range r {
				out.Set(i, j, out.At(i, j)+vi*u.At(j, k))
			}
		}
	}
	return out, nil
}

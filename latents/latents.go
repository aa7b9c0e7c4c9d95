// Package latents is the latent cache of the prior's training data: random
// HR crops of a photo directory, encoded once with TAESD3 and kept in one
// safetensors file, so training spends its time on the transformer rather
// than re-encoding the same photos every epoch.
//
// Crop k of photo i is a function of (seed, i, k) only (its position and
// flip come from rng.New(seed).Child(i*perPhoto + k)), so a cache is
// reproducible from its metadata. The held-out validation split is by photo,
// never by crop: overlapping crops of one photo on both sides would leak.
package latents

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"

	"tsdsr/data"
	"tsdsr/model/taesd"
	"tsdsr/rng"
	"tsdsr/safetensors"
	"tsdsr/tensor"
)

// Format names the cache layout in its metadata.
const Format = "tsdsr-latents-v1"

// BuildOptions configure Build. Zero fields take the defaults noted.
type BuildOptions struct {
	Crop     int    // HR crop side in pixels, a multiple of 8 (default 256)
	PerPhoto int    // crops per photo (default 8)
	Seed     uint64 // crop positions and flips
	Batch    int    // crops per encoder pass (default 4)
	// Progress, when set, is called after each encoder pass with the crops
	// done and the total.
	Progress func(done, total int)
}

// Cache is a set of encoded crops.
type Cache struct {
	Latents *tensor.Tensor // [M, 16, Crop/8, Crop/8], raw TAESD3 latents (unscaled)
	Photo   []int          // index into Photos of each crop
	Photos  []string       // photo file names
	Skipped []string       // photos smaller than the crop, left out
	Source  string         // the photo directory
	Crop    int
	Seed    uint64
}

// job is one crop to encode.
type job struct{ photo, k int }

// Build encodes o.PerPhoto random crops (random horizontal flips) of every
// photo at least o.Crop pixels on each side, o.Batch crops per encoder pass
// (the encoder's kernels use every thread; batching amortises their set-up).
// It stops with ctx's error when ctx is cancelled. The latents are the
// encoder's float32 values; Save stores them in half precision, so train
// from the loaded file when runs must be reproducible from it.
func Build(ctx context.Context, photos *data.Photos, source string, enc *taesd.Encoder, o BuildOptions) (*Cache, error) {
	if o.Crop == 0 {
		o.Crop = 256
	}
	if o.PerPhoto == 0 {
		o.PerPhoto = 8
	}
	if o.Batch <= 0 {
		o.Batch = 4
	}
	if o.Crop <= 0 || o.Crop%taesd.Factor != 0 || o.PerPhoto < 0 {
		return nil, fmt.Errorf("latents: crop %d must be a positive multiple of %d, crops per photo %d positive", o.Crop, taesd.Factor, o.PerPhoto)
	}
	c := &Cache{Source: source, Crop: o.Crop, Seed: o.Seed}
	var jobs []job
	for i := range photos.Len() {
		c.Photos = append(c.Photos, photos.Name(i))
		p, err := photos.Photo(i)
		if err != nil {
			return nil, err
		}
		if w, h := p.Size(); w < o.Crop || h < o.Crop {
			c.Skipped = append(c.Skipped, photos.Name(i))
			continue
		}
		for k := range o.PerPhoto {
			jobs = append(jobs, job{i, k})
		}
	}
	if len(jobs) == 0 {
		return nil, fmt.Errorf("latents: no photo in %s is at least %d px on each side", source, o.Crop)
	}
	s := o.Crop / taesd.Factor
	c.Latents = tensor.New(len(jobs), 16, s, s)
	per := 16 * s * s
	defer tensor.NoGrad()()
	for lo := 0; lo < len(jobs); lo += o.Batch {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		hi := min(len(jobs), lo+o.Batch)
		x := tensor.New(hi-lo, 3, o.Crop, o.Crop)
		for b, j := range jobs[lo:hi] {
			p, err := photos.Photo(j.photo)
			if err != nil {
				return nil, err
			}
			r := rng.New(o.Seed).Child(uint64(j.photo*o.PerPhoto + j.k))
			w, h := p.Size()
			x0, y0 := r.IntN(w-o.Crop+1), r.IntN(h-o.Crop+1)
			Crop(p, x0, y0, o.Crop, r.IntN(2) == 1, x.Data[b*3*o.Crop*o.Crop:(b+1)*3*o.Crop*o.Crop])
			c.Photo = append(c.Photo, j.photo)
		}
		z := enc.Forward(x) // [b, 16, s, s]
		copy(c.Latents.Data[lo*per:hi*per], z.Data)
		if o.Progress != nil {
			o.Progress(hi, len(jobs))
		}
	}
	return c, nil
}

// Crop writes the size x size square of p at (x0, y0) into dst as three
// planes in [0, 1] (CHW), mirrored left-right when flip is set.
func Crop(p *data.Photo8, x0, y0, size int, flip bool, dst []float32) {
	img := p.Region(x0, y0, x0+size, y0+size)
	copy(dst, img.Pix[:3*size*size])
	if !flip {
		return
	}
	for row := 0; row < 3*size; row++ {
		line := dst[row*size : (row+1)*size]
		for a, b := 0, size-1; a < b; a, b = a+1, b-1 {
			line[a], line[b] = line[b], line[a]
		}
	}
}

// Save writes the cache atomically as safetensors: the tensor "latents" in
// F16 (the cache is training data, and half precision, 1e-3 relative, is far
// below the noise it will be mixed with) and the provenance in the
// metadata: format, source, crop, seed, count, photos, skipped and
// crop_photo (each crop's photo index).
func (c *Cache) Save(path string) error {
	meta := map[string]string{"format": Format, "source": c.Source, "crop": strconv.Itoa(c.Crop),
		"seed": strconv.FormatUint(c.Seed, 10), "count": strconv.Itoa(len(c.Photo)),
		"latents": "raw TAESD3 latents; multiply by 1.5305 (SD3's scaling factor) for the transformer"}
	for k, v := range map[string]any{"photos": c.Photos, "skipped": c.Skipped, "crop_photo": c.Photo} {
		b, err := json.Marshal(v)
		if err != nil {
			return err
		}
		meta[k] = string(b)
	}
	return safetensors.Save(path, map[string]*tensor.Tensor{"latents": c.Latents}, meta, safetensors.F16)
}

// Load reads a cache written by Save.
func Load(path string) (*Cache, error) {
	f, err := safetensors.Load(path)
	if err != nil {
		return nil, err
	}
	m := f.Metadata
	if m["format"] != Format {
		return nil, fmt.Errorf("latents: %s is not a latent cache (format %q)", path, m["format"])
	}
	c := &Cache{Source: m["source"]}
	if c.Crop, err = strconv.Atoi(m["crop"]); err != nil {
		return nil, fmt.Errorf("latents: %s: bad crop %q", path, m["crop"])
	}
	if c.Seed, err = strconv.ParseUint(m["seed"], 10, 64); err != nil {
		return nil, fmt.Errorf("latents: %s: bad seed %q", path, m["seed"])
	}
	for k, dst := range map[string]any{"photos": &c.Photos, "skipped": &c.Skipped, "crop_photo": &c.Photo} {
		if err := json.Unmarshal([]byte(m[k]), dst); err != nil {
			return nil, fmt.Errorf("latents: %s: metadata %s: %w", path, k, err)
		}
	}
	if c.Latents, err = f.Tensor("latents"); err != nil {
		return nil, err
	}
	if c.Latents.Dim() != 4 || c.Latents.Shape[0] != len(c.Photo) || c.Latents.Shape[1] != 16 {
		return nil, fmt.Errorf("latents: %s: latents %v for %d crops", path, c.Latents.Shape, len(c.Photo))
	}
	for _, p := range c.Photo {
		if p < 0 || p >= len(c.Photos) {
			return nil, fmt.Errorf("latents: %s: crop of photo %d of %d", path, p, len(c.Photos))
		}
	}
	return c, nil
}

// splitSalt decorrelates the split from the crop positions of the same seed.
const splitSalt = 0x5eed5b1e

// Split holds out about valFraction of the photos that have crops (at
// least one when valFraction > 0 and there are two or more) and returns
// the crops of the others for training and theirs for validation, as
// scaled latents (x taesd.LatentScale). The held-out photos depend only on
// the cache's seed and photo list.
func (c *Cache) Split(valFraction float64) (train, val *Set) {
	var used []int
	seen := map[int]bool{}
	for _, p := range c.Photo {
		if !seen[p] {
			seen[p] = true
			used = append(used, p)
		}
	}
	k := int(valFraction*float64(len(used)) + 0.5)
	if valFraction > 0 && len(used) > 1 {
		k = max(k, 1)
	}
	k = min(k, len(used)-1)
	held := map[int]bool{}
	for _, j := range rng.New(c.Seed ^ splitSalt).Perm(len(used))[:max(k, 0)] {
		held[used[j]] = true
	}
	var ti, vi []int
	for i, p := range c.Photo {
		if held[p] {
			vi = append(vi, i)
		} else {
			ti = append(ti, i)
		}
	}
	return c.subset(ti), c.subset(vi)
}

// subset gathers the given crops, scaled.
func (c *Cache) subset(idx []int) *Set {
	sh := c.Latents.Shape
	per := sh[1] * sh[2] * sh[3]
	x := tensor.New(len(idx), sh[1], sh[2], sh[3])
	photo := make([]int, len(idx))
	for n, i := range idx {
		src := c.Latents.Data[i*per : (i+1)*per]
		dst := x.Data[n*per : (n+1)*per]
		for j, v := range src {
			dst[j] = v * taesd.LatentScale
		}
		photo[n] = c.Photo[i]
	}
	return &Set{X: x, Photo: photo}
}

// Set is a split of a cache: scaled latents ready for the transformer.
type Set struct {
	X     *tensor.Tensor // [M, 16, h, w], raw latents x taesd.LatentScale
	Photo []int          // photo index of each latent
}

// Len is the number of latents.
func (s *Set) Len() int { return s.X.Shape[0] }

// Batch returns n latents drawn uniformly with replacement using r (a copy:
// the caller may modify it).
func (s *Set) Batch(r *rng.Rand, n int) *tensor.Tensor {
	sh := s.X.Shape
	per := sh[1] * sh[2] * sh[3]
	out := tensor.New(n, sh[1], sh[2], sh[3])
	for i := range n {
		j := r.IntN(sh[0])
		copy(out.Data[i*per:(i+1)*per], s.X.Data[j*per:(j+1)*per])
	}
	return out
}

// First returns the first n latents (all when n <= 0 or n > Len), for a
// validation set of fixed size.
func (s *Set) First(n int) *tensor.Tensor {
	if n <= 0 || n > s.Len() {
		n = s.Len()
	}
	sh := s.X.Shape
	return tensor.FromData(s.X.Data[:n*sh[1]*sh[2]*sh[3]], n, sh[1], sh[2], sh[3])
}

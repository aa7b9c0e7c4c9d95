package degrade

import (
	"fmt"

	"tsdsr/imageio"
	"tsdsr/resize"
	"tsdsr/rng"
)

// Photo is a picture the pair sampler crops from. Region returns the
// rectangle [x0, x1) x [y0, y1), inside the photo, as a 3-channel image with
// values in [0, 1] (gray photos replicated). Implementations may keep the
// photo in any form; the data package's cache keeps 8-bit planes.
type Photo interface {
	Size() (w, h int)
	Region(x0, y0, x1, y1 int) *imageio.Image
}

// ImagePhoto adapts an in-memory image to Photo.
type ImagePhoto struct{ *imageio.Image }

// Size returns the image size.
func (p ImagePhoto) Size() (int, int) { return p.Width, p.Height }

// Region copies a rectangle of the colour planes (gray becomes RGB).
func (p ImagePhoto) Region(x0, y0, x1, y1 int) *imageio.Image {
	w, h := x1-x0, y1-y0
	out := imageio.NewImage(w, h, 3)
	for c := range 3 {
		src := p.Plane(min(c, p.Channels-1))
		dst := out.Plane(c)
		for y := range h {
			copy(dst[y*w:(y+1)*w], src[(y0+y)*p.Width+x0:])
		}
	}
	return out
}

// CropParams records where a pair's HR crop came from. A photo smaller
// than the crop is extended on the right and bottom by reflection (as
// Real-ESRGAN's dataset does) by PadRight and PadBottom pixels. The flips
// and transpose are applied in that order after the crop.
type CropParams struct {
	X         int  `json:"x"`
	Y         int  `json:"y"`
	Size      int  `json:"size"`
	PadRight  int  `json:"pad_right,omitempty"`
	PadBottom int  `json:"pad_bottom,omitempty"`
	HFlip     bool `json:"hflip"`
	VFlip     bool `json:"vflip"`
	Transpose bool `json:"transpose"`
}

// PairParams is everything sampled for one training pair: the sidecar.
type PairParams struct {
	Source      string     `json:"source,omitempty"` // set by the caller
	Seed        uint64     `json:"seed"`             // set by the caller
	Index       int        `json:"index"`            // set by the caller
	Model       string     `json:"model,omitempty"`  // the Mixture component's name; set by the caller
	PhotoWidth  int        `json:"photo_width"`
	PhotoHeight int        `json:"photo_height"`
	USM         bool       `json:"usm"`
	Crop        CropParams `json:"crop"`
	Degradation Params     `json:"degradation"`
}

// Pair is one training example: the (USM-sharpened) HR crop, its degraded
// LR (HR/Scale, 8-bit levels) and LRUp, the LR upsampled back to the HR size
// with PyTorch bicubic, which is what the student network sees (not clamped,
// as F.interpolate).
type Pair struct {
	HR, LR, LRUp *imageio.Image
	Params       PairParams
}

// SamplePair draws a crop position, augmentation and degradation from r,
// then builds the pair. USM is computed on the crop plus a margin of the
// photo around it, so it equals USM of the whole photo followed by the
// crop. Calls with distinct r may run concurrently on one photo (Photo
// implementations must allow concurrent Region calls; this package's and
// the data package's do).
func SamplePair(photo Photo, r *rng.Rand, o *Options) (*Pair, error) {
	pw, ph := photo.Size()
	s := o.Crop.Size
	if pw < 1 || ph < 1 {
		return nil, errNoImage
	}
	pp := PairParams{PhotoWidth: pw, PhotoHeight: ph, USM: o.USM.Enabled}
	c := &pp.Crop
	c.Size = s
	c.PadRight, c.PadBottom = max(0, s-pw), max(0, s-ph)
	c.X = r.IntN(max(0, pw-s) + 1)
	c.Y = r.IntN(max(0, ph-s) + 1)
	if o.Crop.HFlip {
		c.HFlip = r.Float64() < 0.5
	}
	if o.Crop.Rot {
		c.VFlip = r.Float64() < 0.5
		c.Transpose = r.Float64() < 0.5
	}
	pp.Degradation = Sample(r, o, s, s)
	hr, err := cropHR(photo, c, o)
	if err != nil {
		return nil, err
	}
	lr, err := Apply(hr, &pp.Degradation)
	if err != nil {
		return nil, err
	}
	up := resize.Image(lr, s, s, resize.Bicubic)
	return &Pair{HR: hr, LR: lr, LRUp: up, Params: pp}, nil
}

// cropHR cuts the crop c out of photo, USM-sharpens it (reading a margin of
// the photo where there is one) and applies the flips.
func cropHR(photo Photo, c *CropParams, o *Options) (*imageio.Image, error) {
	pw, ph := photo.Size()
	s := c.Size
	m := 0
	if o.USM.Enabled {
		m = usmMargin(o.USM)
	}
	if c.PadRight > 0 || c.PadBottom > 0 {
		// Small photo: pad it to the crop size first, as Real-ESRGAN's
		// dataset does before its model sharpens.
		p := padRightBottom(photo.Region(0, 0, pw, ph), s, s)
		photo, pw, ph = ImagePhoto{p}, p.Width, p.Height
	}
	x0, y0 := max(0, c.X-m), max(0, c.Y-m)
	x1, y1 := min(pw, c.X+s+m), min(ph, c.Y+s+m)
	reg := photo.Region(x0, y0, x1, y1)
	ox, oy := c.X-x0, c.Y-y0
	if reg.Channels != 3 || reg.Validate() != nil {
		return nil, fmt.Errorf("degrade: photo region is not a valid RGB image")
	}
	var hr *imageio.Image
	if o.USM.Enabled {
		hr = &imageio.Image{Width: s, Height: s, Channels: 3, BitDepth: 8,
			Pix: usmRect(reg.Pix, reg.Width, reg.Height, 3, o.USM, ox, oy, s, s)}
	} else {
		hr = cropImage(reg, ox, oy, s, s)
	}
	augment(hr, c.HFlip, c.VFlip, c.Transpose)
	return hr, nil
}

// cropImage copies the w x h rectangle at (x, y) of m's colour planes.
func cropImage(m *imageio.Image, x, y, w, h int) *imageio.Image {
	if x == 0 && y == 0 && w == m.Width && h == m.Height {
		return m
	}
	return ImagePhoto{m}.Region(x, y, x+w, y+h)
}

// padRightBottom extends m to at least w x h by reflection at the right and
// bottom edges (OpenCV BORDER_REFLECT_101).
func padRightBottom(m *imageio.Image, w, h int) *imageio.Image {
	w, h = max(w, m.Width), max(h, m.Height)
	out := imageio.NewImage(w, h, m.Channels)
	for c := range m.Channels {
		src, dst := m.Plane(c), out.Plane(c)
		for y := range h {
			sy := reflect(y, m.Height)
			for x := range w {
				dst[y*w+x] = src[sy*m.Width+reflect(x, m.Width)]
			}
		}
	}
	return out
}

// augment flips and transposes a square image in place, as BasicSR's
// augment (hflip, vflip, then rot90 as a transpose).
func augment(m *imageio.Image, hflip, vflip, transpose bool) {
	n := m.Width
	for c := range m.Channels {
		p := m.Plane(c)
		if hflip {
			for y := range n {
				row := p[y*n : (y+1)*n]
				for i, j := 0, n-1; i < j; i, j = i+1, j-1 {
					row[i], row[j] = row[j], row[i]
				}
			}
		}
		if vflip {
			for i, j := 0, n-1; i < j; i, j = i+1, j-1 {
				for x := range n {
					p[i*n+x], p[j*n+x] = p[j*n+x], p[i*n+x]
				}
			}
		}
		if transpose {
			for y := range n {
				for x := y + 1; x < n; x++ {
					p[y*n+x], p[x*n+y] = p[x*n+y], p[y*n+x]
				}
			}
		}
	}
}

package imageio

import (
	"fmt"
	"image"
	"image/jpeg"
	"io"
	"os"
	"path/filepath"
	"strings"

	"tsdsr/internal/atomicfile"
)

// DefaultJPEGQuality is the JPEG quality used when EncodeOptions.Quality is 0.
const DefaultJPEGQuality = 95

// EncodeOptions controls Encode and WriteFile. A nil *EncodeOptions means
// defaults.
type EncodeOptions struct {
	// Format is "png" or "jpeg" ("jpg" is accepted). Empty means: from the
	// file extension in WriteFile, PNG in Encode.
	Format string
	// Quality is the JPEG quality, 1..100; 0 means DefaultJPEGQuality.
	Quality int
	// BitDepth is 8 or 16 for PNG; 0 means the image's own BitDepth. JPEG
	// is always 8-bit.
	BitDepth int
	// PNGLevel is the zlib compression level, 1 (fastest) to 9 (smallest);
	// 0 means 1, as OpenCV's imwrite (used by Real-ESRGAN and BasicSR)
	// does: on photos, level 6 saves about 20% of the size for 5x the time.
	PNGLevel int
	// Software, when set, is recorded in the file (a PNG tEXt "Software"
	// chunk, a JPEG comment) right after the header, where ReadSoftware
	// finds it: tsdsr upscale marks its outputs so that a rerun on the same
	// folder does not take them for inputs.
	Software string
}

// FormatFromPath returns "png" or "jpeg" from a file name's extension, or ""
// when the extension is not one imageio writes.
func FormatFromPath(path string) string {
	switch strings.ToLower(filepath.Ext(path)) {
	case ".png":
		return "png"
	case ".jpg", ".jpeg":
		return "jpeg"
	}
	return ""
}

// Encode writes m as PNG or JPEG.
//
// Samples are clamped to [0, 1] and rounded half up to the nearest 8- or
// 16-bit level (Quantize8, Quantize16), so decoding and re-encoding a PNG is
// bit-exact. PNG keeps gray-ness (gray or gray+alpha colour types), the alpha
// plane and the bit depth. JPEG is 8-bit baseline with 4:2:0 chroma for
// colour and a single component for gray; it has no alpha, so the alpha
// plane is dropped (not composited): check m.Alpha before choosing JPEG.
// JPEG sides are at most 65535 pixels (ErrTooLarge beyond).
func Encode(w io.Writer, m *Image, opts *EncodeOptions) error {
	if err := m.Validate(); err != nil {
		return err
	}
	var o EncodeOptions
	if opts != nil {
		o = *opts
	}
	switch strings.ToLower(o.Format) {
	case "", "png":
		depth := o.BitDepth
		if depth == 0 {
			depth = m.BitDepth
		}
		if depth != 8 && depth != 16 {
			return fmt.Errorf("imageio: PNG bit depth %d, want 8 or 16", depth)
		}
		level := o.PNGLevel
		if level == 0 {
			level = 1
		}
		if level < 1 || level > 9 {
			return fmt.Errorf("imageio: PNG level %d, want 1..9", level)
		}
		return encodePNG(w, m, depth, level, o.Software)
	case "jpeg", "jpg":
		q := o.Quality
		if q == 0 {
			q = DefaultJPEGQuality
		}
		if q < 1 || q > 100 {
			return fmt.Errorf("imageio: JPEG quality %d, want 1..100", q)
		}
		if o.Software != "" {
			if len(o.Software) > 65533 {
				return fmt.Errorf("imageio: Software text of %d bytes is too long for a JPEG comment", len(o.Software))
			}
			w = &comWriter{w: w, text: o.Software}
		}
		if m.Width > 65535 || m.Height > 65535 {
			return fmt.Errorf("imageio: %w: JPEG sides are at most 65535 pixels, image is %dx%d (write PNG)", ErrTooLarge, m.Width, m.Height)
		}
		return jpeg.Encode(w, toJPEGImage(m), &jpeg.Options{Quality: q})
	}
	return fmt.Errorf("imageio: %w: cannot write %q (want png or jpeg)", ErrUnsupported, o.Format)
}

// toJPEGImage gives the encoder a type it has a fast path for: *image.Gray
// (written as one component) or *image.RGBA (opaque).
func toJPEGImage(m *Image) image.Image {
	w, h, n := m.Width, m.Height, m.Width*m.Height
	r := image.Rect(0, 0, w, h)
	if m.Channels == 1 {
		d := image.NewGray(r)
		for i, v := range m.Pix[:n] {
			d.Pix[i] = Quantize8(v)
		}
		return d
	}
	d := image.NewRGBA(r)
	pr, pg, pb := m.Plane(0), m.Plane(1), m.Plane(2)
	for i := range n {
		p := d.Pix[4*i : 4*i+4]
		p[0], p[1], p[2], p[3] = Quantize8(pr[i]), Quantize8(pg[i]), Quantize8(pb[i]), 0xff
	}
	return d
}

// WriteFile encodes m to path atomically: it writes a temporary file in the
// same directory, syncs it and renames it over path, so readers never see a
// partial image. On any error the temporary file is removed and an existing
// file at path is left untouched. An empty opts.Format is taken from the
// extension (.png, .jpg, .jpeg). A new file gets mode 0644; an existing
// file keeps its mode.
func WriteFile(path string, m *Image, opts *EncodeOptions) (err error) {
	var o EncodeOptions
	if opts != nil {
		o = *opts
	}
	if o.Format == "" {
		if o.Format = FormatFromPath(path); o.Format == "" {
			return fmt.Errorf("imageio: %s: %w: unknown extension (want .png, .jpg or .jpeg)", path, ErrUnsupported)
		}
	}
	if st, err := os.Stat(path); err == nil && !st.Mode().IsRegular() {
		return fmt.Errorf("imageio: %s: not a regular file", path)
	}
	err = atomicfile.Write(path, func(w io.Writer) error {
		if err := Encode(w, m, &o); err != nil {
			return trimPrefix(err)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("imageio: %s: %w", path, err)
	}
	return nil
}

// trimPrefix drops the "imageio: " of an inner error so that WriteFile's
// message reads "imageio: path: reason" once.
func trimPrefix(err error) error {
	if s, ok := strings.CutPrefix(err.Error(), "imageio: "); ok {
		return &prefixed{s, err}
	}
	return err
}

type prefixed struct {
	msg string
	err error
}

func (p *prefixed) Error() string { return p.msg }
func (p *prefixed) Unwrap() error { return p.err }

// comWriter passes a JPEG stream through, inserting a COM segment holding
// text right after the 2-byte SOI marker.
type comWriter struct {
	w    io.Writer
	text string
	n    int // bytes of the stream passed so far, up to 2
}

func (c *comWriter) Write(p []byte) (int, error) {
	written := 0
	if c.n < 2 {
		k := min(2-c.n, len(p))
		if _, err := c.w.Write(p[:k]); err != nil {
			return 0, err
		}
		c.n += k
		written, p = k, p[k:]
		if c.n == 2 {
			seg := append([]byte{0xff, 0xfe, byte((len(c.text) + 2) >> 8), byte(len(c.text) + 2)}, c.text...)
			if _, err := c.w.Write(seg); err != nil {
				return written, err
			}
		}
	}
	if len(p) == 0 {
		return written, nil
	}
	n, err := c.w.Write(p)
	return written + n, err
}

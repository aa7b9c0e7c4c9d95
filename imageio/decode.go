package imageio

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"image"
	"image/gif"
	"image/jpeg"
	"image/png"
	"io"
	"os"

	"golang.org/x/image/bmp"
	"golang.org/x/image/tiff"
	"golang.org/x/image/webp"
)

// Errors wrapped by Decode and ReadFile; test for them with errors.Is.
var (
	// ErrTooLarge means the declared size exceeds DecodeOptions.MaxPixels.
	// It is reported from the header alone, before any pixel is decoded.
	ErrTooLarge = errors.New("image too large")
	// ErrUnsupported means the data is not in a format imageio reads, or
	// uses a feature of that format the decoder does not implement.
	ErrUnsupported = errors.New("unsupported image format")
	// ErrCorrupt means the data is truncated or malformed.
	ErrCorrupt = errors.New("corrupt image")
)

// DefaultMaxPixels is the pixel limit used when DecodeOptions.MaxPixels is 0.
// 100 megapixels of planar float32 RGBA is 1.6 GB: large photos pass, bombs
// do not.
const DefaultMaxPixels = 100_000_000

// DecodeOptions controls Decode. A nil *DecodeOptions means defaults.
type DecodeOptions struct {
	// MaxPixels bounds Width*Height as declared in the file header; 0 means
	// DefaultMaxPixels, a negative value means no limit.
	MaxPixels int
}

func (o *DecodeOptions) maxPixels() int {
	if o == nil || o.MaxPixels == 0 {
		return DefaultMaxPixels
	}
	return o.MaxPixels
}

// maxBytes bounds the input size so that a stream cannot exhaust memory
// before the header check: no format needs more than 16 bytes per pixel
// (uncompressed 16-bit RGBA is 8), plus 16 MiB of metadata. 0 means no
// bound.
func (o *DecodeOptions) maxBytes() int64 {
	p := o.maxPixels()
	if p <= 0 {
		return 0
	}
	return 16*int64(p) + 16<<20
}

// readInput reads all of r into a buffer presized by hint (the file size,
// if known, so a file is read without copies), failing with ErrTooLarge
// past limit bytes (limit 0: no bound).
func readInput(r io.Reader, hint, limit int64) ([]byte, error) {
	if limit > 0 {
		if hint > limit {
			return nil, fmt.Errorf("%w: %d bytes of input, more than %d", ErrTooLarge, hint, limit)
		}
		r = io.LimitReader(r, limit+1)
	}
	data := make([]byte, 0, max(hint, 0)+1)
	for {
		if len(data) == cap(data) {
			data = append(data, 0)[:len(data)]
		}
		n, err := r.Read(data[len(data):cap(data)])
		data = data[:len(data)+n]
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, err
		}
	}
	if limit > 0 && int64(len(data)) > limit {
		return nil, fmt.Errorf("%w: more than %d bytes of input", ErrTooLarge, limit)
	}
	return data, nil
}

// ReadFile decodes the image stored at path (see Decode). Errors name the
// file. Only regular files are read (symlinks are followed): a named pipe,
// a device or a socket is refused before any byte is read, since reading
// one may block for ever (a FIFO) or never end (/dev/zero).
func ReadFile(path string, opts *DecodeOptions) (*Image, error) {
	if st, err := os.Stat(path); err != nil {
		return nil, fmt.Errorf("imageio: %w", err) // *PathError names the file
	} else if err := checkRegular(st); err != nil {
		return nil, fmt.Errorf("imageio: %s: %w", path, err)
	}
	f, err := os.OpenFile(path, os.O_RDONLY|openFlags, 0)
	if err != nil {
		return nil, fmt.Errorf("imageio: %w", err)
	}
	defer f.Close()
	// Check again on the open file: path may have been replaced meanwhile.
	st, err := f.Stat()
	if err == nil {
		err = checkRegular(st)
	}
	if err == nil {
		var data []byte
		if data, err = readInput(f, st.Size(), opts.maxBytes()); err == nil {
			var m *Image
			if m, err = decodeBytes(data, opts); err == nil {
				return m, nil
			}
		}
	}
	return nil, fmt.Errorf("imageio: %s: %w", path, err)
}

// ErrNotRegular means a path names something other than a regular file.
var ErrNotRegular = errors.New("not a regular file")

// checkRegular refuses anything but a regular file, naming what it is.
func checkRegular(st os.FileInfo) error {
	m := st.Mode()
	kind := ""
	switch {
	case m.IsRegular():
		return nil
	case m.IsDir():
		kind = "a folder"
	case m&os.ModeNamedPipe != 0:
		kind = "a named pipe"
	case m&os.ModeSocket != 0:
		kind = "a socket"
	case m&os.ModeDevice != 0:
		kind = "a device"
	default:
		kind = "of mode " + m.Type().String()
	}
	return fmt.Errorf("%w (it is %s)", ErrNotRegular, kind)
}

// Decode reads a PNG, JPEG, WebP, BMP, TIFF or GIF (first frame) image,
// recognised by its leading bytes rather than by a file name. A GIF frame
// smaller than the logical screen is placed on it, the rest transparent, so
// the image has the size the file declares. A JPEG whose scans stop short
// (a truncated progressive file with its end marker) is ErrCorrupt, although
// image/jpeg would return the partial picture.
//
// The declared size is checked against opts.MaxPixels before pixels are
// decoded, and the input may not exceed 16 bytes per allowed pixel plus
// 16 MiB. Gray sources give Channels 1. The Alpha plane is kept whenever a
// PNG has an alpha channel (gray+alpha, RGBA or tRNS), so RGBA in gives
// RGBA out even where every pixel is opaque; for the other formats, whose
// decoders report alpha inconsistently, only when some pixel is not
// opaque. BitDepth is 16 for 16-bit PNG and TIFF, 8 otherwise. Sample
// values are exact: float32(v)/255 or float32(v)/65535.
// A JPEG's EXIF orientation is applied, so the image is upright. Colour
// profiles and gamma chunks are ignored: values are the stored ones.
//
// Errors wrap ErrTooLarge, ErrUnsupported or ErrCorrupt; Decode never
// panics, whatever the input.
func Decode(r io.Reader, opts *DecodeOptions) (*Image, error) {
	data, err := readInput(r, 0, opts.maxBytes())
	if err == nil {
		var m *Image
		if m, err = decodeBytes(data, opts); err == nil {
			return m, nil
		}
	}
	return nil, fmt.Errorf("imageio: %w", err)
}

// format is one supported container: how to read its header and pixels.
type format struct {
	name   string
	config func(io.Reader) (image.Config, error)
	decode func(io.Reader) (image.Image, error)
	// unsupported tells a decoder's "valid but not implemented" errors apart
	// from corruption.
	unsupported func(error) bool
}

var (
	pngSig = []byte("\x89PNG\r\n\x1a\n")

	formats = map[string]*format{
		"png": {"png", png.DecodeConfig, png.Decode, func(err error) bool {
			var u png.UnsupportedError
			return errors.As(err, &u)
		}},
		"jpeg": {"jpeg", jpeg.DecodeConfig, jpeg.Decode, func(err error) bool {
			var u jpeg.UnsupportedError
			return errors.As(err, &u)
		}},
		"webp": {"webp", webp.DecodeConfig, webp.Decode, func(error) bool { return false }},
		"bmp": {"bmp", bmp.DecodeConfig, bmp.Decode, func(err error) bool {
			return errors.Is(err, bmp.ErrUnsupported)
		}},
		"tiff": {"tiff", tiff.DecodeConfig, tiff.Decode, func(err error) bool {
			var u tiff.UnsupportedError
			return errors.As(err, &u)
		}},
		"gif": {"gif", gif.DecodeConfig, gif.Decode, func(error) bool { return false }},
	}
)

// sniff names the format of data from its magic bytes, or returns "".
func sniff(data []byte) string {
	switch {
	case bytes.HasPrefix(data, pngSig):
		return "png"
	case bytes.HasPrefix(data, []byte{0xff, 0xd8}):
		return "jpeg"
	case len(data) >= 12 && string(data[:4]) == "RIFF" && string(data[8:12]) == "WEBP":
		return "webp"
	case bytes.HasPrefix(data, []byte("BM")):
		return "bmp"
	case bytes.HasPrefix(data, []byte("II*\x00")), bytes.HasPrefix(data, []byte("MM\x00*")):
		return "tiff"
	case bytes.HasPrefix(data, []byte("GIF87a")), bytes.HasPrefix(data, []byte("GIF89a")):
		return "gif"
	}
	return ""
}

func decodeBytes(data []byte, opts *DecodeOptions) (m *Image, err error) {
	if len(data) == 0 {
		return nil, fmt.Errorf("%w: empty input", ErrCorrupt)
	}
	name := sniff(data)
	f := formats[name]
	if f == nil {
		return nil, fmt.Errorf("%w: unknown signature % x", ErrUnsupported, data[:min(len(data), 8)])
	}
	// The standard decoders are meant not to panic, but a bad file must
	// never take the process down: turn any panic into ErrCorrupt.
	defer func() {
		if r := recover(); r != nil {
			m, err = nil, fmt.Errorf("%w: %s decoder panicked: %v", ErrCorrupt, name, r)
		}
	}()
	cfg, err := f.config(bytes.NewReader(data))
	if err != nil {
		return nil, f.wrap(err)
	}
	if cfg.Width <= 0 || cfg.Height <= 0 {
		return nil, fmt.Errorf("%w: %s declares %dx%d pixels", ErrCorrupt, name, cfg.Width, cfg.Height)
	}
	if limit := opts.maxPixels(); limit > 0 && (cfg.Width > limit/cfg.Height) {
		return nil, fmt.Errorf("%w: %s declares %dx%d pixels, limit is %d", ErrTooLarge, name, cfg.Width, cfg.Height, limit)
	}
	img, err := f.decode(bytes.NewReader(data))
	if err != nil {
		return nil, f.wrap(err)
	}
	// A GIF's first frame may be smaller than its logical screen; anything
	// larger than the header declared would dodge the size check.
	b := img.Bounds()
	if b.Dx() > cfg.Width || b.Dy() > cfg.Height || b.Empty() {
		return nil, fmt.Errorf("%w: %s header says %dx%d, pixels are %dx%d", ErrCorrupt, name, cfg.Width, cfg.Height, b.Dx(), b.Dy())
	}
	if name == "jpeg" {
		if err := jpegScansComplete(data); err != nil {
			return nil, err
		}
	}
	m = FromStdImage(img)
	if name == "gif" && (b.Min.X != 0 || b.Min.Y != 0 || b.Dx() != cfg.Width || b.Dy() != cfg.Height) {
		if b.Min.X < 0 || b.Min.Y < 0 || b.Max.X > cfg.Width || b.Max.Y > cfg.Height {
			return nil, fmt.Errorf("%w: gif frame %v outside the %dx%d screen", ErrCorrupt, b, cfg.Width, cfg.Height)
		}
		m = onCanvas(m, b.Min.X, b.Min.Y, cfg.Width, cfg.Height)
	}
	switch name {
	case "png":
		// Go decodes PNG gray with tRNS and gray+alpha as NRGBA: keep them gray.
		if ct := pngColorType(data); (ct == 0 || ct == 4) && m.Channels == 3 {
			m.Pix = m.Pix[:m.Width*m.Height]
			m.Channels = 1
		}
	case "jpeg":
		m = orient(m, jpegOrientation(data))
	default:
		// Lossless WebP always decodes with alpha, and so does a 32-bit BMP
		// whose alpha byte is unused; drop alpha when nothing is
		// transparent, so RGB in gives RGB out.
		if m.Alpha != nil && allOne(m.Alpha) {
			m.Alpha = nil
		}
	}
	return m, nil
}

func (f *format) wrap(err error) error {
	if f.unsupported(err) {
		return fmt.Errorf("%w: %w", ErrUnsupported, err)
	}
	return fmt.Errorf("%w: %w", ErrCorrupt, err)
}

// pngColorType returns the colour type byte of the IHDR chunk (0 gray,
// 2 RGB, 3 paletted, 4 gray+alpha, 6 RGBA), or -1.
func pngColorType(data []byte) int {
	// signature(8) length(4) "IHDR"(4) width(4) height(4) depth(1) type(1)
	if len(data) < 26 || string(data[12:16]) != "IHDR" {
		return -1
	}
	return int(data[25])
}

func allOne(p []float32) bool {
	for _, v := range p {
		if v != 1 {
			return false
		}
	}
	return true
}

// be16 reads a big-endian uint16 (a small helper for header parsing).
func be16(b []byte) int { return int(binary.BigEndian.Uint16(b)) }

// onCanvas places m at (x0, y0) on a transparent w x h canvas (how viewers
// show a GIF whose first frame does not cover its logical screen).
func onCanvas(m *Image, x0, y0, w, h int) *Image {
	c := &Image{Width: w, Height: h, Channels: m.Channels, BitDepth: m.BitDepth,
		Pix: make([]float32, w*h*m.Channels), Alpha: make([]float32, w*h)}
	for y := range m.Height {
		dst := (y0+y)*w + x0
		for p := range m.Channels {
			copy(c.Plane(p)[dst:dst+m.Width], m.Plane(p)[y*m.Width:(y+1)*m.Width])
		}
		a := c.Alpha[dst : dst+m.Width]
		if m.Alpha != nil {
			copy(a, m.Alpha[y*m.Width:(y+1)*m.Width])
		} else {
			for i := range a {
				a[i] = 1
			}
		}
	}
	return c
}

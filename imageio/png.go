package imageio

import (
	"compress/zlib"
	"encoding/binary"
	"hash/crc32"
	"io"
)

// encodePNG writes m as a PNG of the given bit depth (8 or 16) and zlib
// level (1..9), with a tEXt "Software" chunk when software is set. It exists
// because image/png cannot write gray+alpha (colour type 4): gray+alpha
// would come back as RGBA. Colour type follows the planes: gray (0),
// gray+alpha (4), RGB (2), RGBA (6). Each row gets the filter with the
// smallest sum of absolute signed residuals, as libpng and image/png do.
func encodePNG(w io.Writer, m *Image, depth, level int, software string) error {
	ch := m.Channels
	if m.Alpha != nil {
		ch++
	}
	colorType := [5]byte{0, 0, 4, 2, 6}[ch]
	bps := depth / 8
	bpp := ch * bps
	stride := m.Width * bpp

	if _, err := w.Write(pngSig); err != nil {
		return err
	}
	var ihdr [13]byte
	binary.BigEndian.PutUint32(ihdr[0:], uint32(m.Width))
	binary.BigEndian.PutUint32(ihdr[4:], uint32(m.Height))
	ihdr[8], ihdr[9] = byte(depth), colorType // compression, filter, interlace: 0
	if err := writeChunk(w, "IHDR", ihdr[:]); err != nil {
		return err
	}
	if software != "" {
		if err := writeChunk(w, "tEXt", []byte("Software\x00"+software)); err != nil {
			return err
		}
	}

	iw := &idatWriter{w: w, buf: make([]byte, 0, 1<<17)}
	zw, err := zlib.NewWriterLevel(iw, level)
	if err != nil {
		return err
	}
	planes := make([][]float32, 0, 4)
	for c := range m.Channels {
		planes = append(planes, m.Plane(c))
	}
	if m.Alpha != nil {
		planes = append(planes, m.Alpha)
	}
	prev := make([]byte, stride)
	cur := make([]byte, stride)
	var cand [5][]byte
	for f := range cand {
		cand[f] = make([]byte, 1+stride)
		cand[f][0] = byte(f)
	}
	for y := range m.Height {
		row := y * m.Width
		for x := range m.Width {
			p := cur[x*bpp:]
			for c, pl := range planes {
				if bps == 1 {
					p[c] = Quantize8(pl[row+x])
				} else {
					binary.BigEndian.PutUint16(p[2*c:], Quantize16(pl[row+x]))
				}
			}
		}
		if _, err := zw.Write(filterRow(&cand, cur, prev, bpp)); err != nil {
			return err
		}
		prev, cur = cur, prev
	}
	if err := zw.Close(); err != nil {
		return err
	}
	if err := iw.flush(); err != nil {
		return err
	}
	return writeChunk(w, "IEND", nil)
}

// filterRow fills the five filtered versions of cur (none, sub, up, average,
// Paeth) and returns the one with the smallest sum of |int8(residual)|.
func filterRow(cand *[5][]byte, cur, prev []byte, bpp int) []byte {
	none, sub, up, avg, paeth := cand[0][1:], cand[1][1:], cand[2][1:], cand[3][1:], cand[4][1:]
	copy(none, cur)
	for i, c := range cur {
		var a, b, d int // left, up, upper-left
		if i >= bpp {
			a, d = int(cur[i-bpp]), int(prev[i-bpp])
		}
		b = int(prev[i])
		sub[i] = c - byte(a)
		up[i] = c - byte(b)
		avg[i] = c - byte((a+b)/2)
		// Paeth predictor: whichever of a, b, d is closest to a+b-d.
		pa, pb, pc := abs(b-d), abs(a-d), abs(a+b-2*d)
		pred := d
		if pa <= pb && pa <= pc {
			pred = a
		} else if pb <= pc {
			pred = b
		}
		paeth[i] = c - byte(pred)
	}
	best, bestSum := 0, -1
	for f := range cand {
		s := 0
		for _, v := range cand[f][1:] {
			s += abs(int(int8(v)))
		}
		if bestSum < 0 || s < bestSum {
			best, bestSum = f, s
		}
	}
	return cand[best]
}

func abs(x int) int {
	if x < 0 {
		return -x
	}
	return x
}

func writeChunk(w io.Writer, typ string, data []byte) error {
	var hdr [8]byte
	binary.BigEndian.PutUint32(hdr[:4], uint32(len(data)))
	copy(hdr[4:], typ)
	crc := crc32.NewIEEE()
	crc.Write(hdr[4:])
	crc.Write(data)
	var tail [4]byte
	binary.BigEndian.PutUint32(tail[:], crc.Sum32())
	for _, b := range [][]byte{hdr[:], data, tail[:]} {
		if _, err := w.Write(b); err != nil {
			return err
		}
	}
	return nil
}

// idatWriter cuts the zlib stream into IDAT chunks of at most cap(buf) bytes.
type idatWriter struct {
	w   io.Writer
	buf []byte
}

func (iw *idatWriter) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 {
		k := min(len(p), cap(iw.buf)-len(iw.buf))
		iw.buf = append(iw.buf, p[:k]...)
		p = p[k:]
		if len(iw.buf) == cap(iw.buf) {
			if err := iw.flush(); err != nil {
				return 0, err
			}
		}
	}
	return n, nil
}

func (iw *idatWriter) flush() error {
	if len(iw.buf) == 0 {
		return nil
	}
	err := writeChunk(iw.w, "IDAT", iw.buf)
	iw.buf = iw.buf[:0]
	return err
}

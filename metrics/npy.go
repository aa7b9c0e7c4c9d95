package metrics

import (
	"archive/zip"
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"math"
	"regexp"
	"strconv"
	"strings"
)

// array is a float64 n-d array read from a .npy file, in row-major (C)
// order whatever the file's order.
type array struct {
	shape []int
	data  []float64
}

// readNPZ parses a NumPy .npz archive (a zip of .npy files) of float64
// arrays, keyed by array name (the file name without ".npy").
func readNPZ(b []byte) (map[string]array, error) {
	zr, err := zip.NewReader(bytes.NewReader(b), int64(len(b)))
	if err != nil {
		return nil, fmt.Errorf("npz: %w", err)
	}
	out := map[string]array{}
	for _, f := range zr.File {
		rc, err := f.Open()
		if err != nil {
			return nil, fmt.Errorf("npz %s: %w", f.Name, err)
		}
		data, err := io.ReadAll(rc)
		rc.Close()
		if err != nil {
			return nil, fmt.Errorf("npz %s: %w", f.Name, err)
		}
		a, err := readNPY(data)
		if err != nil {
			return nil, fmt.Errorf("npz %s: %w", f.Name, err)
		}
		out[strings.TrimSuffix(f.Name, ".npy")] = a
	}
	return out, nil
}

var (
	npyDescr   = regexp.MustCompile(`'descr'\s*:\s*'([^']*)'`)
	npyFortran = regexp.MustCompile(`'fortran_order'\s*:\s*(True|False)`)
	npyShape   = regexp.MustCompile(`'shape'\s*:\s*\(([^)]*)\)`)
)

// readNPY parses one .npy file holding little-endian float64 ('<f8') data.
func readNPY(b []byte) (array, error) {
	const magic = "\x93NUMPY"
	if len(b) < 10 || string(b[:6]) != magic {
		return array{}, fmt.Errorf("not a .npy file")
	}
	var hlen, off int
	switch b[6] {
	case 1:
		hlen, off = int(binary.LittleEndian.Uint16(b[8:10])), 10
	case 2, 3:
		if len(b) < 12 {
			return array{}, fmt.Errorf("truncated .npy header")
		}
		hlen, off = int(binary.LittleEndian.Uint32(b[8:12])), 12
	default:
		return array{}, fmt.Errorf(".npy version %d not supported", b[6])
	}
	if off+hlen > len(b) {
		return array{}, fmt.Errorf("truncated .npy header")
	}
	header := string(b[off : off+hlen])
	body := b[off+hlen:]
	d := npyDescr.FindStringSubmatch(header)
	fo := npyFortran.FindStringSubmatch(header)
	sh := npyShape.FindStringSubmatch(header)
	if d == nil || fo == nil || sh == nil {
		return array{}, fmt.Errorf("bad .npy header %q", header)
	}
	if d[1] != "<f8" {
		return array{}, fmt.Errorf("dtype %s not supported (want <f8)", d[1])
	}
	var shape []int
	n := 1
	for _, s := range strings.Split(sh[1], ",") {
		if s = strings.TrimSpace(s); s == "" {
			continue
		}
		v, err := strconv.Atoi(s)
		if err != nil || v < 0 {
			return array{}, fmt.Errorf("bad .npy shape %q", sh[1])
		}
		shape = append(shape, v)
		n *= v
	}
	if len(body) != 8*n {
		return array{}, fmt.Errorf(".npy has %d data bytes for shape %v", len(body), shape)
	}
	raw := make([]float64, n)
	for i := range raw {
		raw[i] = math.Float64frombits(binary.LittleEndian.Uint64(body[8*i:]))
	}
	if fo[1] == "False" || len(shape) < 2 {
		return array{shape, raw}, nil
	}
	// Fortran order: the first index varies fastest. Reorder to C order.
	data := make([]float64, n)
	idx := make([]int, len(shape))
	for i := range raw {
		c := 0
		for k := range shape {
			c = c*shape[k] + idx[k]
		}
		data[c] = raw[i]
		for k := range idx {
			if idx[k]++; idx[k] < shape[k] {
				break
			}
			idx[k] = 0
		}
	}
	return array{shape, data}, nil
}

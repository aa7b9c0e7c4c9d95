// Package safetensors reads and writes the safetensors checkpoint format of
// Hugging Face, the format every diffusers and PEFT checkpoint ships in.
//
// A file is an 8-byte little-endian header length n, n bytes of JSON
//
//	{"__metadata__": {"k": "v"}, "name": {"dtype": "BF16", "shape": [64, 16, 3, 3], "data_offsets": [begin, end]}, ...}
//
// padded with spaces, then the raw little-endian tensor data; offsets are
// relative to the start of the data. tsdsr computes in float32, so tensors
// of dtype F32, F16 and BF16 are read (converted to float32) and written.
//
// The header comes from outside the program, so Parse checks all of it
// before any tensor is read: lengths, JSON syntax, duplicate names, dtypes,
// shapes, and that the offsets tile the data exactly (as the reference
// implementation requires). A malformed file gives an error naming the
// offending tensor, never a panic.
package safetensors

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"slices"
	"unicode/utf8"

	"tsdsr/internal/atomicfile"
	"tsdsr/internal/parallel"
	"tsdsr/tensor"
)

// DType is a tensor element type as spelled in the header.
type DType string

// The element types tsdsr reads and writes.
const (
	F32  DType = "F32"
	F16  DType = "F16"
	BF16 DType = "BF16"
)

// Size is the number of bytes of one element, or 0 for an unsupported dtype.
func (d DType) Size() int {
	switch d {
	case F32:
		return 4
	case F16, BF16:
		return 2
	}
	return 0
}

// MaxHeader bounds the JSON header (100 MB, the limit of the reference
// implementation), so a corrupt length cannot make Parse allocate gigabytes.
const MaxHeader = 100 << 20

// Info describes one stored tensor.
type Info struct {
	DType DType
	Shape []int
	// Begin and End are byte offsets into the data section.
	Begin, End int
}

// File is a parsed safetensors file. Its tensors are converted to float32
// on demand by Tensor or ReadInto. A File is safe for concurrent reads.
type File struct {
	// Metadata is the optional "__metadata__" string map (nil when absent).
	Metadata map[string]string

	names   []string // sorted
	infos   map[string]Info
	dataLen int
	data    []byte   // the data section, aliasing the parsed bytes (Parse, Load)
	file    *os.File // or the open file it is read from (Open)
	dataOff int64    // offset of the data section in file
}

// Load reads the whole safetensors file at path into memory and parses it.
// For checkpoints of gigabytes, Open avoids holding the raw file in memory.
func Load(path string) (*File, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	f, err := Parse(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return f, nil
}

// Parse parses a whole safetensors file held in b. The File keeps b (no
// copy), so go:embed'ed weights cost no extra memory; b must not be modified
// afterwards.
func Parse(b []byte) (*File, error) {
	if len(b) < 8 {
		return nil, fmt.Errorf("safetensors: file of %d bytes is shorter than the 8-byte header length", len(b))
	}
	n := binary.LittleEndian.Uint64(b)
	if err := checkHeaderLen(n, int64(len(b))); err != nil {
		return nil, err
	}
	f := &File{infos: map[string]Info{}, data: b[8+n:], dataLen: len(b) - 8 - int(n)}
	if err := f.parseHeader(b[8 : 8+n]); err != nil {
		return nil, err
	}
	return f, nil
}

// Open parses the header of the safetensors file at path and keeps the file
// open: tensors are read from disk when asked for, so loading a checkpoint
// costs only the float32 copies. Close the File when done.
func Open(path string) (_ *File, err error) {
	fh, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			fh.Close()
			err = fmt.Errorf("%s: %w", path, err)
		}
	}()
	st, err := fh.Stat()
	if err != nil {
		return nil, err
	}
	size := st.Size()
	var lenBuf [8]byte
	if size < 8 {
		return nil, fmt.Errorf("safetensors: file of %d bytes is shorter than the 8-byte header length", size)
	}
	if _, err := fh.ReadAt(lenBuf[:], 0); err != nil {
		return nil, err
	}
	n := binary.LittleEndian.Uint64(lenBuf[:])
	if err := checkHeaderLen(n, size); err != nil {
		return nil, err
	}
	h := make([]byte, n)
	if _, err := fh.ReadAt(h, 8); err != nil {
		return nil, err
	}
	f := &File{infos: map[string]Info{}, file: fh, dataOff: 8 + int64(n), dataLen: int(size - 8 - int64(n))}
	if err := f.parseHeader(h); err != nil {
		return nil, err
	}
	return f, nil
}

// Close releases the file of a File made by Open; it does nothing for one
// made by Load or Parse.
func (f *File) Close() error {
	if f.file == nil {
		return nil
	}
	return f.file.Close()
}

// checkHeaderLen validates the header length n of a file of total bytes.
func checkHeaderLen(n uint64, total int64) error {
	if n > MaxHeader {
		return fmt.Errorf("safetensors: header length %d exceeds the %d-byte limit", n, MaxHeader)
	}
	if n > uint64(total-8) {
		return fmt.Errorf("safetensors: header length %d but only %d bytes follow (truncated file?)", n, total-8)
	}
	return nil
}

// tensorEntry is one tensor's header record; pointers detect absent fields.
type tensorEntry struct {
	DType       *string  `json:"dtype"`
	Shape       *[]int64 `json:"shape"`
	DataOffsets *[]int64 `json:"data_offsets"`
}

func (f *File) parseHeader(h []byte) error {
	if !utf8.Valid(h) {
		return errors.New("safetensors: header is not valid UTF-8")
	}
	dec := json.NewDecoder(bytes.NewReader(h))
	dec.UseNumber()
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return errors.New("safetensors: header is not a JSON object")
	}
	seen := map[string]bool{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return fmt.Errorf("safetensors: malformed header JSON: %v", err)
		}
		name, ok := tok.(string)
		if !ok {
			return errors.New("safetensors: malformed header JSON: key is not a string")
		}
		if seen[name] {
			return fmt.Errorf("safetensors: duplicate entry %q in header", name)
		}
		seen[name] = true
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return fmt.Errorf("safetensors: malformed header JSON at %q: %v", name, err)
		}
		if name == "__metadata__" {
			if err := strictUnmarshal(raw, &f.Metadata); err != nil {
				return fmt.Errorf("safetensors: __metadata__ is not a map of strings: %v", err)
			}
			continue
		}
		info, err := parseEntry(raw, f.dataLen)
		if err != nil {
			return fmt.Errorf("safetensors: tensor %q: %v", name, err)
		}
		f.infos[name] = info
		f.names = append(f.names, name)
	}
	if tok, err := dec.Token(); err != nil || tok != json.Delim('}') {
		return errors.New("safetensors: malformed header JSON: unterminated object")
	}
	if rest := h[dec.InputOffset():]; len(bytes.TrimRight(rest, " \t\r\n\x00")) != 0 {
		return errors.New("safetensors: trailing bytes after the header JSON")
	}
	slices.Sort(f.names)
	return f.checkLayout()
}

// strictUnmarshal decodes one JSON value, rejecting unknown fields.
func strictUnmarshal(raw []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	return dec.Decode(v)
}

// parseEntry validates one tensor record against a data section of dataLen bytes.
func parseEntry(raw []byte, dataLen int) (Info, error) {
	var e tensorEntry
	if err := strictUnmarshal(raw, &e); err != nil {
		return Info{}, fmt.Errorf("malformed entry: %v", err)
	}
	if e.DType == nil || e.Shape == nil || e.DataOffsets == nil {
		return Info{}, errors.New("entry needs dtype, shape and data_offsets")
	}
	info := Info{DType: DType(*e.DType)}
	size := info.DType.Size()
	if size == 0 {
		return Info{}, fmt.Errorf("unsupported dtype %q (want F32, F16 or BF16)", *e.DType)
	}
	// Any tensor larger than the data is rejected below, so the element
	// count saturates at limit instead of overflowing.
	numel, limit := int64(1), int64(dataLen)+1
	for _, d := range *e.Shape {
		if d < 0 {
			return Info{}, fmt.Errorf("negative dimension in shape %v", *e.Shape)
		}
		if d != 0 && numel > limit/d {
			numel = limit
		} else {
			numel = min(numel*d, limit)
		}
		info.Shape = append(info.Shape, int(d))
	}
	if info.Shape == nil {
		info.Shape = []int{}
	}
	off := *e.DataOffsets
	if len(off) != 2 {
		return Info{}, fmt.Errorf("data_offsets %v: want [begin, end]", off)
	}
	if off[0] < 0 || off[1] < off[0] || off[1] > int64(dataLen) {
		return Info{}, fmt.Errorf("data_offsets %v outside the %d-byte data section", off, dataLen)
	}
	if want := numel * int64(size); off[1]-off[0] != want {
		return Info{}, fmt.Errorf("data_offsets %v hold %d bytes, but %s%v needs %d", off, off[1]-off[0], info.DType, info.Shape, want)
	}
	info.Begin, info.End = int(off[0]), int(off[1])
	return info, nil
}

// checkLayout requires the tensors to tile the data section exactly: sorted
// by offset, each starts where the previous ended and the last ends at the
// end of the file. This rejects overlaps, holes and trailing garbage.
func (f *File) checkLayout() error {
	byOff := slices.Clone(f.names)
	slices.SortFunc(byOff, func(a, b string) int {
		ia, ib := f.infos[a], f.infos[b]
		if ia.Begin != ib.Begin {
			return ia.Begin - ib.Begin
		}
		return ia.End - ib.End
	})
	pos := 0
	prev := ""
	for _, name := range byOff {
		in := f.infos[name]
		if in.Begin < pos {
			return fmt.Errorf("safetensors: tensor %q (bytes %d-%d) overlaps %q", name, in.Begin, in.End, prev)
		}
		if in.Begin > pos {
			return fmt.Errorf("safetensors: %d unused bytes before tensor %q", in.Begin-pos, name)
		}
		pos, prev = in.End, name
	}
	if pos != f.dataLen {
		return fmt.Errorf("safetensors: data section has %d bytes, tensors cover %d", f.dataLen, pos)
	}
	return nil
}

// Names returns the tensor names in sorted order.
func (f *File) Names() []string { return slices.Clone(f.names) }

// Info returns the header record of the named tensor.
func (f *File) Info(name string) (Info, bool) {
	in, ok := f.infos[name]
	return in, ok
}

// Tensor returns the named tensor converted to float32 (a fresh copy).
func (f *File) Tensor(name string) (*tensor.Tensor, error) {
	in, ok := f.infos[name]
	if !ok {
		return nil, fmt.Errorf("safetensors: no tensor %q", name)
	}
	t := tensor.New(in.Shape...)
	if err := f.read(name, in, t.Data); err != nil {
		return nil, err
	}
	return t, nil
}

// ReadInto converts the named tensor into dst, whose length must be the
// tensor's number of elements; it saves an allocation when loading weights
// into existing parameters.
func (f *File) ReadInto(name string, dst []float32) error {
	in, ok := f.infos[name]
	if !ok {
		return fmt.Errorf("safetensors: no tensor %q", name)
	}
	if n := (in.End - in.Begin) / in.DType.Size(); n != len(dst) {
		return fmt.Errorf("safetensors: tensor %q has %d elements, destination %d", name, n, len(dst))
	}
	return f.read(name, in, dst)
}

// read converts the tensor described by in into dst, from memory or, for an
// opened file, in chunks read from disk.
func (f *File) read(name string, in Info, dst []float32) error {
	if f.file == nil {
		decode(dst, in.DType, f.data[in.Begin:in.End])
		return nil
	}
	size := in.DType.Size()
	const chunk = 1 << 20 // elements per read
	buf := make([]byte, min(len(dst), chunk)*size)
	for i := 0; i < len(dst); i += chunk {
		k := min(chunk, len(dst)-i)
		if _, err := f.file.ReadAt(buf[:k*size], f.dataOff+int64(in.Begin+i*size)); err != nil {
			return fmt.Errorf("safetensors: reading tensor %q: %w", name, err)
		}
		decode(dst[i:i+k], in.DType, buf[:k*size])
	}
	return nil
}

// decode converts little-endian elements of dtype d in src to dst, in
// parallel chunks (checkpoints reach billions of elements).
func decode(dst []float32, d DType, src []byte) {
	parallel.For(len(dst), 1<<16, func(lo, hi int) {
		out, in := dst[lo:hi], src[lo*d.Size():hi*d.Size()]
		switch d {
		case F32:
			for i := range out {
				out[i] = math.Float32frombits(binary.LittleEndian.Uint32(in[4*i:]))
			}
		case BF16:
			in = in[:2*len(out)] // lets the compiler drop bounds checks
			for i := range out {
				out[i] = tensor.BF16ToF32(uint16(in[2*i]) | uint16(in[2*i+1])<<8)
			}
		case F16:
			in = in[:2*len(out)]
			for i := range out {
				out[i] = tensor.F16ToF32(uint16(in[2*i]) | uint16(in[2*i+1])<<8)
			}
		}
	})
}

// encode converts src to little-endian elements of dtype d in dst
// (len(dst) == len(src)*d.Size()). Narrowing rounds to nearest even.
func encode(dst []byte, d DType, src []float32) {
	switch d {
	case F32:
		for i, v := range src {
			binary.LittleEndian.PutUint32(dst[4*i:], math.Float32bits(v))
		}
	case BF16:
		for i, v := range src {
			binary.LittleEndian.PutUint16(dst[2*i:], tensor.F32ToBF16(v))
		}
	case F16:
		for i, v := range src {
			binary.LittleEndian.PutUint16(dst[2*i:], tensor.F32ToF16(v))
		}
	}
}

// Write writes tensors in safetensors format to w, converted to dtype
// (F32, F16 or BF16), with the optional metadata. Tensors are stored in
// sorted name order so the same inputs give the same bytes. The data is
// streamed: memory use does not grow with the checkpoint.
func Write(w io.Writer, tensors map[string]*tensor.Tensor, metadata map[string]string, dtype DType) error {
	size := dtype.Size()
	if size == 0 {
		return fmt.Errorf("safetensors: cannot write dtype %q (want F32, F16 or BF16)", dtype)
	}
	names := make([]string, 0, len(tensors))
	for name, t := range tensors {
		if name == "__metadata__" || name == "" {
			return fmt.Errorf("safetensors: invalid tensor name %q", name)
		}
		if t == nil || len(t.Data) != tensor.Numel(t.Shape) {
			return fmt.Errorf("safetensors: tensor %q is nil or inconsistent with its shape", name)
		}
		names = append(names, name)
	}
	slices.Sort(names)

	var h bytes.Buffer
	h.WriteByte('{')
	if len(metadata) > 0 {
		m, err := json.Marshal(metadata) // encoding/json sorts map keys
		if err != nil {
			return err
		}
		h.WriteString(`"__metadata__":`)
		h.Write(m)
	}
	pos := 0
	for i, name := range names {
		t := tensors[name]
		if i > 0 || len(metadata) > 0 {
			h.WriteByte(',')
		}
		key, _ := json.Marshal(name)
		shape, _ := json.Marshal(t.Shape)
		if len(t.Shape) == 0 {
			shape = []byte("[]")
		}
		end := pos + len(t.Data)*size
		fmt.Fprintf(&h, `%s:{"dtype":%q,"shape":%s,"data_offsets":[%d,%d]}`, key, dtype, shape, pos, end)
		pos = end
	}
	h.WriteByte('}')
	// Pad with spaces so the data starts 8-byte aligned, as the reference
	// writer does (lets readers map F32 data in place).
	for h.Len()%8 != 0 {
		h.WriteByte(' ')
	}
	var n [8]byte
	binary.LittleEndian.PutUint64(n[:], uint64(h.Len()))
	if _, err := w.Write(n[:]); err != nil {
		return err
	}
	if _, err := w.Write(h.Bytes()); err != nil {
		return err
	}
	const chunk = 1 << 16 // elements converted per write
	buf := make([]byte, chunk*size)
	for _, name := range names {
		d := tensors[name].Data
		for len(d) > 0 {
			k := min(len(d), chunk)
			encode(buf, dtype, d[:k])
			if _, err := w.Write(buf[:k*size]); err != nil {
				return err
			}
			d = d[k:]
		}
	}
	return nil
}

// Save writes tensors to path (see Write) atomically: the file is written
// to a temporary file in the same directory, synced, and renamed over path,
// so a crash during a checkpoint never leaves a half-written file behind.
func Save(path string, tensors map[string]*tensor.Tensor, metadata map[string]string, dtype DType) error {
	return atomicfile.Write(path, func(w io.Writer) error { return Write(w, tensors, metadata, dtype) })
}

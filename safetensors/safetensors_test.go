package safetensors

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"tsdsr/tensor"
)

// build assembles a file from a raw header and data section.
func build(header string, data []byte) []byte {
	b := binary.LittleEndian.AppendUint64(nil, uint64(len(header)))
	b = append(b, header...)
	return append(b, data...)
}

func encodeFile(t testing.TB, ts map[string]*tensor.Tensor, meta map[string]string, d DType) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := Write(&buf, ts, meta, d); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestRoundTripF32BitExact(t *testing.T) {
	special := []float32{0, float32(math.Copysign(0, -1)), 1, -1.5, math.MaxFloat32, math.SmallestNonzeroFloat32,
		float32(math.Inf(1)), float32(math.Inf(-1)), math.Float32frombits(0x7fc00001), math.Float32frombits(0xffa00000)}
	ts := map[string]*tensor.Tensor{
		"special":          tensor.FromData(special, 2, 5),
		"scalar":           tensor.Scalar(3.25),
		"empty":            tensor.New(0, 3),
		"down.0.conv.bias": tensor.FromData([]float32{1e-30, -7, 0.1}, 3),
	}
	meta := map[string]string{"format": "pt", "note": "quotes \" and \\ survive"}
	path := filepath.Join(t.TempDir(), "ck.safetensors")
	if err := Save(path, ts, meta, F32); err != nil {
		t.Fatal(err)
	}
	f, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(f.Names(), ","); got != "down.0.conv.bias,empty,scalar,special" {
		t.Errorf("names %s", got)
	}
	for k, v := range meta {
		if f.Metadata[k] != v {
			t.Errorf("metadata %q = %q, want %q", k, f.Metadata[k], v)
		}
	}
	for name, want := range ts {
		got, err := f.Tensor(name)
		if err != nil {
			t.Fatal(err)
		}
		if !tensor.SameShape(got.Shape, want.Shape) {
			t.Fatalf("%s: shape %v, want %v", name, got.Shape, want.Shape)
		}
		for i := range want.Data {
			if math.Float32bits(got.Data[i]) != math.Float32bits(want.Data[i]) {
				t.Errorf("%s[%d]: bits %#x, want %#x", name, i, math.Float32bits(got.Data[i]), math.Float32bits(want.Data[i]))
			}
		}
	}
	// The header is padded so the data starts 8-byte aligned, and the
	// atomic write leaves no temporary file behind.
	raw, _ := os.ReadFile(path)
	if n := binary.LittleEndian.Uint64(raw); (8+n)%8 != 0 {
		t.Errorf("data starts at %d, not 8-byte aligned", 8+n)
	}
	if ents, _ := os.ReadDir(filepath.Dir(path)); len(ents) != 1 {
		t.Errorf("%d files in the directory after Save, want 1", len(ents))
	}
	// Same inputs, same bytes.
	if again := encodeFile(t, ts, meta, F32); !bytes.Equal(again, raw) {
		t.Error("writing the same tensors twice gave different bytes")
	}
}

// TestRoundTripHalfBitExact stores every finite BF16 and F16 value (as
// float32) and checks that the file holds exactly the original 16-bit
// patterns and reads back to the same float32 values.
func TestRoundTripHalfBitExact(t *testing.T) {
	for _, tc := range []struct {
		d        DType
		toF32    func(uint16) float32
		expMask  uint16
		fracMask uint16
	}{
		{BF16, tensor.BF16ToF32, 0x7f80, 0x007f},
		{F16, tensor.F16ToF32, 0x7c00, 0x03ff},
	} {
		var bits []uint16
		var vals []float32
		for b := range 1 << 16 {
			if u := uint16(b); u&tc.expMask == tc.expMask && u&tc.fracMask != 0 {
				continue // NaN payloads need not survive
			}
			bits = append(bits, uint16(b))
			vals = append(vals, tc.toF32(uint16(b)))
		}
		raw := encodeFile(t, map[string]*tensor.Tensor{"w": tensor.FromData(vals, len(vals))}, nil, tc.d)
		f, err := Parse(raw)
		if err != nil {
			t.Fatal(err)
		}
		in, _ := f.Info("w")
		if in.DType != tc.d {
			t.Fatalf("dtype %s, want %s", in.DType, tc.d)
		}
		for i, want := range bits {
			if got := binary.LittleEndian.Uint16(f.data[2*i:]); got != want {
				t.Fatalf("%s: stored %#04x, want %#04x", tc.d, got, want)
			}
		}
		got, err := f.Tensor("w")
		if err != nil {
			t.Fatal(err)
		}
		for i := range vals {
			if math.Float32bits(got.Data[i]) != math.Float32bits(vals[i]) {
				t.Fatalf("%s elem %d: %v, want %v", tc.d, i, got.Data[i], vals[i])
			}
		}
	}
}

func TestMalformed(t *testing.T) {
	good := encodeFile(t, map[string]*tensor.Tensor{"a": tensor.New(2, 2), "b": tensor.New(3)}, nil, F32)
	d16 := make([]byte, 16)
	cases := []struct {
		name string
		file []byte
		want string
	}{
		{"empty", nil, "shorter than"},
		{"truncated data", good[:len(good)-1], "outside"},
		{"truncated header", good[:20], "truncated"},
		{"huge header length", binary.LittleEndian.AppendUint64(nil, 1<<62), "limit"},
		{"not json", build(`{"a":`, nil), "malformed"},
		{"not an object", build(`[1,2]`, nil), "not a JSON object"},
		{"size lie", build(`{"a":{"dtype":"F32","shape":[2,2],"data_offsets":[0,12]}}`, d16[:12]), `"a"`},
		{"end past data", build(`{"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}`, d16[:8]), "outside"},
		{"overlap", build(`{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}`, d16[:12]), "overlaps"},
		{"hole", build(`{"a":{"dtype":"F32","shape":[2],"data_offsets":[8,16]}}`, d16), "unused bytes"},
		{"trailing data", build(`{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}`, d16), "tensors cover 8"},
		{"unknown dtype", build(`{"a":{"dtype":"F64","shape":[2],"data_offsets":[0,16]}}`, d16), `unsupported dtype "F64"`},
		{"bogus dtype", build(`{"a":{"dtype":"Q4_K","shape":[],"data_offsets":[0,0]}}`, nil), "unsupported dtype"},
		{"duplicate", build(`{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}`, d16[:8]), "duplicate"},
		{"missing field", build(`{"a":{"dtype":"F32","shape":[1]}}`, nil), "needs dtype"},
		{"unknown field", build(`{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4],"x":1}}`, d16[:4]), "unknown field"},
		{"negative dim", build(`{"a":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}}`, d16[:4]), "negative"},
		{"overflowing shape", build(`{"a":{"dtype":"F32","shape":[4294967296,4294967296,16],"data_offsets":[0,0]}}`, nil), "needs"},
		{"saturating shape", build(`{"a":{"dtype":"F32","shape":[3037000500,3037000500,0,7],"data_offsets":[0,4]}}`, d16[:4]), "needs 0"},
		{"fractional dim", build(`{"a":{"dtype":"F32","shape":[1.5],"data_offsets":[0,4]}}`, d16[:4]), "malformed"},
		{"bad offsets", build(`{"a":{"dtype":"F32","shape":[1],"data_offsets":[4]}}`, d16[:4]), "want [begin, end]"},
		{"reversed offsets", build(`{"a":{"dtype":"F32","shape":[0],"data_offsets":[4,0]}}`, d16[:4]), "outside"},
		{"metadata not strings", build(`{"__metadata__":{"k":1}}`, nil), "__metadata__"},
		{"garbage after json", build(`{} x`, nil), "trailing bytes"},
		{"bad utf8", build("{\"\xff\":1}", nil), "UTF-8"},
	}
	dir := t.TempDir()
	for i, tc := range cases {
		_, err := Parse(tc.file)
		if err == nil {
			t.Errorf("%s: no error", tc.name)
			continue
		}
		if !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %q does not mention %q", tc.name, err, tc.want)
		}
		// Open, which reads the header from disk, agrees.
		path := filepath.Join(dir, fmt.Sprintf("%d.safetensors", i))
		if err := os.WriteFile(path, tc.file, 0o644); err != nil {
			t.Fatal(err)
		}
		if f, err := Open(path); err == nil {
			f.Close()
			t.Errorf("%s: Open gave no error", tc.name)
		} else if !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: Open error %q does not mention %q", tc.name, err, tc.want)
		}
	}
	if _, err := Parse(good); err != nil {
		t.Errorf("good file: %v", err)
	}
	// Space padding after the JSON, as the reference writer emits, is valid.
	if _, err := Parse(build(`{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}   `, d16[:4])); err != nil {
		t.Errorf("padded header: %v", err)
	}
}

// TestOpen reads tensors from disk on demand and matches Load, across
// several read chunks, and reports a file truncated after opening.
func TestOpen(t *testing.T) {
	big := tensor.New(3<<20 + 5) // more than three 1M-element chunks
	for i := range big.Data {
		big.Data[i] = float32(i%256) - 128 // exact in BF16
	}
	ts := map[string]*tensor.Tensor{"big": big, "small": tensor.FromData([]float32{1, 2, 3}, 3)}
	path := filepath.Join(t.TempDir(), "x.safetensors")
	if err := Save(path, ts, map[string]string{"k": "v"}, BF16); err != nil {
		t.Fatal(err)
	}
	f, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if f.Metadata["k"] != "v" {
		t.Errorf("metadata %v", f.Metadata)
	}
	for name, want := range ts {
		got, err := f.Tensor(name)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(got.Data, want.Data) {
			t.Errorf("%s: Open read different values", name)
		}
	}
	if err := os.Truncate(path, 1000); err != nil {
		t.Fatal(err)
	}
	if err := f.ReadInto("big", big.Data); err == nil {
		t.Error("reading a tensor of a file truncated after Open: no error")
	}
}

func TestErrorsOnUse(t *testing.T) {
	f, err := Parse(encodeFile(t, map[string]*tensor.Tensor{"a": tensor.New(2, 3)}, nil, BF16))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Tensor("nope"); err == nil {
		t.Error("Tensor of a missing name: no error")
	}
	if err := f.ReadInto("a", make([]float32, 5)); err == nil {
		t.Error("ReadInto with the wrong length: no error")
	}
	if err := Write(&bytes.Buffer{}, map[string]*tensor.Tensor{"a": tensor.New(1)}, nil, "F64"); err == nil {
		t.Error("Write F64: no error")
	}
	if err := Write(&bytes.Buffer{}, map[string]*tensor.Tensor{"__metadata__": tensor.New(1)}, nil, F32); err == nil {
		t.Error("Write of a tensor named __metadata__: no error")
	}
	if err := Save(filepath.Join(t.TempDir(), "no", "such", "dir", "x.safetensors"), nil, nil, F32); err == nil {
		t.Error("Save into a missing directory: no error")
	}
	if _, err := Load(filepath.Join(t.TempDir(), "missing.safetensors")); err == nil {
		t.Error("Load of a missing file: no error")
	}
	if _, err := Open(filepath.Join(t.TempDir(), "missing.safetensors")); err == nil {
		t.Error("Open of a missing file: no error")
	}
}

// TestTAESD3 reads the real BF16 checkpoints of the tiny SD3 autoencoder
// and checks values against ones decoded independently (Python, by hand).
func TestTAESD3(t *testing.T) {
	dir := filepath.Join("..", "..", "shared", "weights", "taesd3")
	for _, tc := range []struct {
		file, name string
		shape      []int
		first      []float32
		sum, sumSq float64
	}{
		{"taesd3_decoder.safetensors", "1.weight", []int{64, 16, 3, 3}, []float32{0.01483154296875, 0.03564453125, 0.018798828125, -0.007080078125}, 10.571696877479553, 28.11859938099714},
		{"taesd3_encoder.safetensors", "0.weight", []int{64, 3, 3, 3}, []float32{-0.02685546875, 0.0869140625, -0.09619140625, -0.111328125}, 0.5857176780700684, 13.196360000388673},
	} {
		path := filepath.Join(dir, tc.file)
		if _, err := os.Stat(path); err != nil {
			t.Skipf("weights not available: %v", err)
		}
		f, err := Open(path)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		if n := len(f.Names()); n != 67 {
			t.Errorf("%s: %d tensors, want 67", tc.file, n)
		}
		if in, _ := f.Info("3.conv.0.weight"); in.DType != BF16 || !tensor.SameShape(in.Shape, []int{64, 64, 3, 3}) {
			t.Errorf("%s: 3.conv.0.weight is %s%v", tc.file, in.DType, in.Shape)
		}
		w, err := f.Tensor(tc.name)
		if err != nil {
			t.Fatal(err)
		}
		if !tensor.SameShape(w.Shape, tc.shape) {
			t.Fatalf("%s shape %v, want %v", tc.name, w.Shape, tc.shape)
		}
		var s, s2 float64
		for i, v := range w.Data {
			if i < len(tc.first) && v != tc.first[i] {
				t.Errorf("%s[%d] = %v, want %v", tc.name, i, v, tc.first[i])
			}
			s += float64(v)
			s2 += float64(v) * float64(v)
		}
		if math.Abs(s-tc.sum) > 1e-9 || math.Abs(s2-tc.sumSq) > 1e-9 {
			t.Errorf("%s: sum %v sumSq %v, want %v %v", tc.name, s, s2, tc.sum, tc.sumSq)
		}
		for _, name := range f.Names() {
			if _, err := f.Tensor(name); err != nil {
				t.Error(err)
			}
		}
	}
}

// FuzzParse checks that Parse never panics and that whatever it accepts can
// be read in full. Run with go test -fuzz=FuzzParse ./safetensors; as a
// normal test it runs the seed corpus.
func FuzzParse(f *testing.F) {
	var buf bytes.Buffer
	Write(&buf, map[string]*tensor.Tensor{"x.weight": tensor.New(2, 3), "x.bias": tensor.New(3)}, map[string]string{"a": "b"}, BF16)
	f.Add(buf.Bytes())
	buf.Reset()
	Write(&buf, map[string]*tensor.Tensor{"s": tensor.Scalar(1)}, nil, F32)
	f.Add(buf.Bytes())
	f.Add(build(`{"a":{"dtype":"F16","shape":[2],"data_offsets":[0,4]}}`, make([]byte, 4)))
	f.Add(build(`{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}`, make([]byte, 12)))
	f.Add(build(`{"__metadata__":{"k":"v"}}`, nil))
	f.Add([]byte{1, 0, 0, 0, 0, 0, 0, 0, '{'})
	f.Fuzz(func(t *testing.T, b []byte) {
		file, err := Parse(b)
		if err != nil {
			return
		}
		for _, name := range file.Names() {
			x, err := file.Tensor(name)
			if err != nil {
				t.Fatalf("accepted file cannot read %q: %v", name, err)
			}
			if len(x.Data) != tensor.Numel(x.Shape) {
				t.Fatalf("%q: %d elements for shape %v", name, len(x.Data), x.Shape)
			}
		}
	})
}

// BenchmarkReadBF16 measures converting a 64 MiB BF16 tensor to float32
// (SetBytes: bytes of the file read).
func BenchmarkReadBF16(b *testing.B) {
	const n = 32 << 20
	raw := encodeFile(b, map[string]*tensor.Tensor{"w": tensor.New(n)}, nil, BF16)
	f, err := Parse(raw)
	if err != nil {
		b.Fatal(err)
	}
	dst := make([]float32, n)
	b.SetBytes(2 * n)
	for b.Loop() {
		if err := f.ReadInto("w", dst); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkWriteBF16 measures encoding a 32M-element tensor as BF16.
func BenchmarkWriteBF16(b *testing.B) {
	ts := map[string]*tensor.Tensor{"w": tensor.New(32 << 20)}
	b.SetBytes(2 * 32 << 20)
	for b.Loop() {
		if err := Write(io.Discard, ts, nil, BF16); err != nil {
			b.Fatal(err)
		}
	}
}

package torchpt

import (
	"archive/zip"
	"bytes"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"tsdsr/tensor"
)

// The tests build torch.save files in Go: pickler below emits the opcodes
// CPython's Pickler writes at protocol 2 (torch.save's default) for the
// objects torch.save pickles, and torchZip lays them out as PyTorch's zip
// writer does. TestTorchByteSequence pins pickler to a real torch.save.

// pickler writes a protocol-2 pickle, memoizing every object as CPython
// does; objects are identified by a tag (equal strings count as the same
// object, as interned literals such as 'storage' and 'cpu' are).
type pickler struct {
	b    bytes.Buffer
	memo map[string]int
	n    int
}

func newPickler() *pickler {
	p := &pickler{memo: map[string]int{}}
	p.b.WriteString("\x80\x02")
	return p
}

func (p *pickler) put(tag string) {
	if tag != "" {
		p.memo[tag] = p.n
	}
	if p.n < 256 {
		p.b.Write([]byte{'q', byte(p.n)})
	} else {
		p.b.WriteByte('r')
		binary.Write(&p.b, binary.LittleEndian, uint32(p.n))
	}
	p.n++
}

// get emits a BINGET of tag if it was memoized.
func (p *pickler) get(tag string) bool {
	i, ok := p.memo[tag]
	if ok {
		p.b.Write([]byte{'h', byte(i)})
	}
	return ok
}

func (p *pickler) global(module, name string) {
	if tag := "g:" + module + "." + name; !p.get(tag) {
		p.b.WriteString("c" + module + "\n" + name + "\n")
		p.put(tag)
	}
}

func (p *pickler) str(s string) {
	if tag := "s:" + s; !p.get(tag) {
		p.b.WriteByte('X')
		binary.Write(&p.b, binary.LittleEndian, uint32(len(s)))
		p.b.WriteString(s)
		p.put(tag)
	}
}

func (p *pickler) int(v int) {
	switch {
	case v >= 0 && v < 256:
		p.b.Write([]byte{'K', byte(v)})
	case v >= 0 && v < 65536:
		p.b.Write([]byte{'M', byte(v), byte(v >> 8)})
	default:
		p.b.WriteByte('J')
		binary.Write(&p.b, binary.LittleEndian, int32(v))
	}
}

func (p *pickler) ints(v []int) {
	if len(v) == 0 {
		p.b.WriteByte(')')
		return
	}
	if len(v) > 3 {
		p.b.WriteByte('(')
	}
	for _, x := range v {
		p.int(x)
	}
	if len(v) > 3 {
		p.b.WriteByte('t')
	} else {
		p.b.WriteByte(0x85 + byte(len(v)-1))
	}
	p.put("")
}

// pt describes a tensor as torch.save pickles it.
type pt struct {
	class        string // storage class, e.g. "HalfStorage"
	key          string // storage key: its entry is <archive>/data/<key>
	numel        int    // of the storage
	offset       int
	size, stride []int
}

// kv and dictOf, listOf model Python containers.
type kv struct {
	k string
	v any
}
type (
	dictOf []kv
	listOf []any
)

func (p *pickler) save(v any) {
	switch v := v.(type) {
	case pt:
		p.global("torch._utils", "_rebuild_tensor_v2")
		p.b.WriteString("((")
		p.str("storage")
		p.global("torch", v.class)
		p.str(v.key)
		p.str("cpu")
		p.int(v.numel)
		p.b.WriteByte('t')
		p.put("")
		p.b.WriteByte('Q')
		p.int(v.offset)
		p.ints(v.size)
		p.ints(v.stride)
		p.b.WriteByte(0x89)
		p.global("collections", "OrderedDict")
		p.b.WriteString(")R")
		p.put("")
		p.b.WriteByte('t')
		p.put("")
		p.b.WriteByte('R')
		p.put("")
	case dictOf:
		p.container('}', 'u', 's', len(v), func(i int) {
			p.str(v[i].k)
			p.save(v[i].v)
		})
	case listOf:
		p.container(']', 'e', 'a', len(v), func(i int) { p.save(v[i]) })
	case int:
		p.int(v)
	default:
		panic(fmt.Sprintf("pickler: %T", v))
	}
}

// container writes the opcode empty (an empty dict or list, memoised),
// then the n items by item, then the opcode that adds them: many after a
// MARK when n > 1, one when n == 1.
func (p *pickler) container(empty, many, one byte, n int, item func(i int)) {
	p.b.WriteByte(empty)
	p.put("")
	if n > 1 {
		p.b.WriteByte('(')
	}
	for i := range n {
		item(i)
	}
	switch {
	case n > 1:
		p.b.WriteByte(many)
	case n == 1:
		p.b.WriteByte(one)
	}
}

func pickle(v any) []byte {
	p := newPickler()
	p.save(v)
	p.b.WriteByte('.')
	return p.b.Bytes()
}

// torchZip lays out a torch.save archive as PyTorch 2.x does: stored
// entries in this order, each record's data aligned to 64 bytes by an
// "FB" padding extra field, no data descriptors.
func torchZip(t testing.TB, name string, pkl []byte, storages [][]byte, byteorder string) []byte {
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	add := func(entry string, data []byte) {
		if err := zw.Flush(); err != nil {
			t.Fatal(err)
		}
		full := name + "/" + entry
		pad := (64 - (buf.Len()+30+len(full)+4)%64) % 64
		extra := append([]byte{'F', 'B', byte(pad), byte(pad >> 8)}, bytes.Repeat([]byte{'Z'}, pad)...)
		w, err := zw.CreateRaw(&zip.FileHeader{
			Name: full, Method: zip.Store, Extra: extra, CRC32: crc32.ChecksumIEEE(data),
			CompressedSize64: uint64(len(data)), UncompressedSize64: uint64(len(data)),
		})
		if err != nil {
			t.Fatal(err)
		}
		w.Write(data)
	}
	add("data.pkl", pkl)
	add(".format_version", []byte("1"))
	add(".storage_alignment", []byte("64"))
	if byteorder != "" {
		add("byteorder", []byte(byteorder))
	}
	for i, s := range storages {
		add(fmt.Sprintf("data/%d", i), s)
	}
	add("version", []byte("3\n"))
	add(".data/serialization_id", []byte("1256137424186542340915171254452098135037"))
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// encode stores v in a storage of the given class, little-endian unless bo.
func encode(class string, v []float32, bo binary.AppendByteOrder) []byte {
	if bo == nil {
		bo = binary.LittleEndian
	}
	var out []byte
	for _, f := range v {
		switch class {
		case "FloatStorage":
			out = bo.AppendUint32(out, math.Float32bits(f))
		case "DoubleStorage":
			out = bo.AppendUint64(out, math.Float64bits(float64(f)))
		case "HalfStorage":
			out = bo.AppendUint16(out, tensor.F32ToF16(f))
		case "BFloat16Storage":
			out = bo.AppendUint16(out, tensor.F32ToBF16(f))
		case "LongStorage":
			out = bo.AppendUint64(out, uint64(int64(f)))
		}
	}
	return out
}

func ramp(n int) []float32 {
	v := make([]float32, n)
	for i := range v {
		v[i] = float32(i%97-48) * 0.125
	}
	return v
}

func read1(t *testing.T, b []byte) map[string]*tensor.Tensor {
	t.Helper()
	m, err := Read(bytes.NewReader(b), int64(len(b)))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func check(t *testing.T, name string, got *tensor.Tensor, shape []int, want []float32) {
	t.Helper()
	if got == nil {
		t.Fatalf("%s: missing", name)
	}
	if !slices.Equal(got.Shape, shape) {
		t.Fatalf("%s: shape %v, want %v", name, got.Shape, shape)
	}
	if !slices.Equal(got.Data, want) {
		t.Fatalf("%s: data %v, want %v", name, got.Data, want)
	}
}

// realPickle is data.pkl of torch.save(torch.arange(1, 11), "tensor.pt")
// under PyTorch 2.8, transcribed byte for byte from the pickletools
// disassembly of such a file (the byte offsets in the comments are
// pickletools'); the zip held tensor/{data.pkl, .format_version,
// .storage_alignment, byteorder, data/0, version, .data/serialization_id}.
const realPickle = "\x80\x02" + // 0: PROTO 2
	"ctorch._utils\n_rebuild_tensor_v2\n" + "q\x00" + // 2: GLOBAL, 35: BINPUT 0
	"(" + "(" + // 37: MARK, 38: MARK
	"X\x07\x00\x00\x00storage" + "q\x01" + // 39: BINUNICODE, 51: BINPUT 1
	"ctorch\nLongStorage\n" + "q\x02" + // 53: GLOBAL, 72: BINPUT 2
	"X\x01\x00\x00\x000" + "q\x03" + // 74: BINUNICODE '0', 80: BINPUT 3
	"X\x03\x00\x00\x00cpu" + "q\x04" + // 82: BINUNICODE 'cpu', 90: BINPUT 4
	"K\x0a" + // 92: BININT1 10
	"t" + "q\x05" + "Q" + // 94: TUPLE, 95: BINPUT 5, 97: BINPERSID
	"K\x00" + "K\x0a" + "\x85" + "q\x06" + // 98: offset, 100: size (10,), 103: BINPUT 6
	"K\x01" + "\x85" + "q\x07" + // 105: stride (1,), 108: BINPUT 7
	"\x89" + // 110: NEWFALSE
	"ccollections\nOrderedDict\n" + "q\x08" + // 111: GLOBAL, 136: BINPUT 8
	")" + "R" + "q\x09" + // 138: EMPTY_TUPLE, 139: REDUCE, 140: BINPUT 9
	"t" + "q\x0a" + "R" + "q\x0b" + // 142: TUPLE, 143: BINPUT 10, 145: REDUCE, 146: BINPUT 11
	"." // 148: STOP

func TestTorchByteSequence(t *testing.T) {
	if len(realPickle) != 149 || realPickle[97] != 'Q' || realPickle[139] != 'R' || realPickle[145] != 'R' {
		t.Fatal("realPickle does not match the disassembly's offsets")
	}
	ten := pt{class: "LongStorage", key: "0", numel: 10, size: []int{10}, stride: []int{1}}
	if got := string(pickle(ten)); got != realPickle {
		t.Fatalf("pickler differs from torch.save:\n got %q\nwant %q", got, realPickle)
	}
	vals := []float32{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}
	b := torchZip(t, "tensor", []byte(realPickle), [][]byte{encode("LongStorage", vals, nil)}, "little")
	if _, err := Read(bytes.NewReader(b), int64(len(b))); err == nil || !strings.Contains(err.Error(), "int64 (torch.LongStorage) is not supported") {
		t.Fatalf("int64 tensor: err = %v", err)
	}
	// The same bytes with HalfStorage (as long a name, so every offset stays).
	half := strings.Replace(realPickle, "LongStorage", "HalfStorage", 1)
	b = torchZip(t, "tensor", []byte(half), [][]byte{encode("HalfStorage", vals, nil)}, "little")
	got, err := ReadTensor(bytes.NewReader(b), int64(len(b)))
	if err != nil {
		t.Fatal(err)
	}
	check(t, "tensor", got, []int{10}, vals)
}

func TestDtypes(t *testing.T) {
	dir := t.TempDir()
	for _, class := range []string{"FloatStorage", "HalfStorage", "BFloat16Storage", "DoubleStorage"} {
		vals := ramp(12)
		ten := pt{class: class, key: "0", numel: 12, size: []int{1, 3, 4}, stride: []int{12, 4, 1}}
		path := filepath.Join(dir, class+".pt")
		if err := os.WriteFile(path, torchZip(t, class, pickle(ten), [][]byte{encode(class, vals, nil)}, "little"), 0o644); err != nil {
			t.Fatal(err)
		}
		got, err := LoadTensor(path)
		if err != nil {
			t.Fatal(err)
		}
		check(t, class, got, []int{1, 3, 4}, vals)
	}
}

// TestTSDSREmbeddings loads files shaped like the TSD-SR release's
// prompt_embeds.pt and pool_embeds.pt.
func TestTSDSREmbeddings(t *testing.T) {
	dir := t.TempDir()
	for _, c := range []struct {
		file, class string
		shape       []int
	}{
		{"prompt_embeds", "HalfStorage", []int{1, 333, 4096}},
		{"pool_embeds", "BFloat16Storage", []int{1, 2048}},
	} {
		n := tensor.Numel(c.shape)
		stride := make([]int, len(c.shape))
		for i, s := len(c.shape)-1, 1; i >= 0; i-- {
			stride[i], s = s, s*c.shape[i]
		}
		vals := ramp(n)
		ten := pt{class: c.class, key: "0", numel: n, size: c.shape, stride: stride}
		path := filepath.Join(dir, c.file+".pt")
		if err := os.WriteFile(path, torchZip(t, c.file, pickle(ten), [][]byte{encode(c.class, vals, nil)}, "little"), 0o644); err != nil {
			t.Fatal(err)
		}
		got, err := LoadTensor(path)
		if err != nil {
			t.Fatal(err)
		}
		check(t, c.file, got, c.shape, vals)
	}
}

// TestViews covers a dict of tensors sharing one storage at different
// offsets, a transposed (non-contiguous) view, an expanded (stride 0) view,
// a 0-d tensor, an empty tensor and nested containers.
func TestViews(t *testing.T) {
	s := ramp(20) // storage 0, float32
	f32 := func(off int, size, stride []int) pt {
		return pt{class: "FloatStorage", key: "0", numel: 20, offset: off, size: size, stride: stride}
	}
	obj := dictOf{
		{"a", f32(0, []int{2, 3}, []int{3, 1})},
		{"b", f32(6, []int{4}, []int{1})},
		{"c", f32(10, []int{3, 2}, []int{1, 3})}, // transpose of a 2x3 block at 10
		{"e", f32(2, []int{3, 2}, []int{0, 1})},  // expand of s[2:4]
		{"p", f32(1, []int{2, 2, 2}, []int{8, 1, 4})},
		{"s", f32(19, []int{}, []int{})},
		{"z", f32(0, []int{0, 4}, []int{4, 1})},
		{"step", 1000},
		{"inner", dictOf{{"x", pt{class: "BFloat16Storage", key: "1", numel: 4, offset: 1, size: []int{2}, stride: []int{2}}}}},
		{"list", listOf{f32(4, []int{1}, []int{1}), f32(5, []int{1}, []int{1})}},
	}
	bf := ramp(4)
	b := torchZip(t, "archive", pickle(obj), [][]byte{encode("FloatStorage", s, nil), encode("BFloat16Storage", bf, nil)}, "little")
	m := read1(t, b)
	var names []string
	for k := range m {
		names = append(names, k)
	}
	slices.Sort(names)
	if want := []string{"a", "b", "c", "e", "inner.x", "list.0", "list.1", "p", "s", "z"}; !slices.Equal(names, want) {
		t.Fatalf("names %v, want %v", names, want)
	}
	check(t, "a", m["a"], []int{2, 3}, s[0:6])
	check(t, "b", m["b"], []int{4}, s[6:10])
	check(t, "c", m["c"], []int{3, 2}, []float32{s[10], s[13], s[11], s[14], s[12], s[15]})
	check(t, "e", m["e"], []int{3, 2}, []float32{s[2], s[3], s[2], s[3], s[2], s[3]})
	check(t, "p", m["p"], []int{2, 2, 2}, []float32{s[1], s[5], s[2], s[6], s[9], s[13], s[10], s[14]})
	check(t, "s", m["s"], []int{}, s[19:20])
	check(t, "z", m["z"], []int{0, 4}, []float32{})
	check(t, "inner.x", m["inner.x"], []int{2}, []float32{bf[1], bf[3]})
	check(t, "list.1", m["list.1"], []int{1}, s[5:6])

	// A list at the top level is named by index.
	b = torchZip(t, "archive", pickle(listOf{f32(0, []int{2}, []int{1}), f32(2, []int{2}, []int{1})}), [][]byte{encode("FloatStorage", s, nil)}, "")
	m = read1(t, b)
	check(t, "0", m["0"], []int{2}, s[0:2])
	check(t, "1", m["1"], []int{2}, s[2:4])
	if _, err := ReadTensor(bytes.NewReader(b), int64(len(b))); err == nil || !strings.Contains(err.Error(), `holds 2 tensors ("0", "1")`) {
		t.Fatalf("ReadTensor of 2 tensors: err = %v", err)
	}
	// A dict with one tensor (and other values) is fine for ReadTensor.
	b = torchZip(t, "x", pickle(dictOf{{"n", 3}, {"emb", f32(0, []int{5}, []int{1})}}), [][]byte{encode("FloatStorage", s, nil)}, "")
	if got, err := ReadTensor(bytes.NewReader(b), int64(len(b))); err != nil {
		t.Fatal(err)
	} else {
		check(t, "emb", got, []int{5}, s[:5])
	}
}

func TestBigEndian(t *testing.T) {
	for _, class := range []string{"FloatStorage", "HalfStorage", "BFloat16Storage", "DoubleStorage"} {
		vals := ramp(6)
		ten := pt{class: class, key: "0", numel: 6, size: []int{3, 2}, stride: []int{1, 3}}
		b := torchZip(t, "be", pickle(ten), [][]byte{encode(class, vals, binary.BigEndian)}, "big")
		check(t, class, read1(t, b)[""], []int{3, 2}, []float32{vals[0], vals[3], vals[1], vals[4], vals[2], vals[5]})
	}
}

func validFile(t testing.TB) []byte {
	ten := pt{class: "HalfStorage", key: "0", numel: 6, size: []int{2, 3}, stride: []int{3, 1}}
	return torchZip(t, "archive", pickle(dictOf{{"a", ten}, {"b", ten}}), [][]byte{encode("HalfStorage", ramp(6), nil)}, "little")
}

func TestErrors(t *testing.T) {
	half := func(numel, off int, size, stride []int) pt {
		return pt{class: "HalfStorage", key: "0", numel: numel, offset: off, size: size, stride: stride}
	}
	data := encode("HalfStorage", ramp(6), nil)
	for _, c := range []struct {
		name, want string
		file       []byte
	}{
		{"forbidden global", "forbidden global os.system",
			torchZip(t, "a", []byte("\x80\x02cos\nsystem\nq\x00X\x04\x00\x00\x00trueq\x01\x85q\x02Rq\x03."), nil, "")},
		{"forbidden stack global", "forbidden global builtins.eval",
			torchZip(t, "a", []byte("\x80\x04\x8c\x08builtins\x94\x8c\x04eval\x94\x93\x94."), nil, "")},
		{"unknown opcode", "opcode 'i'", torchZip(t, "a", []byte("\x80\x02i"), nil, "")},
		{"truncated pickle", "truncated", torchZip(t, "a", pickle(half(6, 0, []int{6}, []int{1}))[:60], [][]byte{data}, "")},
		{"missing storage", "no entry a/data/0", torchZip(t, "a", pickle(half(6, 0, []int{6}, []int{1})), nil, "")},
		{"short storage", "want 6 elements", torchZip(t, "a", pickle(half(6, 0, []int{6}, []int{1})), [][]byte{data[:10]}, "")},
		{"overrun", "overruns its storage", torchZip(t, "a", pickle(half(6, 1, []int{6}, []int{1})), [][]byte{data}, "")},
		{"overrun stride", "overruns its storage", torchZip(t, "a", pickle(half(6, 0, []int{2, 3}, []int{4, 1})), [][]byte{data}, "")},
		{"rank mismatch", "differ in rank", torchZip(t, "a", pickle(half(6, 0, []int{6}, []int{})), [][]byte{data}, "")},
		{"byteorder", "unknown byteorder", torchZip(t, "a", pickle(half(6, 0, []int{6}, []int{1})), [][]byte{data}, "middle")},
		{"no tensor", "no tensor in the saved dict", torchZip(t, "a", pickle(dictOf{{"n", 1}}), nil, "")},
		{"legacy", "legacy torch.save format", append([]byte(legacyMagic), 0, 0)},
		{"not zip", "not a torch.save zip archive", []byte("hello, world")},
		{"empty", "not a torch.save zip archive", nil},
	} {
		_, err := Read(bytes.NewReader(c.file), int64(len(c.file)))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: err = %v, want it to contain %q", c.name, err, c.want)
		}
	}
	// Load names the file.
	path := filepath.Join(t.TempDir(), "bad.pt")
	if err := os.WriteFile(path, []byte("nope"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadTensor(path); err == nil || !strings.Contains(err.Error(), path) {
		t.Errorf("Load error %v does not name %s", err, path)
	}
}

// TestCorrupt checks that every truncation of a valid file, and every
// single-byte change of its pickle, gives an error or a result, not a panic.
func TestCorrupt(t *testing.T) {
	b := validFile(t)
	for n := range len(b) {
		if _, err := Read(bytes.NewReader(b[:n]), int64(n)); err == nil {
			t.Fatalf("file truncated to %d of %d bytes: no error", n, len(b))
		}
	}
	ten := pt{class: "HalfStorage", key: "0", numel: 6, size: []int{2, 3}, stride: []int{3, 1}}
	pkl := pickle(dictOf{{"a", ten}, {"b", ten}})
	data := encode("HalfStorage", ramp(6), nil)
	for i := range pkl {
		for _, v := range []byte{0, 0x7f, 0xff, pkl[i] + 1} {
			p := slices.Clone(pkl)
			p[i] = v
			f := torchZip(t, "archive", p, [][]byte{data}, "")
			Read(bytes.NewReader(f), int64(len(f)))
		}
	}
}

func FuzzLoad(f *testing.F) {
	f.Add(validFile(f))
	f.Fuzz(func(t *testing.T, b []byte) {
		Read(bytes.NewReader(b), int64(len(b)))
	})
}

// FuzzPickle fuzzes data.pkl inside a well-formed archive (whose CRCs would
// otherwise stop most mutations of the pickle).
func FuzzPickle(f *testing.F) {
	ten := pt{class: "FloatStorage", key: "0", numel: 6, size: []int{3, 2}, stride: []int{1, 3}}
	f.Add(pickle(dictOf{{"a", ten}, {"b", listOf{ten, ten}}}))
	f.Add([]byte(realPickle))
	data := encode("FloatStorage", ramp(6), nil)
	f.Fuzz(func(t *testing.T, p []byte) {
		b := torchZip(t, "archive", p, [][]byte{data}, "")
		Read(bytes.NewReader(b), int64(len(b)))
	})
}

// op helpers for hand-written pickles.
func su(s string) string { return "\x8c" + string(rune(len(s))) + s } // SHORT_BINUNICODE (len < 128)
func le(n int, v uint64) string {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(v >> (8 * i))
	}
	return string(b)
}

// TestOpcodes runs the opcodes torch.save does not emit at protocol 2
// (higher protocols, other container forms) through the machine.
func TestOpcodes(t *testing.T) {
	body := "" +
		"(" + // MARK: the result list
		su("collections") + "\x94" + su("OrderedDict") + "\x94" + "\x93" + "\x94" + // STACK_GLOBAL, memo 2
		")\x81" + // NEWOBJ OrderedDict() -> {}
		"(" + su("k") + "K\x07" + "d" + "b" + // BUILD it with DICT {'k': 7}
		"\x8a\x02\x00\xff" + "\x8a\x09" + le(8, ^uint64(0)) + "\xff" + "\x8a\x00" + // LONG1 -256, -1 (9 bytes), 0
		"G" + "\x3f\xf8\x00\x00\x00\x00\x00\x00" + // BINFLOAT 1.5 (big-endian)
		"N\x88\x89" + // None, True, False
		"B" + le(4, 2) + "ab" + "C\x01c" + "\x8e" + le(8, 1) + "d" + // bytes
		"T" + le(4, 1) + "e" + "U\x01f" + "\x8d" + le(8, 1) + "g" + "X" + le(4, 1) + "h" + // strings
		"ctorch\nSize\n" + "K\x02M\x00\x01J\xff\xff\xff\xff" + "\x87" + "\x85R" + // torch.Size((2, 256, -1))
		"K\x01\x85" + "K\x01K\x02\x86" + // (1,), (1, 2)
		"r" + le(4, 300) + "2" + "0" + "j" + le(4, 300) + // LONG_BINPUT, DUP, POP, LONG_BINGET
		"(K\x01K\x021" + // POP_MARK
		"]K\x01a(K\x02K\x03e" + "(K\x04l" + // APPEND, APPENDS, LIST
		"}" + su("x") + "K\x01s(" + su("y") + "K\x02" + su("z") + "K\x03u" + // SETITEM, SETITEMS
		"l."
	p := "\x80\x04\x95" + le(8, uint64(len(body))) + body
	u := &unpickler{data: []byte(p), findClass: findClass, persistentLoad: persistentLoad, call: (&archive{}).call}
	v, err := u.load()
	if err != nil {
		t.Fatal(err)
	}
	got := v.(*list).items
	want := []string{"dict{k:7}", "-256", "-1", "0", "1.5", "<nil>", "true", "false", "[97 98]", "[99]", "[100]",
		"e", "f", "g", "h", "(2 256 -1)", "(1)", "(1 2)", "(1 2)", "list[1 2 3]", "list[4]", "dict{x:1 y:2 z:3}"}
	if len(got) != len(want) {
		t.Fatalf("got %d items %v, want %d", len(got), got, len(want))
	}
	for i, g := range got {
		if s := show(g); s != want[i] {
			t.Errorf("item %d = %s, want %s", i, s, want[i])
		}
	}
	// 2**63 does not fit an int64.
	u = &unpickler{data: []byte("\x80\x02\x8a\x09" + le(9, 1<<63) + "."), findClass: findClass}
	if _, err := u.load(); err == nil || !strings.Contains(err.Error(), "64 bits") {
		t.Errorf("LONG1 2**63: err = %v", err)
	}
}

func show(v any) string {
	switch v := v.(type) {
	case tuple:
		return "(" + strings.Trim(fmt.Sprint([]any(v)), "[]") + ")"
	case *list:
		return "list" + fmt.Sprint(v.items)
	case *dict:
		var parts []string
		for i, k := range v.keys {
			parts = append(parts, fmt.Sprintf("%v:%v", k, v.vals[i]))
		}
		return "dict{" + strings.Join(parts, " ") + "}"
	}
	return fmt.Sprint(v)
}

// TestRebuildVariants covers Parameters, tensors saved with Python
// attributes (_rebuild_from_type_v2) and the old _rebuild_tensor.
func TestRebuildVariants(t *testing.T) {
	storage := "((X\x07\x00\x00\x00storagectorch\nFloatStorage\nX\x01\x00\x00\x000X\x03\x00\x00\x00cpuK\x06tQ"
	hooks := "ccollections\nOrderedDict\n)R"
	v2 := "ctorch._utils\n_rebuild_tensor_v2\n" + storage + "K\x00K\x06\x85K\x01\x85\x89" + hooks + "tR"
	old := "ctorch._utils\n_rebuild_tensor\n" + storage + "K\x02K\x02\x85K\x02\x85tR"
	param := "ctorch._utils\n_rebuild_parameter\n(" + v2 + "\x88" + hooks + "tR"
	fromType := "ctorch._tensor\n_rebuild_from_type_v2\n(ctorch._utils\n_rebuild_tensor_v2\nctorch.nn.parameter\nParameter\n" +
		storage + "K\x01K\x02\x85K\x01\x85\x89" + hooks + "}t}tR"
	p := "\x80\x02}(X\x01\x00\x00\x00p" + param + "X\x01\x00\x00\x00o" + old + "X\x01\x00\x00\x00f" + fromType + "u."
	s := ramp(6)
	m := read1(t, torchZip(t, "archive", []byte(p), [][]byte{encode("FloatStorage", s, nil)}, ""))
	check(t, "p", m["p"], []int{6}, s)
	check(t, "o", m["o"], []int{2}, []float32{s[2], s[4]})
	check(t, "f", m["f"], []int{2}, s[1:3])
}

// TestLimits checks that shared containers and many views of one storage
// cannot make a small file cost exponential time or outsized memory.
func TestLimits(t *testing.T) {
	// l0 = []; l_i = [l_{i-1}, l_{i-1}]: 2**30 paths through 30 lists.
	p := "\x80\x02]q\x00"
	for i := 1; i <= 30; i++ {
		p += fmt.Sprintf("0](h%ch%ceq%c", i-1, i-1, i)
	}
	b := torchZip(t, "a", []byte(p+"."), nil, "")
	if _, err := Read(bytes.NewReader(b), int64(len(b))); err == nil || !strings.Contains(err.Error(), "too many objects") {
		t.Errorf("shared lists: err = %v", err)
	}
	// A list holding itself.
	b = torchZip(t, "a", []byte("\x80\x02]q\x00h\x00a."), nil, "")
	if _, err := Read(bytes.NewReader(b), int64(len(b))); err == nil || !strings.Contains(err.Error(), "too many objects") {
		t.Errorf("cyclic list: err = %v", err)
	}
	// 100 full views of one 2**16-element storage: 25 times the file.
	const n = 1 << 16
	var views dictOf
	for i := range 100 {
		views = append(views, kv{fmt.Sprint(i), pt{class: "FloatStorage", key: "0", numel: n, size: []int{n}, stride: []int{1}}})
	}
	b = torchZip(t, "a", pickle(views), [][]byte{make([]byte, 4*n)}, "")
	if _, err := Read(bytes.NewReader(b), int64(len(b))); err == nil || !strings.Contains(err.Error(), "elements in all") {
		t.Errorf("many views: err = %v", err)
	}
}

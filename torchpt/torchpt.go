// Package torchpt reads tensors saved by PyTorch's torch.save, without Python.
//
// It exists because the official TSD-SR release ships its default-prompt
// embeddings as prompt_embeds.pt (1 x 333 x 4096) and pool_embeds.pt
// (1 x 2048), written with torch.save(tensor, path), and users point tsdsr
// at those files.
//
// torch.save's default format (PyTorch 1.6 and later) is a ZIP archive of
//
//	<archive>/data.pkl                 a pickle describing the saved object
//	<archive>/data/<key>               raw bytes of each tensor storage
//	<archive>/byteorder                "little" or "big" (absent in old files)
//	<archive>/version, .data/serialization_id, ...
//
// where <archive> is arbitrary (usually the file stem). In data.pkl a tensor
// is the call
//
//	torch._utils._rebuild_tensor_v2(storage, storage_offset, size, stride,
//	                                requires_grad, backward_hooks[, metadata])
//
// whose storage is a persistent id ('storage', torch.HalfStorage, '<key>',
// '<location>', numel). The pickle is run by a restricted machine (see
// pickle.go) that builds only data: a GLOBAL outside a short allowlist of
// torch rebuild functions, storage classes and collections.OrderedDict is an
// error, so a malicious file cannot execute anything. Every length, index,
// shape and stride from the file is checked, so a corrupt file gives an
// error, never a panic or an outsized allocation.
//
// Tensors of dtype float32, float16, bfloat16 and float64 are converted to
// contiguous float32 *tensor.Tensor, following storage offsets and arbitrary
// (non-contiguous, overlapping or zero) strides. Integer and other dtypes,
// the legacy pre-1.6 format, and TorchScript archives are rejected.
package torchpt

import (
	"archive/zip"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path"
	"slices"
	"strconv"
	"strings"

	"tsdsr/tensor"
)

// maxDepth bounds the nesting of dicts and lists walked for tensors (which
// also stops a self-referencing list from looping).
const maxDepth = 32

// Load reads a file written by torch.save holding one tensor, or a dict,
// list or tuple of tensors (nested containers allowed). The result maps
// names to tensors: a lone tensor is named "", a dict entry by its key, a
// list or tuple entry by its index ("0", "1", ...), and nested entries join
// the names with "." (as in a state dict). Values that are not tensors are
// skipped; a file with no tensor is an error. Errors name the file.
func Load(path string) (map[string]*tensor.Tensor, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("torchpt: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("torchpt: %w", err)
	}
	m, err := read(f, st.Size())
	if err != nil {
		return nil, fmt.Errorf("torchpt: %s: %w", path, err)
	}
	return m, nil
}

// LoadTensor reads a torch.save file holding exactly one tensor (alone or
// as the only tensor of a container), as Load does.
func LoadTensor(path string) (*tensor.Tensor, error) {
	m, err := Load(path)
	if err != nil {
		return nil, err
	}
	t, err := only(m)
	if err != nil {
		return nil, fmt.Errorf("torchpt: %s: %w", path, err)
	}
	return t, nil
}

// Read is Load for a torch.save file of size bytes read from r.
func Read(r io.ReaderAt, size int64) (map[string]*tensor.Tensor, error) {
	m, err := read(r, size)
	if err != nil {
		return nil, fmt.Errorf("torchpt: %w", err)
	}
	return m, nil
}

// ReadTensor is LoadTensor for a torch.save file of size bytes read from r.
func ReadTensor(r io.ReaderAt, size int64) (*tensor.Tensor, error) {
	m, err := Read(r, size)
	if err != nil {
		return nil, err
	}
	t, err := only(m)
	if err != nil {
		return nil, fmt.Errorf("torchpt: %w", err)
	}
	return t, nil
}

func only(m map[string]*tensor.Tensor) (*tensor.Tensor, error) {
	if len(m) == 1 {
		for _, t := range m {
			return t, nil
		}
	}
	names := make([]string, 0, len(m))
	for k := range m {
		names = append(names, strconv.Quote(k))
	}
	slices.Sort(names)
	if len(names) > 8 {
		names = append(names[:8], "...")
	}
	return nil, fmt.Errorf("holds %d tensors (%s), want exactly one", len(m), strings.Join(names, ", "))
}

// legacyMagic starts a file of the pre-zip torch.save format: a pickled
// LONG1 of the magic number 0x1950a86a20f9469cfc6c.
var legacyMagic = []byte("\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19")

// archive is an opened torch.save zip.
type archive struct {
	files   map[string]*zip.File
	prefix  string // "<archive>/"
	order   binary.ByteOrder
	size    int64 // of the whole file
	storage map[string][]byte
	// budget is how many more float32 elements the tensors may hold in
	// all: views can share a storage, so without a total a small file
	// could make many large tensors.
	budget int64
}

func read(r io.ReaderAt, size int64) (map[string]*tensor.Tensor, error) {
	if size < 0 {
		return nil, errors.New("negative file size")
	}
	head := make([]byte, min(size, int64(len(legacyMagic))))
	if _, err := r.ReadAt(head, 0); err != nil && !errors.Is(err, io.EOF) {
		return nil, err
	}
	if bytes.Equal(head, legacyMagic) {
		return nil, errors.New("legacy torch.save format (PyTorch < 1.6 or _use_new_zipfile_serialization=False) is not supported; re-save it with a recent PyTorch")
	}
	zr, err := zip.NewReader(r, size)
	if err != nil && !errors.Is(err, zip.ErrInsecurePath) {
		return nil, fmt.Errorf("not a torch.save zip archive: %w", err)
	}
	a := &archive{files: map[string]*zip.File{}, size: size, storage: map[string][]byte{}, budget: 16*size + 1<<20}
	var pkl []string
	for _, f := range zr.File {
		a.files[f.Name] = f
		if dir, base := path.Split(f.Name); base == "data.pkl" && dir != "" && strings.Count(dir, "/") == 1 {
			pkl = append(pkl, f.Name)
		}
	}
	switch len(pkl) {
	case 0:
		return nil, errors.New("no <archive>/data.pkl entry: not a torch.save file")
	case 1:
	default:
		return nil, fmt.Errorf("several data.pkl entries (%s)", strings.Join(pkl, ", "))
	}
	a.prefix = strings.TrimSuffix(pkl[0], "data.pkl")
	if _, ok := a.files[a.prefix+"constants.pkl"]; ok {
		return nil, errors.New("a TorchScript archive (torch.jit.save), not a torch.save file")
	}
	a.order = binary.LittleEndian
	if f, ok := a.files[a.prefix+"byteorder"]; ok {
		b, err := a.entry(f, 16)
		if err != nil {
			return nil, err
		}
		switch strings.TrimSpace(string(b)) {
		case "little":
		case "big":
			a.order = binary.BigEndian
		default:
			return nil, fmt.Errorf("unknown byteorder %q", b)
		}
	}
	p, err := a.entry(a.files[pkl[0]], 1<<30)
	if err != nil {
		return nil, err
	}
	u := &unpickler{data: p, findClass: findClass, persistentLoad: persistentLoad, call: a.call}
	obj, err := u.load()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", pkl[0], err)
	}
	out := map[string]*tensor.Tensor{}
	visits := len(p) + 16
	if err := collect(obj, "", 0, &visits, out); err != nil {
		return nil, err
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no tensor in the saved %s", typeName(obj))
	}
	return out, nil
}

// entry reads a whole archive entry of at most limit bytes.
func (a *archive) entry(f *zip.File, limit int64) ([]byte, error) {
	n := f.UncompressedSize64
	// A stored entry cannot be larger than the file; a deflated one cannot
	// expand more than about 1032 times.
	maxLen := a.size
	if f.Method != zip.Store {
		maxLen = min(a.size, math.MaxInt64/2048) * 1100
	}
	if n > uint64(min(limit, maxLen)) {
		return nil, fmt.Errorf("%s: entry of %d bytes is too large", f.Name, n)
	}
	rc, err := f.Open()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", f.Name, err)
	}
	defer rc.Close()
	buf := bytes.NewBuffer(make([]byte, 0, min(n, uint64(a.size))))
	if _, err := io.Copy(buf, io.LimitReader(rc, int64(n)+1)); err != nil {
		return nil, fmt.Errorf("%s: %w", f.Name, err)
	}
	if uint64(buf.Len()) != n {
		return nil, fmt.Errorf("%s: read %d bytes, header says %d", f.Name, buf.Len(), n)
	}
	return buf.Bytes(), nil
}

// dtype is a storage element type.
type dtype struct {
	name string // torch's name of the dtype
	size int    // bytes per element; 0 if unsupported
}

// storageTypes are the storage classes torch.save may name, and their
// dtypes. Only the first four are converted to float32.
var storageTypes = map[string]dtype{
	"FloatStorage":         {"float32", 4},
	"HalfStorage":          {"float16", 2},
	"BFloat16Storage":      {"bfloat16", 2},
	"DoubleStorage":        {"float64", 8},
	"LongStorage":          {"int64", 0},
	"IntStorage":           {"int32", 0},
	"ShortStorage":         {"int16", 0},
	"CharStorage":          {"int8", 0},
	"ByteStorage":          {"uint8", 0},
	"BoolStorage":          {"bool", 0},
	"ComplexFloatStorage":  {"complex64", 0},
	"ComplexDoubleStorage": {"complex128", 0},
	"QInt8Storage":         {"qint8", 0},
	"QUInt8Storage":        {"quint8", 0},
	"QInt32Storage":        {"qint32", 0},
}

// Rebuild functions and classes a torch.save pickle of tensors may use.
var (
	gRebuildV2       = global{"torch._utils", "_rebuild_tensor_v2"}
	gRebuild         = global{"torch._utils", "_rebuild_tensor"}
	gParameter       = global{"torch._utils", "_rebuild_parameter"}
	gParameterState  = global{"torch._utils", "_rebuild_parameter_with_state"}
	gFromType        = global{"torch._tensor", "_rebuild_from_type_v2"}
	gTensorClass     = global{"torch", "Tensor"}
	gParameterClass  = global{"torch.nn.parameter", "Parameter"}
	gOrderedDict     = global{"collections", "OrderedDict"}
	gSize            = global{"torch", "Size"}
	allowedFunctions = map[global]bool{
		gRebuildV2: true, gRebuild: true, gParameter: true, gParameterState: true,
		gFromType: true, gTensorClass: true, gParameterClass: true, gOrderedDict: true, gSize: true,
	}
)

// findClass is the allowlist of globals; anything else is refused when the
// pickle names it.
func findClass(module, name string) error {
	g := global{module, name}
	if allowedFunctions[g] {
		return nil
	}
	if _, ok := storageTypes[name]; ok && module == "torch" {
		return nil
	}
	return fmt.Errorf("forbidden global %s (only plain tensors in dicts, lists and tuples are read)", g)
}

// storage is a persistent id: one tensor storage of the archive.
type storage struct {
	class    string
	dtype    dtype
	key      string
	location string
	numel    int64
}

// persistentLoad decodes ('storage', class, key, location, numel).
func persistentLoad(pid any) (any, error) {
	t, ok := pid.(tuple)
	if !ok || len(t) != 5 {
		return nil, fmt.Errorf("persistent id is a %s, want a 5-tuple", typeName(pid))
	}
	if s, _ := t[0].(string); s != "storage" {
		return nil, fmt.Errorf("persistent id of kind %v, want 'storage'", t[0])
	}
	class, ok1 := t[1].(global)
	key, ok2 := t[2].(string)
	loc, ok3 := t[3].(string)
	numel, ok4 := t[4].(int64)
	if !ok1 || !ok2 || !ok3 || !ok4 {
		return nil, errors.New("malformed storage persistent id")
	}
	dt, ok := storageTypes[class.name]
	if !ok || class.module != "torch" {
		return nil, fmt.Errorf("unknown storage class %s", class)
	}
	if numel < 0 {
		return nil, fmt.Errorf("storage of %d elements", numel)
	}
	return &storage{class: class.name, dtype: dt, key: key, location: loc, numel: numel}, nil
}

// call applies an allowed global.
func (a *archive) call(fn global, args tuple) (any, error) {
	switch fn {
	case gOrderedDict:
		if len(args) != 0 {
			return nil, errors.New("OrderedDict with arguments is not supported")
		}
		return newDict(), nil
	case gSize:
		if len(args) != 1 {
			return nil, errors.New("want 1 argument")
		}
		t, ok := args[0].(tuple)
		if !ok {
			return nil, fmt.Errorf("argument is %s, want tuple", typeName(args[0]))
		}
		return t, nil
	case gRebuildV2, gRebuild:
		if fn == gRebuild && len(args) != 4 || fn == gRebuildV2 && len(args) != 6 && len(args) != 7 {
			return nil, fmt.Errorf("%d arguments", len(args))
		}
		st, ok := args[0].(*storage)
		if !ok {
			return nil, fmt.Errorf("storage argument is %s", typeName(args[0]))
		}
		off, ok := args[1].(int64)
		if !ok {
			return nil, fmt.Errorf("storage_offset is %s", typeName(args[1]))
		}
		size, err := ints(args[2], "size")
		if err != nil {
			return nil, err
		}
		stride, err := ints(args[3], "stride")
		if err != nil {
			return nil, err
		}
		return a.rebuild(st, off, size, stride)
	case gParameter, gParameterState:
		if len(args) != 3 && len(args) != 4 {
			return nil, fmt.Errorf("%d arguments", len(args))
		}
		t, ok := args[0].(*tensor.Tensor)
		if !ok {
			return nil, fmt.Errorf("data is %s, want Tensor", typeName(args[0]))
		}
		return t, nil
	case gFromType:
		// _rebuild_from_type_v2(func, new_type, args, state): a tensor (or
		// subclass) saved with Python attributes, which are dropped.
		if len(args) != 4 {
			return nil, fmt.Errorf("%d arguments", len(args))
		}
		f, ok1 := args[0].(global)
		typ, ok2 := args[1].(global)
		fargs, ok3 := args[2].(tuple)
		if !ok1 || !ok2 || !ok3 || typ != gTensorClass && typ != gParameterClass {
			return nil, errors.New("unsupported arguments")
		}
		if f != gRebuildV2 && f != gRebuild && f != gParameter && f != gParameterState {
			return nil, fmt.Errorf("unsupported function %s", f)
		}
		return a.call(f, fargs)
	}
	return nil, errors.New("is not callable")
}

// ints converts a tuple of Python ints.
func ints(v any, what string) ([]int64, error) {
	t, ok := v.(tuple)
	if !ok {
		return nil, fmt.Errorf("%s is %s, want tuple", what, typeName(v))
	}
	out := make([]int64, len(t))
	for i, e := range t {
		n, ok := e.(int64)
		if !ok {
			return nil, fmt.Errorf("%s has a %s element", what, typeName(e))
		}
		out[i] = n
	}
	return out, nil
}

// maxDims and maxExtent bound a tensor's rank and extent per dimension.
const (
	maxDims   = 64
	maxExtent = 1 << 40
)

// rebuild materializes a strided view of a storage as a contiguous float32
// tensor.
func (a *archive) rebuild(st *storage, off int64, size, stride []int64) (*tensor.Tensor, error) {
	if st.dtype.size == 0 {
		return nil, fmt.Errorf("tensor of dtype %s (torch.%s) is not supported, only float32, float16, bfloat16 and float64", st.dtype.name, st.class)
	}
	if len(size) != len(stride) {
		return nil, fmt.Errorf("size %v and stride %v differ in rank", size, stride)
	}
	if len(size) > maxDims {
		return nil, fmt.Errorf("tensor of rank %d", len(size))
	}
	if off < 0 {
		return nil, fmt.Errorf("negative storage_offset %d", off)
	}
	numel := int64(1)
	for i := range size {
		if size[i] < 0 || size[i] > maxExtent || stride[i] < 0 || stride[i] > maxExtent {
			return nil, fmt.Errorf("invalid size %v or stride %v", size, stride)
		}
		if size[i] != 0 && numel > math.MaxInt64/size[i] {
			return nil, fmt.Errorf("size %v overflows", size)
		}
		numel *= size[i]
	}
	shape := make([]int, len(size))
	for i, s := range size {
		shape[i] = int(s)
	}
	if numel == 0 {
		return tensor.New(shape...), nil
	}
	// The last element read must lie in the storage, and the result may
	// repeat elements (zero strides) at most a few times over.
	last := off
	for i := range size {
		if stride[i] != 0 && size[i]-1 > (math.MaxInt64-last)/stride[i] {
			return nil, fmt.Errorf("size %v with stride %v overflows", size, stride)
		}
		last += (size[i] - 1) * stride[i]
	}
	if last >= st.numel {
		return nil, fmt.Errorf("tensor of size %v, stride %v at offset %d overruns its storage of %d elements", size, stride, off, st.numel)
	}
	if numel > 8*st.numel+1024 || numel > math.MaxInt32*8 {
		return nil, fmt.Errorf("tensor of size %v expands its storage of %d elements too far", size, st.numel)
	}
	if numel > a.budget {
		return nil, fmt.Errorf("tensors of more than %d elements in all from a file of %d bytes", 16*a.size+1<<20, a.size)
	}
	a.budget -= numel
	raw, err := a.storageBytes(st)
	if err != nil {
		return nil, err
	}
	out := make([]float32, numel)
	gather(out, raw, st.dtype, a.order, off, size, stride)
	return tensor.FromData(out, shape...), nil
}

// storageBytes returns the raw bytes of a storage, read once per key.
func (a *archive) storageBytes(st *storage) ([]byte, error) {
	raw, ok := a.storage[st.key]
	if !ok {
		name := a.prefix + "data/" + st.key
		f, ok := a.files[name]
		if !ok {
			return nil, fmt.Errorf("storage %q: no entry %s", st.key, name)
		}
		var err error
		if raw, err = a.entry(f, math.MaxInt64); err != nil {
			return nil, err
		}
		a.storage[st.key] = raw
	}
	if int64(len(raw))/int64(st.dtype.size) < st.numel {
		return nil, fmt.Errorf("storage %q: %d bytes, want %d elements of %d bytes", st.key, len(raw), st.numel, st.dtype.size)
	}
	return raw, nil
}

// gather copies the elements of a strided view of raw (elements of dtype
// dt in byte order bo) into dst in row-major order. The view must have
// been checked to lie within raw.
func gather(dst []float32, raw []byte, dt dtype, bo binary.ByteOrder, off int64, size, stride []int64) {
	dec, es := decoder(dt, bo), dt.size
	nd := len(size)
	if nd == 0 || contiguous(size, stride) {
		dec(dst, raw[off*int64(es):(off+int64(len(dst)))*int64(es)])
		return
	}
	inner, innerStride := int(size[nd-1]), stride[nd-1]
	idx := make([]int64, nd-1)
	base := off
	for o := 0; o < len(dst); o += inner {
		if innerStride == 1 {
			dec(dst[o:o+inner], raw[base*int64(es):(base+int64(inner))*int64(es)])
		} else {
			for j := range inner {
				p := (base + int64(j)*innerStride) * int64(es)
				dec(dst[o+j:o+j+1], raw[p:p+int64(es)])
			}
		}
		for d := nd - 2; d >= 0; d-- {
			idx[d]++
			base += stride[d]
			if idx[d] < size[d] {
				break
			}
			base -= stride[d] * size[d]
			idx[d] = 0
		}
	}
}

// contiguous reports whether stride is the row-major stride of size
// (ignoring dimensions of extent 1).
func contiguous(size, stride []int64) bool {
	want := int64(1)
	for i := len(size) - 1; i >= 0; i-- {
		if size[i] != 1 && stride[i] != want {
			return false
		}
		want *= size[i]
	}
	return true
}

// decoder returns a function converting elements of dtype dt, in byte
// order bo, to float32.
func decoder(dt dtype, bo binary.ByteOrder) func(dst []float32, src []byte) {
	switch dt.name {
	case "float64":
		return func(dst []float32, src []byte) {
			for i := range dst {
				dst[i] = float32(math.Float64frombits(bo.Uint64(src[8*i:])))
			}
		}
	case "float32":
		return func(dst []float32, src []byte) {
			for i := range dst {
				dst[i] = math.Float32frombits(bo.Uint32(src[4*i:]))
			}
		}
	case "float16":
		return func(dst []float32, src []byte) {
			for i := range dst {
				dst[i] = tensor.F16ToF32(bo.Uint16(src[2*i:]))
			}
		}
	case "bfloat16":
		return func(dst []float32, src []byte) {
			for i := range dst {
				dst[i] = tensor.BF16ToF32(bo.Uint16(src[2*i:]))
			}
		}
	}
	panic("torchpt: no decoder for " + dt.name)
}

// collect adds the tensors of v to out under name (see Load). Each object
// of a pickle costs at least one byte of it, so more than visits objects
// means containers shared (or cycling) to blow the walk up; both that and
// nesting deeper than maxDepth are errors.
func collect(v any, name string, depth int, visits *int, out map[string]*tensor.Tensor) error {
	if depth > maxDepth {
		return fmt.Errorf("containers nested deeper than %d at %q", maxDepth, name)
	}
	if *visits--; *visits < 0 {
		return errors.New("too many objects: the pickle shares containers")
	}
	join := func(k string) string {
		if name == "" {
			return k
		}
		return name + "." + k
	}
	switch v := v.(type) {
	case *tensor.Tensor:
		if _, dup := out[name]; dup {
			return fmt.Errorf("two tensors named %q", name)
		}
		out[name] = v
	case *dict:
		for i, k := range v.keys {
			var ks string
			switch k := k.(type) {
			case string:
				ks = k
			case int64:
				ks = strconv.FormatInt(k, 10)
			default:
				return fmt.Errorf("dict key of type %s at %q", typeName(k), name)
			}
			if err := collect(v.vals[i], join(ks), depth+1, visits, out); err != nil {
				return err
			}
		}
	case *list:
		for i, e := range v.items {
			if err := collect(e, join(strconv.Itoa(i)), depth+1, visits, out); err != nil {
				return err
			}
		}
	case tuple:
		for i, e := range v {
			if err := collect(e, join(strconv.Itoa(i)), depth+1, visits, out); err != nil {
				return err
			}
		}
	}
	return nil
}

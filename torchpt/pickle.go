package torchpt

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"unicode/utf8"

	"tsdsr/tensor"
)

// This file is a restricted pickle virtual machine: enough of protocols 2 to
// 5 to read what torch.save writes, and nothing that runs code. Python
// objects become Go values:
//
//	None -> nil, bool -> bool, int -> int64, float -> float64,
//	str -> string, bytes -> []byte, tuple -> tuple, list -> *list,
//	dict and OrderedDict -> *dict, a GLOBAL -> global,
//
// and calls (REDUCE, NEWOBJ) go to a caller-supplied function, which sees
// only globals that passed the allowlist when they were loaded.

// global is a class or function named by a GLOBAL or STACK_GLOBAL opcode.
type global struct{ module, name string }

func (g global) String() string { return g.module + "." + g.name }

// tuple is a Python tuple (immutable).
type tuple []any

// list is a Python list; a pointer, since APPEND mutates shared objects.
type list struct{ items []any }

// dict is an insertion-ordered Python dict. Keys are restricted to the
// comparable scalars (nil, bool, int64, float64, string).
type dict struct {
	keys  []any
	vals  []any
	index map[any]int
}

func newDict() *dict { return &dict{index: map[any]int{}} }

func (d *dict) set(k, v any) error {
	switch k.(type) {
	case nil, bool, int64, float64, string:
	default:
		return fmt.Errorf("unsupported dict key of type %s", typeName(k))
	}
	if i, ok := d.index[k]; ok {
		d.vals[i] = v
		return nil
	}
	d.index[k] = len(d.keys)
	d.keys = append(d.keys, k)
	d.vals = append(d.vals, v)
	return nil
}

// unpickler is the pickle machine: a stack, a stack of MARK positions
// and the memo.
type unpickler struct {
	data  []byte
	pos   int
	stack []any
	marks []int
	memo  map[int]any

	// findClass vets a GLOBAL before it is pushed.
	findClass func(module, name string) error
	// persistentLoad resolves a BINPERSID id.
	persistentLoad func(pid any) (any, error)
	// call applies an allowed global to arguments (REDUCE and NEWOBJ).
	call func(fn global, args tuple) (any, error)
}

// Pickle opcodes (see CPython's Lib/pickletools.py).
const (
	opMark           = '('
	opStop           = '.'
	opPop            = '0'
	opPopMark        = '1'
	opDup            = '2'
	opBinint         = 'J'
	opBinint1        = 'K'
	opBinint2        = 'M'
	opNone           = 'N'
	opBinpersid      = 'Q'
	opReduce         = 'R'
	opBinstring      = 'T'
	opShortBinstring = 'U'
	opBinunicode     = 'X'
	opAppend         = 'a'
	opBuild          = 'b'
	opGlobal         = 'c'
	opDict           = 'd'
	opEmptyDict      = '}'
	opAppends        = 'e'
	opBinget         = 'h'
	opLongBinget     = 'j'
	opList           = 'l'
	opEmptyList      = ']'
	opBinput         = 'q'
	opLongBinput     = 'r'
	opSetitem        = 's'
	opTuple          = 't'
	opEmptyTuple     = ')'
	opSetitems       = 'u'
	opBinfloat       = 'G'
	opBinbytes       = 'B'
	opShortBinbytes  = 'C'

	opProto           = 0x80
	opNewobj          = 0x81
	opTuple1          = 0x85
	opTuple2          = 0x86
	opTuple3          = 0x87
	opNewtrue         = 0x88
	opNewfalse        = 0x89
	opLong1           = 0x8a
	opLong4           = 0x8b
	opShortBinunicode = 0x8c
	opBinunicode8     = 0x8d
	opBinbytes8       = 0x8e
	opStackGlobal     = 0x93
	opMemoize         = 0x94
	opFrame           = 0x95
)

var errTruncated = errors.New("truncated")

// load runs the pickle to its STOP opcode and returns the object it built.
func (u *unpickler) load() (any, error) {
	if u.memo == nil {
		u.memo = map[int]any{}
	}
	for {
		start := u.pos
		op, err := u.byte1()
		if err != nil {
			return nil, errors.New("pickle: truncated (no STOP opcode)")
		}
		done, err := u.step(op)
		if err != nil {
			return nil, fmt.Errorf("pickle: at byte %d (opcode %s): %w", start, opName(op), err)
		}
		if done {
			if len(u.stack) != 1 || len(u.marks) != 0 {
				return nil, fmt.Errorf("pickle: STOP with %d objects and %d marks on the stack, want 1 and 0", len(u.stack), len(u.marks))
			}
			return u.stack[0], nil
		}
	}
}

func opName(op byte) string {
	if op >= 0x20 && op < 0x7f {
		return fmt.Sprintf("%q", rune(op))
	}
	return fmt.Sprintf("0x%02x", op)
}

func (u *unpickler) step(op byte) (done bool, err error) {
	switch op {
	case opProto:
		v, err := u.byte1()
		if err != nil {
			return false, err
		}
		if v > 5 {
			return false, fmt.Errorf("unsupported pickle protocol %d", v)
		}
	case opFrame:
		n, err := u.uint(8)
		if err != nil {
			return false, err
		}
		if n > uint64(len(u.data)-u.pos) {
			return false, fmt.Errorf("frame of %d bytes overruns the pickle", n)
		}
	case opStop:
		return true, nil
	case opMark:
		u.marks = append(u.marks, len(u.stack))
	case opEmptyDict:
		u.push(newDict())
	case opEmptyList:
		u.push(&list{})
	case opEmptyTuple:
		u.push(tuple{})
	case opTuple:
		items, err := u.popMark()
		if err != nil {
			return false, err
		}
		u.push(tuple(items))
	case opTuple1, opTuple2, opTuple3:
		n := int(op-opTuple1) + 1
		if u.avail() < n {
			return false, errors.New("stack underflow")
		}
		items := append(tuple(nil), u.stack[len(u.stack)-n:]...)
		u.stack = u.stack[:len(u.stack)-n]
		u.push(items)
	case opList:
		items, err := u.popMark()
		if err != nil {
			return false, err
		}
		u.push(&list{items: items})
	case opDict:
		items, err := u.popMark()
		if err != nil {
			return false, err
		}
		d := newDict()
		if err := setItems(d, items); err != nil {
			return false, err
		}
		u.push(d)
	case opAppend:
		v, err := u.pop()
		if err != nil {
			return false, err
		}
		return false, u.appendTop(v)
	case opAppends:
		items, err := u.popMark()
		if err != nil {
			return false, err
		}
		return false, u.appendTop(items...)
	case opSetitem:
		if u.avail() < 3 {
			return false, errors.New("stack underflow")
		}
		n := len(u.stack)
		d, ok := u.stack[n-3].(*dict)
		if !ok {
			return false, fmt.Errorf("SETITEM on %s, want dict", typeName(u.stack[n-3]))
		}
		if err := d.set(u.stack[n-2], u.stack[n-1]); err != nil {
			return false, err
		}
		u.stack = u.stack[:n-2]
	case opSetitems:
		items, err := u.popMark()
		if err != nil {
			return false, err
		}
		if u.avail() < 1 {
			return false, errors.New("stack underflow")
		}
		d, ok := u.stack[len(u.stack)-1].(*dict)
		if !ok {
			return false, fmt.Errorf("SETITEMS on %s, want dict", typeName(u.stack[len(u.stack)-1]))
		}
		if err := setItems(d, items); err != nil {
			return false, err
		}
	case opBinint:
		v, err := u.uint(4)
		if err != nil {
			return false, err
		}
		u.push(int64(int32(uint32(v))))
	case opBinint1, opBinint2:
		v, err := u.uint(argWidth[op])
		if err != nil {
			return false, err
		}
		u.push(int64(v))
	case opLong1, opLong4:
		b, err := u.counted(op)
		if err != nil {
			return false, err
		}
		v, err := decodeLong(b)
		if err != nil {
			return false, err
		}
		u.push(v)
	case opBinfloat:
		v, err := u.bytes(8)
		if err != nil {
			return false, err
		}
		u.push(math.Float64frombits(binary.BigEndian.Uint64(v)))
	case opNone:
		u.push(nil)
	case opNewtrue:
		u.push(true)
	case opNewfalse:
		u.push(false)
	case opBinunicode, opShortBinunicode, opBinunicode8, opShortBinstring, opBinstring:
		b, err := u.counted(op)
		if err != nil {
			return false, err
		}
		// torch.load decodes Python 2 byte strings as UTF-8 too.
		if !utf8.Valid(b) {
			return false, errors.New("string is not valid UTF-8")
		}
		u.push(string(b))
	case opBinbytes, opShortBinbytes, opBinbytes8:
		b, err := u.counted(op)
		if err != nil {
			return false, err
		}
		u.push(append([]byte(nil), b...))
	case opGlobal:
		module, err := u.line()
		if err != nil {
			return false, err
		}
		name, err := u.line()
		if err != nil {
			return false, err
		}
		if err := u.pushGlobal(module, name); err != nil {
			return false, err
		}
	case opStackGlobal:
		if u.avail() < 2 {
			return false, errors.New("stack underflow")
		}
		n := len(u.stack)
		module, ok1 := u.stack[n-2].(string)
		name, ok2 := u.stack[n-1].(string)
		if !ok1 || !ok2 {
			return false, errors.New("STACK_GLOBAL operands are not strings")
		}
		u.stack = u.stack[:n-2]
		if err := u.pushGlobal(module, name); err != nil {
			return false, err
		}
	case opReduce, opNewobj:
		if u.avail() < 2 {
			return false, errors.New("stack underflow")
		}
		n := len(u.stack)
		fn, ok := u.stack[n-2].(global)
		if !ok {
			return false, fmt.Errorf("call of %s, want a global", typeName(u.stack[n-2]))
		}
		args, ok := u.stack[n-1].(tuple)
		if !ok {
			return false, fmt.Errorf("call arguments are %s, want tuple", typeName(u.stack[n-1]))
		}
		u.stack = u.stack[:n-2]
		if op == opNewobj && fn != (global{"collections", "OrderedDict"}) {
			return false, fmt.Errorf("NEWOBJ of %s is not supported", fn)
		}
		v, err := u.call(fn, args)
		if err != nil {
			return false, fmt.Errorf("%s: %w", fn, err)
		}
		u.push(v)
	case opBuild:
		if u.avail() < 2 {
			return false, errors.New("stack underflow")
		}
		n := len(u.stack)
		target, state := u.stack[n-2], u.stack[n-1]
		u.stack = u.stack[:n-1]
		d, ok1 := target.(*dict)
		s, ok2 := state.(*dict)
		if !ok1 || !ok2 {
			return false, fmt.Errorf("BUILD of %s with %s state is not supported", typeName(target), typeName(state))
		}
		for i, k := range s.keys {
			if err := d.set(k, s.vals[i]); err != nil {
				return false, err
			}
		}
	case opBinput, opLongBinput, opMemoize:
		idx := uint64(len(u.memo))
		if op != opMemoize {
			idx, err = u.uint(argWidth[op])
		}
		if err != nil {
			return false, err
		}
		if u.avail() < 1 {
			return false, errors.New("stack underflow")
		}
		u.memo[int(idx)] = u.stack[len(u.stack)-1]
	case opBinget, opLongBinget:
		idx, err := u.uint(argWidth[op])
		if err != nil {
			return false, err
		}
		v, ok := u.memo[int(idx)]
		if !ok {
			return false, fmt.Errorf("memo key %d not found", idx)
		}
		u.push(v)
	case opBinpersid:
		pid, err := u.pop()
		if err != nil {
			return false, err
		}
		v, err := u.persistentLoad(pid)
		if err != nil {
			return false, err
		}
		u.push(v)
	case opPop:
		if u.avail() > 0 {
			u.stack = u.stack[:len(u.stack)-1]
		} else if _, err := u.popMark(); err != nil {
			return false, err
		}
	case opPopMark:
		if _, err := u.popMark(); err != nil {
			return false, err
		}
	case opDup:
		if u.avail() < 1 {
			return false, errors.New("stack underflow")
		}
		u.push(u.stack[len(u.stack)-1])
	default:
		return false, errors.New("unsupported opcode")
	}
	return false, nil
}

func (u *unpickler) pushGlobal(module, name string) error {
	if err := u.findClass(module, name); err != nil {
		return err
	}
	u.push(global{module, name})
	return nil
}

func setItems(d *dict, items []any) error {
	if len(items)%2 != 0 {
		return errors.New("odd number of dict items")
	}
	for i := 0; i < len(items); i += 2 {
		if err := d.set(items[i], items[i+1]); err != nil {
			return err
		}
	}
	return nil
}

// decodeLong decodes a LONG1/LONG4 little-endian two's-complement integer.
func decodeLong(b []byte) (int64, error) {
	if len(b) == 0 {
		return 0, nil
	}
	neg := b[len(b)-1]&0x80 != 0
	ext := byte(0)
	if neg {
		ext = 0xff
	}
	for len(b) > 8 {
		if b[len(b)-1] != ext {
			return 0, errors.New("integer does not fit in 64 bits")
		}
		b = b[:len(b)-1]
	}
	var v uint64
	for i := len(b) - 1; i >= 0; i-- {
		v = v<<8 | uint64(b[i])
	}
	if neg && len(b) < 8 {
		v |= ^uint64(0) << (8 * len(b))
	}
	r := int64(v)
	if (r < 0) != neg {
		return 0, errors.New("integer does not fit in 64 bits")
	}
	return r, nil
}

func (u *unpickler) push(v any) { u.stack = append(u.stack, v) }

// avail is the number of stack items above the innermost mark.
func (u *unpickler) avail() int {
	if len(u.marks) == 0 {
		return len(u.stack)
	}
	return len(u.stack) - u.marks[len(u.marks)-1]
}

func (u *unpickler) pop() (any, error) {
	if u.avail() < 1 {
		return nil, errors.New("stack underflow")
	}
	v := u.stack[len(u.stack)-1]
	u.stack = u.stack[:len(u.stack)-1]
	return v, nil
}

// popMark removes and returns the items above the innermost mark, and the mark.
func (u *unpickler) popMark() ([]any, error) {
	if len(u.marks) == 0 {
		return nil, errors.New("no MARK on the stack")
	}
	m := u.marks[len(u.marks)-1]
	u.marks = u.marks[:len(u.marks)-1]
	items := append([]any(nil), u.stack[m:]...)
	u.stack = u.stack[:m]
	return items, nil
}

// appendTop appends items to the list on top of the stack.
func (u *unpickler) appendTop(items ...any) error {
	if u.avail() < 1 {
		return errors.New("stack underflow")
	}
	l, ok := u.stack[len(u.stack)-1].(*list)
	if !ok {
		return fmt.Errorf("append to %s, want list", typeName(u.stack[len(u.stack)-1]))
	}
	l.items = append(l.items, items...)
	return nil
}

func (u *unpickler) byte1() (byte, error) {
	if u.pos >= len(u.data) {
		return 0, errTruncated
	}
	b := u.data[u.pos]
	u.pos++
	return b, nil
}

// bytes returns the next n bytes of the pickle (not copied).
func (u *unpickler) bytes(n uint64) ([]byte, error) {
	if n > uint64(len(u.data)-u.pos) {
		return nil, errTruncated
	}
	b := u.data[u.pos : u.pos+int(n)]
	u.pos += int(n)
	return b, nil
}

// uint reads an n-byte little-endian unsigned integer.
// argWidth is the byte width of the little-endian length or memo index
// that follows these opcodes.
var argWidth = map[byte]int{
	opBinint1: 1, opBinint2: 2, opLong1: 1, opLong4: 4,
	opShortBinunicode: 1, opShortBinstring: 1, opBinunicode: 4, opBinstring: 4, opBinunicode8: 8,
	opShortBinbytes: 1, opBinbytes: 4, opBinbytes8: 8,
	opBinput: 1, opLongBinput: 4, opBinget: 1, opLongBinget: 4,
}

// counted reads the payload of op, whose length comes first in
// argWidth[op] bytes.
func (u *unpickler) counted(op byte) ([]byte, error) {
	n, err := u.uint(argWidth[op])
	if err != nil {
		return nil, err
	}
	if op == opBinstring && int32(uint32(n)) < 0 {
		return nil, errors.New("negative BINSTRING length")
	}
	return u.bytes(n)
}

func (u *unpickler) uint(n int) (uint64, error) {
	b, err := u.bytes(uint64(n))
	if err != nil {
		return 0, err
	}
	var v uint64
	for i := n - 1; i >= 0; i-- {
		v = v<<8 | uint64(b[i])
	}
	return v, nil
}

// line reads a newline-terminated ASCII line (GLOBAL's operands).
func (u *unpickler) line() (string, error) {
	i := bytes.IndexByte(u.data[u.pos:min(len(u.data), u.pos+256)], '\n')
	if i < 0 {
		if len(u.data)-u.pos > 256 {
			return "", errors.New("GLOBAL name too long")
		}
		return "", errTruncated
	}
	s := string(u.data[u.pos : u.pos+i])
	u.pos += i + 1
	return s, nil
}

// typeName names a value's Python type for error messages.
func typeName(v any) string {
	switch v := v.(type) {
	case nil:
		return "None"
	case bool:
		return "bool"
	case int64:
		return "int"
	case float64:
		return "float"
	case string:
		return "str"
	case []byte:
		return "bytes"
	case tuple:
		return "tuple"
	case *list:
		return "list"
	case *dict:
		return "dict"
	case global:
		return v.String()
	case *storage:
		return "storage"
	case *tensor.Tensor:
		return "Tensor"
	}
	return fmt.Sprintf("%T", v)
}

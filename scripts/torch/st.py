"""Minimal safetensors reader/writer in pure Python + numpy.

Debian's python3-torch has no `safetensors` package, and the trainer must not
need one, so this module reads and writes the format itself, as tsdsr's Go
package does: F32, F16 and BF16 tensors (widened to float32 on read), the
optional "__metadata__" string map, names sorted, the header padded with
spaces to 8 bytes. BF16 is rounded to nearest even, NaNs kept quiet, bit for
bit as tsdsr's tensor.F32ToBF16, so a checkpoint written here and one written
by Go from the same float32 values are identical.

It also splits a checkpoint into shards of at most a given size (the lent
device returns files of at most 16 MiB) and merges them back.
"""

import json
import os
import struct
import tempfile

import numpy as np

_SIZES = {"F32": 4, "F16": 2, "BF16": 2}


def f32_to_bf16_bits(x):
    """Rounds float32 values to BF16 bit patterns (uint16), half to even."""
    b = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32)
    nan = (b & np.uint32(0x7FFFFFFF)) > np.uint32(0x7F800000)
    r = ((b + np.uint32(0x7FFF) + ((b >> np.uint32(16)) & np.uint32(1))) >> np.uint32(16)).astype(np.uint16)
    q = ((b >> np.uint32(16)).astype(np.uint16)) | np.uint16(0x0040)
    return np.where(nan, q, r)


def bf16_bits_to_f32(u):
    """Widens BF16 bit patterns (uint16) to float32 exactly."""
    return (np.asarray(u, dtype=np.uint16).astype(np.uint32) << np.uint32(16)).view(np.float32)


def round_bf16(x):
    """float32 values rounded to the nearest BF16 (as float32)."""
    return bf16_bits_to_f32(f32_to_bf16_bits(x)).reshape(np.shape(x))


class File:
    """A parsed safetensors file: metadata, and tensors as float32 numpy arrays on demand."""

    def __init__(self, path):
        self.path = path
        with open(path, "rb") as fh:
            raw = fh.read()
        if len(raw) < 8:
            raise ValueError(f"{path}: {len(raw)} bytes, shorter than the header length")
        (n,) = struct.unpack("<Q", raw[:8])
        if n > len(raw) - 8 or n > 100 << 20:
            raise ValueError(f"{path}: header length {n} exceeds the file")
        header = json.loads(raw[8 : 8 + n].decode("utf-8"))
        self.metadata = header.pop("__metadata__", None) or {}
        self._data = memoryview(raw)[8 + n :]
        self.infos = {}
        spans = []
        for name, e in header.items():
            dt = e["dtype"]
            if dt not in _SIZES:
                raise ValueError(f"{path}: tensor {name!r}: unsupported dtype {dt} (want F32, F16 or BF16)")
            shape = [int(s) for s in e["shape"]]
            b, end = e["data_offsets"]
            if end - b != int(np.prod(shape, dtype=np.int64)) * _SIZES[dt]:
                raise ValueError(f"{path}: tensor {name!r}: {end - b} bytes for shape {shape} {dt}")
            self.infos[name] = (dt, shape, b, end)
            spans.append((b, end, name))
        pos = 0
        for b, end, name in sorted(spans):
            if b != pos:
                raise ValueError(f"{path}: tensor {name!r} starts at {b}, previous ended at {pos}")
            pos = end
        if pos != len(self._data):
            raise ValueError(f"{path}: data section has {len(self._data)} bytes, tensors cover {pos}")

    def names(self):
        return sorted(self.infos)

    def tensor(self, name):
        """Tensor `name` as a float32 numpy array."""
        dt, shape, b, end = self.infos[name]
        buf = self._data[b:end]
        if dt == "F32":
            a = np.frombuffer(buf, dtype="<f4").astype(np.float32)
        elif dt == "F16":
            a = np.frombuffer(buf, dtype="<f2").astype(np.float32)
        else:
            a = bf16_bits_to_f32(np.frombuffer(buf, dtype="<u2"))
        return a.reshape(shape)

    def tensors(self):
        return {k: self.tensor(k) for k in self.names()}


def load(path):
    """(tensors as float32 numpy arrays, metadata) of a safetensors file."""
    f = File(path)
    return f.tensors(), f.metadata


def _encode(a, dtype):
    a = np.ascontiguousarray(a, dtype=np.float32)
    if dtype == "F32":
        return a.astype("<f4").tobytes()
    if dtype == "F16":
        return a.astype("<f2").tobytes()
    return f32_to_bf16_bits(a).astype("<u2").tobytes()


def save(path, tensors, metadata=None, dtype="F32"):
    """Writes tensors (name -> array-like, torch tensors included) atomically
    (temporary file in the same folder, then rename), in dtype, names sorted."""
    if dtype not in _SIZES:
        raise ValueError(f"cannot write dtype {dtype}")
    arrays = {}
    for k, v in tensors.items():
        if hasattr(v, "detach"):
            v = v.detach().float().cpu().numpy()
        arrays[k] = np.asarray(v, dtype=np.float32)
    names = sorted(arrays)
    header = {}
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in sorted(metadata.items())}
    pos = 0
    for k in names:
        end = pos + arrays[k].size * _SIZES[dtype]
        header[k] = {"dtype": dtype, "shape": list(arrays[k].shape), "data_offsets": [pos, end]}
        pos = end
    h = json.dumps(header, separators=(",", ":")).encode("utf-8")
    h += b" " * ((8 - len(h) % 8) % 8)
    d = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=d, prefix=".tmp-", suffix=".safetensors")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(struct.pack("<Q", len(h)))
            fh.write(h)
            for k in names:
                fh.write(_encode(arrays[k], dtype))
            fh.flush()
            os.fsync(fh.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp's 0600 would make shipped files private
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def split(path, max_bytes, out_prefix=None):
    """Splits a safetensors file into shards of at most max_bytes each
    (<prefix>-0000k-of-0000n.safetensors, every shard with the metadata) and
    returns their paths. A tensor larger than a shard is an error."""
    f = File(path)
    prefix = out_prefix or (path[: -len(".safetensors")] if path.endswith(".safetensors") else path)
    overhead = 8 + len(json.dumps(f.metadata)) + 4096
    groups, cur, size = [], [], overhead
    for k in f.names():
        dt, shape, b, end = f.infos[k]
        nb = end - b + 120 + len(k)
        if nb + overhead > max_bytes:
            raise ValueError(f"tensor {k} ({nb} bytes) does not fit a shard of {max_bytes}")
        if cur and size + nb > max_bytes:
            groups.append(cur)
            cur, size = [], overhead
        cur.append(k)
        size += nb
    if cur:
        groups.append(cur)
    paths = []
    for i, g in enumerate(groups):
        p = f"{prefix}-{i + 1:05d}-of-{len(groups):05d}.safetensors"
        dt = f.infos[g[0]][0]
        if any(f.infos[k][0] != dt for k in g):
            raise ValueError("mixed dtypes are not split")
        save(p, {k: f.tensor(k) for k in g}, f.metadata, dt)
        if os.path.getsize(p) > max_bytes:
            raise ValueError(f"shard {p} is {os.path.getsize(p)} bytes, over {max_bytes}")
        paths.append(p)
    return paths


def merge(paths, out, dtype=None):
    """Merges shards (as written by split) into one file; metadata of the first."""
    tensors, meta, dt = {}, None, dtype
    for p in paths:
        f = File(p)
        if meta is None:
            meta = f.metadata
        for k in f.names():
            if k in tensors:
                raise ValueError(f"tensor {k} in two shards")
            tensors[k] = f.tensor(k)
            dt = dt or f.infos[k][0]
    save(out, tensors, meta, dt or "F32")


if __name__ == "__main__":
    import argparse

    ap = argparse.ArgumentParser(description="split, merge or list safetensors files")
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("split", help="split FILE into shards of at most --max-mib MiB")
    s.add_argument("file")
    s.add_argument("--max-mib", type=float, default=16)
    m = sub.add_parser("merge", help="merge shards into OUT")
    m.add_argument("out")
    m.add_argument("shards", nargs="+")
    ls = sub.add_parser("ls", help="list tensors and metadata")
    ls.add_argument("file")
    a = ap.parse_args()
    if a.cmd == "split":
        for p in split(a.file, int(a.max_mib * (1 << 20))):
            print(p)
    elif a.cmd == "merge":
        merge(a.shards, a.out)
    else:
        f = File(a.file)
        for k in f.names():
            print(k, f.infos[k][0], f.infos[k][1])
        for k, v in f.metadata.items():
            print(f"# {k} = {v[:200]}")

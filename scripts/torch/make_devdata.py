#!/usr/bin/env python3
"""Builds devdata/: a compact JPEG subset of the training photos that travels to the lent GPU.

The device gets a copy of the working tree (under 64 MiB in all), so the data
must be small: one square crop per photo of ../shared/data/train (names
prefixed a_) and ../shared/data/train2 (prefixed b_), hold-out photos left
out (scripts/torch/holdout.txt, the campaign's list in the same a_/b_
naming), stored as JPEG. The crop side, quality and chroma subsampling are the
best rung of a ladder that fits the byte budget (default: 62 MiB minus what git would
copy of the tree); the trainer then takes random 256-pixel crops of them.

    python3 scripts/torch/make_devdata.py            # -> devdata/ (git-ignored; name it in `carry`)

Nothing outside devdata/ is written; a photo that fails to decode is
skipped and reported.
"""

import argparse
import io
import json
import os
import shutil
import subprocess
import sys

import numpy as np
from PIL import Image

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
SOURCES = [("a_", os.path.join(ROOT, "..", "shared", "data", "train")),
           ("b_", os.path.join(ROOT, "..", "shared", "data", "train2"))]
# (side, quality, chroma subsampling: 0 = 4:4:4 as the sources, 2 = 4:2:0), best first.
LADDER = [(384, 90, 0), (352, 90, 0), (320, 90, 0), (288, 90, 0), (256, 90, 0), (256, 85, 0),
          (256, 90, 2), (256, 85, 2), (256, 80, 2)]
EXTS = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff")
MIN_SIDE = 256  # the trainer's crop


def tree_bytes():
    """Bytes of the files the device copy takes: tracked plus untracked, not ignored."""
    out = subprocess.run(["git", "-C", ROOT, "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                         check=True, capture_output=True).stdout
    total = 0
    for p in out.split(b"\0"):
        fp = os.path.join(ROOT, p.decode())
        if p and os.path.isfile(fp) and not os.path.islink(fp):
            total += os.path.getsize(fp)
    return total


def crop_of(path, side, rs):
    im = Image.open(path)
    im = im.convert("RGB")
    w, h = im.size
    s = min(side, w, h)
    if s < MIN_SIDE:
        return None, None
    x0, y0 = int(rs.integers(0, w - s + 1)), int(rs.integers(0, h - s + 1))
    return im.crop((x0, y0, x0 + s, y0 + s)), (x0, y0, s)


def encode(img, quality, subsampling):
    b = io.BytesIO()
    img.save(b, "JPEG", quality=quality, subsampling=subsampling, optimize=True)
    return b.getvalue()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=os.path.join(ROOT, "devdata"))
    ap.add_argument("--budget-mib", type=float, default=0, help="bytes for devdata (0: 62 MiB minus the tree)")
    ap.add_argument("--holdout", default=os.path.join(HERE, "holdout.txt"), help="names (a_/b_ prefixed) to leave out")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    with open(a.holdout) as f:
        held = {l.strip() for l in f if l.strip()}
    photos = []
    for prefix, d in SOURCES:
        if not os.path.isdir(d):
            sys.exit(f"{d} is missing (../shared/data)")
        for n in sorted(os.listdir(d)):
            if n.lower().endswith(EXTS) and prefix + n not in held:
                photos.append((prefix + n, os.path.join(d, n)))
    budget = a.budget_mib * (1 << 20) if a.budget_mib > 0 else 62 * (1 << 20) - tree_bytes()
    print(f"{len(photos)} photos ({len(held)} held out); budget {budget / (1 << 20):.1f} MiB")
    if budget < 8 << 20:
        sys.exit(f"budget {budget / (1 << 20):.1f} MiB is under 8 MiB: the tree is too large; remove superseded "
                 "weights (git history and MODELS.md keep them) or give --budget-mib")
    # Pick the rung from a sample of 120 photos, with 3% margin, then encode all.
    rs0 = np.random.default_rng(a.seed)
    sample = [photos[i] for i in sorted(rs0.choice(len(photos), min(120, len(photos)), replace=False))]
    choice = LADDER[-1]
    for side, q, sub in LADDER:
        rs = np.random.default_rng(a.seed)
        sizes = [len(encode(c, q, sub)) for c, _ in (crop_of(p, side, rs) for _, p in sample) if c is not None]
        est = np.mean(sizes) * len(photos) * 1.03
        print(f"  {side} px q{q} {'4:2:0' if sub else '4:4:4'}: about {est / (1 << 20):.1f} MiB")
        if est <= budget:
            choice = (side, q, sub)
            break
    side, q, sub = choice
    tmp = a.out + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    rs = np.random.default_rng(a.seed + 1)
    manifest, total, skipped = [], 0, []
    for name, path in photos:
        try:
            c, box = crop_of(path, side, rs)
        except Exception as e:  # one bad file does not stop the build
            print(f"skipping {path}: {e}")
            skipped.append(name)
            continue
        if c is None:
            skipped.append(name)
            continue
        b = encode(c, q, sub)
        if total + len(b) > budget:
            skipped.append(name)
            continue
        out = os.path.splitext(name)[0] + ".jpg"
        with open(os.path.join(tmp, out), "wb") as f:
            f.write(b)
        total += len(b)
        manifest.append({"file": out, "source": os.path.relpath(path, ROOT), "x0": box[0], "y0": box[1], "side": box[2]})
    with open(os.path.join(tmp, "MANIFEST.json"), "w") as f:
        json.dump({"side": side, "quality": q, "subsampling": "4:2:0" if sub else "4:4:4", "seed": a.seed, "holdout": len(held),
                   "skipped": skipped, "crops": manifest}, f, indent=0)
    shutil.rmtree(a.out, ignore_errors=True)
    os.replace(tmp, a.out)
    print(f"wrote {len(manifest)} crops of {side} px (q{q}, {'4:2:0' if sub else '4:4:4'}) to {a.out}: {total / (1 << 20):.1f} MiB; "
          f"{len(skipped)} skipped (smaller than {MIN_SIDE} px, unreadable or over budget)")


if __name__ == "__main__":
    main()

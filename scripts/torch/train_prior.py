#!/usr/bin/env python3
"""Trains tsdsr's MMDiT prior by rectified flow in PyTorch (GPU, DDP), as `tsdsr train prior` does.

The recipe is train.TrainPrior's, step for step:
  x0 a batch of scaled TAESD3 latents (drawn uniformly with replacement),
  eps ~ N(0, I), index i = min(floor(sigmoid(logit_mean + logit_std z) 1000), 999),
  sigma = 3 s / (1 + 2 s) with s = (1000 - i)/1000 (SD3's schedule, shift 3),
  x_t = (1 - sigma) x0 + sigma eps, loss = MSE(v(x_t, 1000 sigma), eps - x0);
  AdamW (0.9, 0.999, eps 1e-8, decoupled weight decay on every weight),
  learning rate linear warm-up from 0 then half a cosine to 0 at --steps,
  gradient clipping to --clip (a non-finite gradient skips the update),
  EMA with diffusers' warm-up, decay min(--ema, (1+n)/(10+n)).
Only the random streams differ from the Go trainer's (torch generators here).

Data: a latent cache written by `tsdsr train prior` (--cache), or photo
folders (--data, repeatable) cropped and encoded with TAESD3 on the device at
start-up. The validation split and the validation loss's fixed noise are the
Go trainer's exactly (gorng), so on the same cache the "val" numbers of the
two trainers are one measurement.

Output in --out: ema.safetensors (EMA weights, BF16, config in the metadata)
and config.json, which `tsdsr sample prior --model OUT`, `tsdsr train distill
--prior OUT/ema.safetensors` and `tsdsr train prior --init` load as they are;
checkpoint.pt (full state, for --resume) and metrics.jsonl.

Multi-GPU: torchrun --nproc_per_node=G scripts/torch/train_prior.py ... (DDP;
--batch is the global batch, split over the ranks).
"""

import argparse
import json
import math
import os
import signal
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gorng  # noqa: E402
import mmdit  # noqa: E402
import st  # noqa: E402
import taesd  # noqa: E402

CACHE_FORMAT = "tsdsr-latents-v1"
SPLIT_SALT = 0x5EED5B1E  # latents.splitSalt
VAL_SEED = 0x7A1  # train.valSeed
TRAIN_STEPS, SHIFT = 1000, 3.0  # flow.SD3()


# ---------------------------------------------------------------- schedule, noise levels


def cosine_warmup(lr, warmup, total):
    """nn.CosineWarmup: step/warmup during warm-up (0 at step 0), then half a cosine to 0."""

    def f(step):
        if step < warmup:
            return lr * step / max(1, warmup)
        p = min(1.0, max(0.0, (step - warmup) / max(1, total - warmup)))
        return lr * 0.5 * (1 + math.cos(math.pi * p))

    return f


def sigmas_from_normals(z, mean, std):
    """flow.Schedule.LogitNormalIndex then Sigma, for standard normals z (float64 math, float32 result)."""
    z = z.double()
    u = 1 / (1 + torch.exp(-(mean + std * z)))
    i = torch.clamp((u * TRAIN_STEPS).floor(), max=TRAIN_STEPS - 1)
    s = (TRAIN_STEPS - i) / TRAIN_STEPS
    return (SHIFT * s / (1 + (SHIFT - 1) * s)).float()


def noised(x0, eps, sigma):
    """flow.Noise: (1 - sigma) x0 + sigma eps, per sample."""
    s = sigma.view(-1, *([1] * (x0.dim() - 1)))
    return x0 * (1 - s) + eps * s


# ---------------------------------------------------------------- EMA


class EMA:
    """nn.EMA with the trainer's warm-up: shadow = d shadow + (1-d) w, d = min(decay, (1+n)/(10+n))."""

    def __init__(self, named_params, decay):
        self.decay = decay
        self.names = [n for n, _ in named_params]
        self.params = [p for _, p in named_params]
        self.shadow = [p.detach().clone() for p in self.params]
        self.updates = 0

    @torch.no_grad()
    def update(self):
        d = np.float32(min(self.decay, (1 + self.updates) / (10 + self.updates)))
        one_minus = float(np.float32(1) - d)
        if hasattr(torch, "_foreach_mul_"):
            torch._foreach_mul_(self.shadow, float(d))
            torch._foreach_add_(self.shadow, self.params, alpha=one_minus)
        else:
            for s, p in zip(self.shadow, self.params):
                s.mul_(float(d)).add_(p, alpha=one_minus)
        self.updates += 1

    def state_dict(self):
        return {"decay": self.decay, "updates": self.updates, "shadow": dict(zip(self.names, self.shadow))}

    def load_state_dict(self, s):
        self.decay, self.updates = s["decay"], s["updates"]
        for n, t in zip(self.names, self.shadow):
            t.copy_(s["shadow"][n])

    def tensors(self):
        return dict(zip(self.names, self.shadow))


# ---------------------------------------------------------------- one step


def make_optimizer(model, lr, weight_decay):
    kw = {}
    if next(model.parameters()).is_cuda and torch.__version__ >= "2":
        kw["fused"] = True
    return torch.optim.AdamW(model.parameters(), lr=lr, betas=(0.9, 0.999), eps=1e-8,
                             weight_decay=weight_decay, **kw)


def flow_loss(fwd, x0, eps, sigma, autocast=None):
    """MSE(v(x_t, 1000 sigma), eps - x0) in float32."""
    xt = noised(x0, eps, sigma)
    t = sigma * np.float32(1000)
    if autocast is not None:
        with autocast():
            v = fwd(xt, t)
    else:
        v = fwd(xt, t)
    return F.mse_loss(v.float(), eps - x0)


def train_step(fwd, model, opt, ema, sched, step, x0, eps, sigma, clip, autocast=None):
    """One optimiser step at 0-based step `step` (train.TrainPrior's step
    function). Returns (loss, grad norm) as tensors and whether the update was
    skipped (non-finite gradient: the moments are left unpoisoned)."""
    loss = flow_loss(fwd, x0, eps, sigma, autocast)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    params = [p for p in model.parameters() if p.grad is not None]
    if clip > 0:
        norm = torch.nn.utils.clip_grad_norm_(params, clip)
    else:
        norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(p.grad) for p in params]))
    for g in opt.param_groups:
        g["lr"] = sched(step)
    # One device sync per step: the price of never applying a NaN update.
    if not bool(torch.isfinite(norm)):
        return loss.detach(), norm.detach(), True
    opt.step()
    if ema is not None:
        ema.update()
    return loss.detach(), norm.detach(), False


# ---------------------------------------------------------------- data


def split_by_photo(crop_photo, seed, val_fraction):
    """latents.Cache.Split: indices of training and held-out crops, holding out
    about val_fraction of the photos, chosen by tsdsr's generator."""
    used, seen = [], set()
    for p in crop_photo:
        if p not in seen:
            seen.add(p)
            used.append(p)
    k = int(val_fraction * len(used) + 0.5)
    if val_fraction > 0 and len(used) > 1:
        k = max(k, 1)
    k = min(k, len(used) - 1)
    held = {used[j] for j in gorng.Rand(seed ^ SPLIT_SALT).perm(len(used))[: max(k, 0)]}
    tr = [i for i, p in enumerate(crop_photo) if p not in held]
    va = [i for i, p in enumerate(crop_photo) if p in held]
    return tr, va


def load_cache(path):
    """A tsdsr latent cache: (raw latents float32 [M,16,s,s], crop_photo, photos, seed, crop)."""
    f = st.File(path)
    m = f.metadata
    if m.get("format") != CACHE_FORMAT:
        raise ValueError(f"{path} is not a tsdsr latent cache (format {m.get('format')!r})")
    lat = f.tensor("latents")
    crop_photo = json.loads(m["crop_photo"])
    if lat.ndim != 4 or lat.shape[0] != len(crop_photo) or lat.shape[1] != 16:
        raise ValueError(f"{path}: latents {lat.shape} for {len(crop_photo)} crops")
    return lat, crop_photo, json.loads(m["photos"]), int(m["seed"]), int(m["crop"]), m.get("source", "")


IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")


def list_photos(dirs):
    """Image files of the folders (by extension, sorted by name within each folder, as data.OpenDir)."""
    out = []
    for d in dirs:
        names = sorted(n for n in os.listdir(d) if n.lower().endswith(IMAGE_EXTS) and os.path.isfile(os.path.join(d, n)))
        out += [os.path.join(d, n) for n in names]
    if not out:
        raise ValueError(f"no images in {dirs}")
    return out


def load_photos(paths, crop, log=print):
    """Decodes the photos as uint8 HWC arrays; None for one smaller than crop
    on a side or unreadable (one bad file does not stop the run)."""
    try:
        from PIL import Image

        def decode(p):
            return np.asarray(Image.open(p).convert("RGB"))
    except ImportError:  # a PyTorch install without PIL usually has torchvision
        from torchvision.io import ImageReadMode, read_image

        def decode(p):
            return read_image(p, ImageReadMode.RGB).permute(1, 2, 0).numpy()

    out, skipped = [], []
    for p in paths:
        try:
            img = decode(p)
        except Exception as e:
            log(f"skipping {p}: {e}")
            img = None
        if img is not None and min(img.shape[:2]) < crop:
            img = None
        if img is None:
            skipped.append(os.path.basename(p))
        out.append(img)
    if all(i is None for i in out):
        raise ValueError(f"no photo is at least {crop} px on each side")
    return out, skipped


@torch.no_grad()
def encode_crops(enc, imgs, crop, per_photo, rs, device, batch=64):
    """per_photo random crop x crop squares (random left-right flips) of every
    photo, encoded with TAESD3 on the device: (raw latents [M, 16, crop/8,
    crop/8] float32, each crop's photo index). The same photos and per_photo
    give the same crop_photo, so a re-crop keeps the validation split."""
    chunks, crop_photo, pending = [], [], []

    def flush():
        x = torch.from_numpy(np.stack(pending)).to(device).permute(0, 3, 1, 2).float().div_(255)
        chunks.append(enc(x.contiguous()).float())
        pending.clear()

    for i, img in enumerate(imgs):
        if img is None:
            continue
        h, w = img.shape[:2]
        for _ in range(per_photo):
            y0, x0 = int(rs.integers(0, h - crop + 1)), int(rs.integers(0, w - crop + 1))
            c = img[y0 : y0 + crop, x0 : x0 + crop]
            if rs.integers(0, 2):
                c = c[:, ::-1]
            pending.append(np.ascontiguousarray(c))
            crop_photo.append(i)
            if len(pending) == batch:
                flush()
    if pending:
        flush()
    return torch.cat(chunks), crop_photo


def save_cache(path, raw, crop_photo, photos, skipped, source, crop, seed):
    """Writes a latent cache `tsdsr train prior --cache` reads (latents.Cache.Save's layout)."""
    meta = {"format": CACHE_FORMAT, "source": source, "crop": str(crop), "seed": str(seed),
            "count": str(len(crop_photo)), "photos": json.dumps(photos), "skipped": json.dumps(skipped),
            "crop_photo": json.dumps(crop_photo),
            "latents": "raw TAESD3 latents; multiply by 1.5305 (SD3's scaling factor) for the transformer"}
    st.save(path, {"latents": raw}, meta, "F16")


def validation_noise(val_shape, sigmas):
    """train.ValidationLoss's fixed noise: for sigma k, rng.New(valSeed).Child(k) FillNormal over the set."""
    n = int(np.prod(val_shape))
    return [gorng.Rand(VAL_SEED).child(k).fill_normal(n).reshape(val_shape) for k in range(len(sigmas))]


@torch.no_grad()
def validation_loss(fwd, val, noise, sigmas, batch, autocast=None):
    """train.ValidationLoss: per-sigma velocity MSE on val at the fixed noise, and their mean."""
    m, total = {}, 0.0
    for k, sg in enumerate(sigmas):
        s = 0.0
        for lo in range(0, val.shape[0], batch):
            x0 = val[lo : lo + batch]
            eps = noise[k][lo : lo + batch]
            sigma = torch.full((x0.shape[0],), sg, dtype=torch.float32, device=val.device)
            s += float(flow_loss(fwd, x0, eps, sigma, autocast)) * x0.shape[0]
        m[f"val_{sg:g}"] = s / val.shape[0]
        total += m[f"val_{sg:g}"]
    m["val"] = total / len(sigmas)
    return m


# ---------------------------------------------------------------- output


def write_prior(out, model_cfg, ema_tensors, meta):
    """ema.safetensors (BF16, config in the metadata) + config.json, written then renamed."""
    m = {"config": mmdit.metadata_config(model_cfg), "format": "pt", "model": "tsdsr-prior"}
    m.update({k: str(v) for k, v in meta.items()})
    st.save(os.path.join(out, "ema.safetensors"), ema_tensors, m, "BF16")
    tmp = os.path.join(out, ".config.json.tmp")
    with open(tmp, "w") as f:
        json.dump(mmdit.config_json(model_cfg), f, indent=2)
        f.write("\n")
    os.replace(tmp, os.path.join(out, "config.json"))


# ---------------------------------------------------------------- main


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True, help="run directory")
    ap.add_argument("--config", help="model config JSON (default: mmdit.Small(), tsdsr's built-in prior)")
    ap.add_argument("--init", help="start from these weights (safetensors) with a fresh optimiser")
    ap.add_argument("--cache", help="tsdsr latent cache (safetensors) to train on")
    ap.add_argument("--data", action="append", default=[], help="photo folder (repeatable) to crop and encode")
    ap.add_argument("--crop", type=int, default=256, help="crop side for --data (latents are crop/8)")
    ap.add_argument("--crops-per-photo", type=int, default=8)
    ap.add_argument("--recrop-every", type=int, default=0,
                    help="with --data: draw and encode new training crops every N steps (0: never)")
    ap.add_argument("--time-budget", type=float, default=0,
                    help="seconds of training: after warm-up, lower --steps to what the measured speed fits (the cosine ends on time)")
    ap.add_argument("--cache-out", help="also write the --data latents as a tsdsr latent cache here")
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--batch", type=int, default=8, help="latents per step, all ranks together")
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--warmup", type=int, default=100)
    ap.add_argument("--weight-decay", type=float, default=1e-4)
    ap.add_argument("--clip", type=float, default=1.0)
    ap.add_argument("--ema", type=float, default=0.999)
    ap.add_argument("--logit-mean", type=float, default=0.0)
    ap.add_argument("--logit-std", type=float, default=1.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--val-fraction", type=float, default=0.05)
    ap.add_argument("--val-n", type=int, default=64)
    ap.add_argument("--val-every", type=int, default=500)
    ap.add_argument("--save-every", type=int, default=500)
    ap.add_argument("--log-every", type=int, default=50)
    ap.add_argument("--time-limit", type=float, default=0, help="stop (and save) after this many seconds of training")
    ap.add_argument("--stop-after", type=int, default=0, help="stop (and save) after this many steps of this session")
    ap.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pt")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--no-bf16", action="store_true", help="float32 on CUDA (bf16 autocast is the default there)")
    ap.add_argument("--compile", action="store_true", help="torch.compile the model (PyTorch 2)")
    ap.add_argument("--threads", type=int, default=0, help="CPU threads (0: torch's default)")
    return ap.parse_args(argv)


RECIPE_KEYS = ["steps", "batch", "lr", "warmup", "weight_decay", "clip", "ema", "logit_mean", "logit_std",
               "recrop_every", "time_budget",
               "seed", "val_fraction", "val_n", "cache", "data", "crop", "crops_per_photo", "init"]


def main(argv=None):
    a = parse_args(argv)
    if a.steps <= 0 or a.batch <= 0 or a.lr <= 0:
        raise SystemExit("need positive --steps, --batch and --lr")
    if bool(a.cache) == bool(a.data):
        raise SystemExit("give exactly one of --cache and --data")
    if a.recrop_every and not a.data:
        raise SystemExit("--recrop-every needs --data")
    if a.threads > 0:
        torch.set_num_threads(a.threads)
    world, rank, local = int(os.environ.get("WORLD_SIZE", 1)), int(os.environ.get("RANK", 0)), int(os.environ.get("LOCAL_RANK", 0))
    device = torch.device(a.device)
    if world > 1:
        import torch.distributed as dist

        if device.type == "cuda":
            torch.cuda.set_device(local)
            device = torch.device("cuda", local)
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    if a.batch % world:
        raise SystemExit(f"--batch {a.batch} is not a multiple of the {world} ranks")
    main_rank = rank == 0

    def log(*x):
        if main_rank:
            print(*x, flush=True)

    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    os.makedirs(a.out, exist_ok=True)
    cfg = mmdit.load_config(a.config) if a.config else mmdit.small_config()
    ckpt_path = os.path.join(a.out, "checkpoint.pt")
    recipe = {k: getattr(a, k) for k in RECIPE_KEYS}
    recipe["model"] = cfg
    ckpt = None
    if a.resume:
        ckpt = torch.load(ckpt_path, map_location="cpu")
        if ckpt["recipe"] != recipe:
            diff = {k: (ckpt["recipe"].get(k), v) for k, v in recipe.items() if ckpt["recipe"].get(k) != v}
            raise SystemExit(f"--resume with a different recipe: {diff}")
    elif os.path.exists(ckpt_path):
        raise SystemExit(f"{ckpt_path} exists: give --resume to continue, or another --out")

    # Data: raw latents, their photos, the split.
    if a.cache:
        raw, crop_photo, photos, cseed, crop, source = load_cache(a.cache)
        raw = torch.from_numpy(raw).to(device)
    else:
        paths = list_photos(a.data)
        t0 = time.time()
        imgs, skipped = load_photos(paths, a.crop, log=log)
        enc = taesd.load_encoder().to(device)
        crop_rs = np.random.default_rng(a.seed)
        raw, crop_photo = encode_crops(enc, imgs, a.crop, a.crops_per_photo, crop_rs, device)
        log(f"encoded {len(crop_photo)} crops of {len(paths) - len(skipped)} photos in {time.time() - t0:.1f} s")
        photos, cseed, crop, source = [os.path.basename(p) for p in paths], a.seed, a.crop, ",".join(a.data)
        if a.cache_out and main_rank:
            save_cache(a.cache_out, raw.cpu().numpy(), crop_photo, photos, skipped, source, crop, cseed)
    s = raw.shape[2]
    if s % cfg["patch_size"] or s // cfg["patch_size"] > cfg["pos_embed_max_size"]:
        raise SystemExit(f"latents of {s} px do not fit patch {cfg['patch_size']} and grid {cfg['pos_embed_max_size']}")
    tr, va = split_by_photo(crop_photo, cseed, a.val_fraction)
    tr_idx = torch.tensor(tr, device=device)
    train_set = raw[tr_idx] * np.float32(taesd.LATENT_SCALE)
    val_set = raw[torch.tensor(va, device=device)][: a.val_n if a.val_n > 0 else None] * np.float32(taesd.LATENT_SCALE) if va else None
    del raw
    sigmas = [0.2, 0.5, 0.8]
    val_noise = None
    if val_set is not None and main_rank:
        t0 = time.time()
        val_noise = [torch.from_numpy(n).to(device) for n in validation_noise(tuple(val_set.shape), sigmas)]
        log(f"validation noise ({val_set.shape[0]} latents, tsdsr's generator) in {time.time() - t0:.1f} s")

    model = mmdit.MMDiT(cfg)
    if a.init and ckpt is None:
        f = st.File(a.init)
        mmdit.load_state(model, f.tensors())
    # The last block's context queries are never used (as in Go and diffusers): they get no
    # gradient, so neither AdamW (Go skips parameters without one) nor DDP may wait for one.
    for b in model.transformer_blocks:
        if b.pre_only:
            b.attn.add_q_proj.requires_grad_(False)
    model.to(device)
    n_params = sum(p.numel() for p in model.parameters())
    opt = make_optimizer(model, a.lr, a.weight_decay)
    ema = EMA(list(model.named_parameters()), a.ema) if a.ema > 0 else None
    step, gen_state = 0, None
    if ckpt is not None:
        model.load_state_dict(ckpt["model"])
        opt.load_state_dict(ckpt["optimizer"])
        if ema is not None:
            ema.load_state_dict({**ckpt["ema"], "shadow": {k: v.to(device) for k, v in ckpt["ema"]["shadow"].items()}})
        step, gen_state = ckpt["step"], ckpt["generator"][rank] if rank < len(ckpt["generator"]) else None
        if ckpt.get("recrop_state") is not None:
            # Rebuild the training crops of the last re-crop before this step.
            crop_rs.bit_generator.state = ckpt["recrop_state"]
            train_set = encode_crops(enc, imgs, a.crop, a.crops_per_photo, crop_rs, device)[0][tr_idx] * np.float32(taesd.LATENT_SCALE)
        log(f"resumed at step {step}")
    net = model
    if world > 1:
        net = torch.nn.parallel.DistributedDataParallel(model, device_ids=[local] if device.type == "cuda" else None)
    fwd = net
    if a.compile:
        if hasattr(torch, "compile"):
            fwd = torch.compile(net)
        else:
            log(f"torch {torch.__version__} has no torch.compile: running eagerly")
    autocast = None
    if device.type == "cuda" and not a.no_bf16:
        autocast = lambda: torch.autocast("cuda", dtype=torch.bfloat16)  # noqa: E731
    gen = torch.Generator(device=device)
    gen.manual_seed(a.seed * 1000003 + rank)
    if gen_state is not None:
        gen.set_state(gen_state)
    # The schedule's length: --steps, or what --time-budget fits (set once, after the first steps).
    total = {"steps": a.steps if ckpt is None else ckpt.get("total_steps", a.steps),
             "fixed": ckpt is not None and ckpt.get("total_fixed", False)}

    def sched(i):
        return cosine_warmup(a.lr, a.warmup, total["steps"])(i)

    recrop_state = None if ckpt is None else ckpt.get("recrop_state")
    per_rank = a.batch // world
    log(f"prior: {n_params} parameters, {train_set.shape[0]} training / {0 if val_set is None else val_set.shape[0]} "
        f"held-out latents of {s}x{s}, {per_rank} per step on each of {world} rank(s), {device}, "
        f"{'bf16 autocast' if autocast else 'float32'}{', compiled' if fwd is not net else ''}; "
        f"{mmdit.forward_flops(cfg, 1, s, s) * 3 / 1e9:.2f} GFLOP per training sample")

    stop = {"flag": False}

    def on_signal(sig, _):
        stop["flag"] = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    def gather_generators():
        st_ = gen.get_state()
        if world == 1:
            return [st_]
        import torch.distributed as dist

        out = [None] * world
        dist.all_gather_object(out, st_)
        return out

    def checkpoint():
        gens = gather_generators()
        if not main_rank:
            return
        tmp = ckpt_path + ".tmp"
        torch.save({"model": model.state_dict(), "optimizer": opt.state_dict(),
                    "ema": ema.state_dict() if ema else None, "step": step, "generator": gens,
                    "recipe": recipe, "total_steps": total["steps"], "total_fixed": total["fixed"],
                    "recrop_state": recrop_state}, tmp)
        os.replace(tmp, ckpt_path)
        weights = ema.tensors() if ema else dict(model.named_parameters())
        write_prior(a.out, cfg, weights, {"step": step, "ema_decay": a.ema, "ema_updates": ema.updates if ema else 0,
                                          "trainer": "scripts/torch/train_prior.py", "recipe": json.dumps(recipe)})

    def evaluate():
        if val_set is None or not main_rank:
            return
        if ema is not None:  # evaluate the EMA weights, the ones a prior ships with
            backup = [p.detach().clone() for p in ema.params]
            with torch.no_grad():
                for p, s_ in zip(ema.params, ema.shadow):
                    p.copy_(s_)
        model.eval()
        m = validation_loss(model, val_set, val_noise, sigmas, 64, autocast)
        model.train()
        if ema is not None:
            with torch.no_grad():
                for p, b in zip(ema.params, backup):
                    p.copy_(b)
        m.update(step=step, time_s=round(time.time() - t_start, 3))
        metrics.write(json.dumps(m) + "\n")
        metrics.flush()
        log(f"step {step}: validation {m['val']:.4f} (sigma 0.2/0.5/0.8: {m['val_0.2']:.4f} {m['val_0.5']:.4f} {m['val_0.8']:.4f})")

    metrics = open(os.path.join(a.out, "metrics.jsonl"), "a") if main_rank else None
    first_step = step
    t_start = time.time()
    t_log, seen_log = t_start, 0
    acc_loss, acc_norm, acc_n, skipped = 0.0, 0.0, 0, 0
    loss_sum = torch.zeros((), device=device)
    norm_sum = torch.zeros((), device=device)
    probe = (None, None)  # (step, time) where the speed measurement starts
    def agreed(local):
        """Under DDP every rank must stop (or fit the budget) at the same step: rank 0's value, or any rank's stop."""
        if world == 1:
            return local
        import torch.distributed as dist

        t = torch.tensor([float(local)], device=device)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return t.item()

    while step < total["steps"] and not agreed(stop["flag"]):
        if a.recrop_every and step > 0 and step % a.recrop_every == 0:
            recrop_state = crop_rs.bit_generator.state
            t0 = time.time()
            train_set = encode_crops(enc, imgs, a.crop, a.crops_per_photo, crop_rs, device)[0][tr_idx] * np.float32(taesd.LATENT_SCALE)
            log(f"step {step}: new training crops in {time.time() - t0:.1f} s")
        idx = torch.randint(0, train_set.shape[0], (per_rank,), device=device, generator=gen)
        x0 = train_set[idx]
        eps = torch.randn(x0.shape, device=device, generator=gen)
        z = torch.randn((per_rank,), device=device, generator=gen)
        sigma = sigmas_from_normals(z, a.logit_mean, a.logit_std)
        try:
            loss, norm, skip = train_step(fwd, model, opt, ema, sched, step, x0, eps, sigma, a.clip, autocast)
        except Exception as e:  # a compiler failure must not cost the run: fall back to eager
            if fwd is net or step != first_step:
                raise
            log(f"torch.compile failed ({type(e).__name__}: {str(e)[:300]}); running eagerly")
            fwd = net
            loss, norm, skip = train_step(fwd, model, opt, ema, sched, step, x0, eps, sigma, a.clip, autocast)
        step += 1
        if a.time_budget > 0 and not total["fixed"]:
            # Measure steps 20-60 of this session (after compilation), then
            # fit the schedule to the budget with 3% to spare.
            if step - first_step == 20:
                probe = (step, time.time())
            elif step - first_step == 60:
                rate = (step - probe[0]) / (time.time() - probe[1])
                left = a.time_budget - (time.time() - t_start)
                fit = max(step + 1, min(a.steps, step + int(0.97 * left * rate)))
                total["steps"] = int(agreed(fit if main_rank else 0))
                total["fixed"] = True
                log(f"{rate:.2f} steps/s: training {total['steps']} steps to fit {a.time_budget:.0f} s")
        loss_sum += loss
        norm_sum += norm
        acc_n += 1
        skipped += int(skip)
        if step % a.log_every == 0 or step == total["steps"]:
            if world > 1:  # the loss and norm of all ranks' samples
                import torch.distributed as dist

                dist.all_reduce(loss_sum)
                loss_sum /= world
            now = time.time()
            rate = (step - seen_log) * a.batch / max(now - t_log, 1e-9)
            row = {"step": step, "loss": float(loss_sum) / acc_n, "grad_norm": float(norm_sum) / acc_n,
                   "lr": sched(step - 1), "samples_per_s": rate, "time_s": round(now - t_start, 3)}
            if skipped:
                row["skipped"] = skipped
            if main_rank:
                metrics.write(json.dumps(row) + "\n")
                metrics.flush()
                log(f"step {step}/{total['steps']} loss {row['loss']:.4f} grad {row['grad_norm']:.3f} lr {row['lr']:.3g} "
                    f"{rate:.1f} samples/s")
            loss_sum.zero_()
            norm_sum.zero_()
            acc_n, skipped, t_log, seen_log = 0, 0, now, step
        if a.val_every > 0 and step % a.val_every == 0:
            evaluate()
        if a.save_every > 0 and step % a.save_every == 0:
            checkpoint()
        if a.stop_after > 0 and step - first_step >= a.stop_after:
            break
        if agreed(a.time_limit > 0 and time.time() - t_start > a.time_limit):
            log(f"time limit: stopping at step {step}")
            break
    if not (a.val_every > 0 and step % a.val_every == 0):
        evaluate()
    checkpoint()
    log(f"done: {step} steps in {time.time() - t_start:.0f} s; prior in {a.out}/ema.safetensors")
    if world > 1:
        import torch.distributed as dist

        dist.destroy_process_group()


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Writes the parity goldens that train/torch_parity_test.go checks from Go, on the CPU.

Run from the repository root with Debian's python3-torch (1.13) or any PyTorch:

    go test ./train -run TestTorchParity -update   # (re)writes the Go-written checkpoint go.safetensors
    python3 scripts/torch/golden.py                 # writes the rest of train/testdata/torch/
    go test ./train -run TestTorchParity            # checks them

Everything is float32 on the CPU with fixed inputs:
  init.safetensors     fixed random weights of a tiny config (BF16-exact values, config in the metadata)
  parity.safetensors   inputs and this script's outputs: velocities (learned prompt and explicit
                       context), the loss on a fixed batch, four training steps on fixed batches
                       (loss and gradient norm per step), sigmas of fixed normals, a TAESD3 encoding,
                       the velocity of the Go-written checkpoint and of the shipped student
  trained.safetensors  the float32 weights after the four steps
  cache.safetensors    a tiny latent cache in tsdsr's format (held-out split and validation loss recorded)
  prior/               what the trainer ships after them: ema.safetensors (BF16) + config.json
"""

import hashlib
import json
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mmdit  # noqa: E402
import st  # noqa: E402
import taesd  # noqa: E402
import train_prior as tp  # noqa: E402

ROOT = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
OUT = os.path.join(ROOT, "train", "testdata", "torch")
SHIPPED = os.path.join(ROOT, "models", "weights", "tsdsr-small-v2.safetensors")

# Two blocks (one full, the context-pre-only last one), joint/pooled widths unlike the hidden
# width (a transposed weight cannot pass), a position grid larger than the latent (centre crop).
TINY = dict(sample_size=8, patch_size=2, in_channels=16, num_layers=2, attention_head_dim=16,
            num_attention_heads=2, joint_attention_dim=24, caption_projection_dim=32,
            pooled_projection_dim=20, out_channels=16, pos_embed_max_size=8, context_tokens=3)
# The recipe of the four training steps: warm-up then cosine, clipping active, EMA warm-up.
RECIPE = dict(steps=4, warmup=1, lr=1e-2, weight_decay=0.1, clip=0.5, ema=0.999)
LOGIT = (0.3, 1.2)


def fixed_weights(model, seed):
    """Every parameter nonzero (adaLN and output included), BF16-exact, so both sides hold the same values."""
    rs = np.random.default_rng(seed)
    out = {}
    for k, v in model.state_dict().items():
        shape = tuple(v.shape)
        if k.endswith("bias"):
            a = rs.normal(0, 0.05, shape)
        elif k in ("prompt_embeds", "pooled_prompt_embeds"):
            a = rs.normal(0, 1, shape)
        else:
            a = rs.normal(0, 1 / np.sqrt(np.prod(shape[1:])), shape)
        out[k] = st.round_bf16(a.astype(np.float32))
    return out


def main():
    torch.set_num_threads(1)
    os.makedirs(os.path.join(OUT, "prior"), exist_ok=True)
    rs = np.random.default_rng(19)
    g = {}
    meta = {"torch": torch.__version__, "numpy": np.__version__, "tiny_config": mmdit.metadata_config(TINY)}

    model = mmdit.MMDiT(TINY)
    w0 = fixed_weights(model, 1)
    mmdit.load_state(model, w0)
    st.save(os.path.join(OUT, "init.safetensors"), w0, {"config": mmdit.metadata_config(TINY)}, "BF16")

    def f32(*shape, std=1.0):
        return rs.normal(0, std, shape).astype(np.float32)

    with torch.no_grad():
        # Velocity with the learned prompt, non-square latent (4 x 3 patches).
        g["x"], g["t"] = f32(2, 16, 8, 6), np.array([37.5, 912.25], np.float32)
        g["v"] = model(torch.from_numpy(g["x"]), torch.from_numpy(g["t"])).numpy()
        # Forward with an explicit per-sample prompt.
        g["ctx"], g["pooled"] = f32(2, 3, 24), f32(2, 20)
        g["v_ctx"] = model(torch.from_numpy(g["x"]), torch.from_numpy(g["t"]),
                           torch.from_numpy(g["ctx"]), torch.from_numpy(g["pooled"])).numpy()
        # The loss on a fixed batch.
        g["x0"], g["eps"] = f32(3, 16, 8, 8), f32(3, 16, 8, 8)
        g["sigma"] = np.array([0.05, 0.5, 0.97], np.float32)
        meta["loss"] = repr(float(tp.flow_loss(model, *(torch.from_numpy(g[k]) for k in ("x0", "eps", "sigma")))))

    # Noise levels of fixed normals: logit-normal index through SD3's shift-3 schedule.
    g["z"] = np.concatenate([f32(30), np.array([-12, 12, 0], np.float32)])
    g["z_sigma"] = tp.sigmas_from_normals(torch.from_numpy(g["z"]), *LOGIT).numpy()
    meta["logit_mean"], meta["logit_std"] = repr(LOGIT[0]), repr(LOGIT[1])

    # Four training steps on fixed batches, then the shipped EMA.
    K, B = RECIPE["steps"], 3
    g["train_x0"], g["train_eps"] = f32(K, B, 16, 8, 8), f32(K, B, 16, 8, 8)
    g["train_sigma"] = tp.sigmas_from_normals(torch.from_numpy(f32(K * B)), 0.0, 1.0).numpy().reshape(K, B)
    opt = tp.make_optimizer(model, RECIPE["lr"], RECIPE["weight_decay"])
    ema = tp.EMA(list(model.named_parameters()), RECIPE["ema"])
    sched = tp.cosine_warmup(RECIPE["lr"], RECIPE["warmup"], K)
    losses, norms = [], []
    for s in range(K):
        loss, norm, skipped = tp.train_step(model, model, opt, ema, sched, s, *(
            torch.from_numpy(g[k][s]) for k in ("train_x0", "train_eps", "train_sigma")), RECIPE["clip"])
        assert not skipped
        losses.append(float(loss))
        norms.append(float(norm))
    meta["train_loss"], meta["train_grad_norm"] = json.dumps(losses), json.dumps(norms)
    meta["recipe"] = json.dumps(RECIPE)
    st.save(os.path.join(OUT, "trained.safetensors"), dict(model.named_parameters()), None, "F32")
    tp.write_prior(os.path.join(OUT, "prior"), TINY, ema.tensors(),
                   {"step": K, "ema_decay": RECIPE["ema"], "ema_updates": ema.updates,
                    "trainer": "scripts/torch/golden.py"})

    # TAESD3's encoder (the embedded weights) on a fixed 16 x 16 image.
    enc = taesd.load_encoder()
    g["img"] = rs.uniform(0, 1, (1, 3, 16, 16)).astype(np.float32)
    with torch.no_grad():
        g["img_latent"] = enc(torch.from_numpy(g["img"])).numpy()

    # A latent cache in tsdsr's format: the held-out photos and the validation
    # loss (fixed noise from tsdsr's generator) must be the Go trainer's.
    raw = st.round_bf16(f32(10, 16, 8, 8))  # any F16-exact values
    crop_photo = [0, 0, 1, 1, 2, 2, 3, 3, 4, 4]
    tp.save_cache(os.path.join(OUT, "cache.safetensors"), raw, crop_photo, [f"p{i}.jpg" for i in range(5)], [],
                  "golden", 64, 7)
    lat, cp, _, cseed, _, _ = tp.load_cache(os.path.join(OUT, "cache.safetensors"))
    tr, va = tp.split_by_photo(cp, cseed, 0.4)
    val = torch.from_numpy(lat[va] * np.float32(taesd.LATENT_SCALE))
    vm = mmdit.MMDiT(TINY)
    mmdit.load_state(vm, w0)
    sig = [0.2, 0.5, 0.8]
    noise = [torch.from_numpy(n) for n in tp.validation_noise(tuple(val.shape), sig)]
    meta["cache_val_fraction"] = "0.4"
    meta["cache_val_crops"] = json.dumps(va)
    meta["cache_val_loss"] = json.dumps(tp.validation_loss(vm, val, noise, sig, 8))

    # A checkpoint Go wrote (mmdit.Save, BF16, config in the metadata) read here.
    go = os.path.join(OUT, "go.safetensors")
    if not os.path.exists(go):
        raise SystemExit(f"{go} is missing: run `go test ./train -run TestTorchParity -update` first")
    gm = mmdit.load_checkpoint(go)
    g["go_x"], g["go_t"] = f32(2, 16, 4, 4), np.array([999.0, 1.0], np.float32)
    with torch.no_grad():
        g["go_v"] = gm(torch.from_numpy(g["go_x"]), torch.from_numpy(g["go_t"])).numpy()
    with open(go, "rb") as f:
        meta["go_sha256"] = hashlib.sha256(f.read()).hexdigest()

    # The shipped student (a Go-written file of real size), when present.
    if os.path.exists(SHIPPED):
        sm = mmdit.load_checkpoint(SHIPPED)
        g["ship_x"], g["ship_t"] = f32(1, 16, 8, 8), np.array([1000 * 0.3], np.float32)
        with torch.no_grad():
            g["ship_v"] = sm(torch.from_numpy(g["ship_x"]), torch.from_numpy(g["ship_t"])).numpy()
        with open(SHIPPED, "rb") as f:
            meta["ship_sha256"] = hashlib.sha256(f.read()).hexdigest()

    st.save(os.path.join(OUT, "parity.safetensors"), g, meta, "F32")
    total = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(OUT) for f in fs)
    print(f"wrote {OUT}: {total} bytes; loss {meta['loss']}, train losses {losses}")


if __name__ == "__main__":
    main()

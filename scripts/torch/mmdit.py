"""SD3's MMDiT exactly as tsdsr's model/mmdit computes it, in PyTorch.

Module attribute names are diffusers' SD3Transformer2DModel ones, so
state_dict() keys are the Go model's parameter names and a checkpoint moves
between the two without conversion (the learned prompt "prompt_embeds" and
"pooled_prompt_embeds" are tsdsr's own, present when context_tokens > 0).
The position table and the timestep frequencies are computed as the Go code
computes them (float64, rounded to float32) and kept as non-persistent
buffers, so they are not in the state dict, as in Go.

Works with PyTorch 1.13 (Debian, CPU, for the parity goldens) and 2.x (CUDA:
fused scaled_dot_product_attention when present).
"""

import json
import math

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

NORM_EPS = 1e-6  # every LayerNorm of SD3's transformer
TIME_DIM = 256  # sinusoidal timestep features

# The config keys of model/mmdit.Config (diffusers' config.json + context_tokens).
CONFIG_KEYS = ["sample_size", "patch_size", "in_channels", "num_layers", "attention_head_dim",
               "num_attention_heads", "joint_attention_dim", "caption_projection_dim",
               "pooled_projection_dim", "out_channels", "pos_embed_max_size", "context_tokens"]


def small_config():
    """mmdit.Small(): tsdsr's default prior."""
    return dict(sample_size=32, patch_size=2, in_channels=16, num_layers=8, attention_head_dim=64,
                num_attention_heads=4, joint_attention_dim=256, caption_projection_dim=256,
                pooled_projection_dim=256, out_channels=16, pos_embed_max_size=96, context_tokens=8)


def validate(cfg):
    """The checks of mmdit.Config.Validate."""
    for k in CONFIG_KEYS:
        if k != "context_tokens" and k != "caption_projection_dim" and int(cfg.get(k, 0)) <= 0:
            raise ValueError(f"mmdit: config {k} = {cfg.get(k, 0)}, must be positive")
    d = cfg["num_attention_heads"] * cfg["attention_head_dim"]
    if cfg["caption_projection_dim"] != d:
        raise ValueError(f"mmdit: caption_projection_dim {cfg['caption_projection_dim']} must equal heads x head dim = {d}")
    if cfg["sample_size"] % cfg["patch_size"] or cfg["sample_size"] // cfg["patch_size"] > cfg["pos_embed_max_size"]:
        raise ValueError("mmdit: sample_size does not fit patch size and position grid")
    if d % 4:
        raise ValueError(f"mmdit: hidden size {d} must be a multiple of 4")
    if cfg.get("context_tokens", 0) < 0:
        raise ValueError("mmdit: context_tokens < 0")


def load_config(path):
    """Reads a config.json (unknown keys such as _class_name ignored)."""
    with open(path) as f:
        raw = json.load(f)
    cfg = {k: int(raw.get(k, 0)) for k in CONFIG_KEYS}
    validate(cfg)
    return cfg


def config_json(cfg):
    """The config.json tsdsr writes for a prior (diffusers class name + keys;
    context_tokens omitted when 0, as Go's omitempty does)."""
    out = {"_class_name": "SD3Transformer2DModel"}
    for k in CONFIG_KEYS:
        if k == "context_tokens" and not cfg.get(k):
            continue
        out[k] = int(cfg[k])
    return out


def metadata_config(cfg):
    """The JSON Go's json.Marshal(mmdit.Config) writes into a checkpoint's "config" metadata."""
    return json.dumps({k: int(cfg[k]) for k in CONFIG_KEYS if k != "context_tokens" or cfg.get(k)},
                      separators=(",", ":"))


def forward_flops(cfg, n, h, w):
    """mmdit.Config.ForwardFLOPs: 2 x multiply-adds of one forward on n latents of h x w."""
    d = cfg["num_attention_heads"] * cfg["attention_head_dim"]
    p = cfg["patch_size"]
    li = (h // p) * (w // p)
    lc = cfg.get("context_tokens", 0)
    f = 2 * n * li * cfg["in_channels"] * p * p * d
    f += 2 * n * (256 * d + d * d + cfg["pooled_projection_dim"] * d + d * d)
    f += 2 * lc * cfg["joint_attention_dim"] * d
    for i in range(cfg["num_layers"]):
        last = i == cfg["num_layers"] - 1
        f += 2 * n * d * 6 * d
        f += 2 * n * d * (2 if last else 6) * d
        f += 2 * n * (li + lc) * 3 * d * d
        f += 4 * n * (li + lc) * (li + lc) * d
        f += 2 * n * li * (d * d + 8 * d * d)
        if not last:
            f += 2 * n * lc * (d * d + 8 * d * d)
    f += 2 * n * d * 2 * d
    f += 2 * n * li * d * p * p * cfg["out_channels"]
    return float(f)


def pos_table(dim, grid, base):
    """diffusers' get_2d_sincos_pos_embed as Go's posTable computes it: [grid*grid, dim]."""
    quarter = dim // 4
    k = np.arange(quarter, dtype=np.float64)
    wk = 1.0 / np.power(10000.0, k / quarter)
    step = grid / base
    pos = np.arange(grid, dtype=np.float64) / step

    def enc(p):  # [grid, dim/2]
        a = p[:, None] * wk[None, :]
        return np.concatenate([np.sin(a), np.cos(a)], axis=1)

    ex, ey = enc(pos), enc(pos)
    tab = np.zeros((grid, grid, dim), dtype=np.float64)
    tab[:, :, : dim // 2] = ex[None, :, :]  # column j
    tab[:, :, dim // 2 :] = ey[:, None, :]  # row i
    return tab.reshape(grid * grid, dim).astype(np.float32)


def time_freqs():
    """Go's timestepEmbedding frequencies: float32(exp(float32(-ln(1e4) k) / 128))."""
    half = TIME_DIM // 2
    e = (-math.log(10000) * np.arange(half, dtype=np.float64)).astype(np.float32) / np.float32(half)
    return np.exp(e.astype(np.float64)).astype(np.float32)


class _Linear(nn.Module):
    """A parameter-less holder of .linear (diffusers' AdaLayerNorm* naming)."""

    def __init__(self, i, o):
        super().__init__()
        self.linear = nn.Linear(i, o)


class _Proj(nn.Module):
    def __init__(self, i, o):
        super().__init__()
        self.proj = nn.Linear(i, o)


class FeedForward(nn.Module):
    """diffusers' FeedForward with gelu-approximate: net.0.proj, (dropout), net.2."""

    def __init__(self, d):
        super().__init__()
        self.net = nn.ModuleList([_Proj(d, 4 * d), nn.Identity(), nn.Linear(4 * d, d)])

    def forward(self, x):
        return self.net[2](F.gelu(self.net[0].proj(x), approximate="tanh"))


class Attention(nn.Module):
    def __init__(self, d, heads, pre_only):
        super().__init__()
        self.heads = heads
        self.to_q, self.to_k, self.to_v = nn.Linear(d, d), nn.Linear(d, d), nn.Linear(d, d)
        self.add_q_proj, self.add_k_proj, self.add_v_proj = nn.Linear(d, d), nn.Linear(d, d), nn.Linear(d, d)
        self.to_out = nn.ModuleList([nn.Linear(d, d)])
        if not pre_only:
            self.to_add_out = nn.Linear(d, d)


def attention(q, k, v, heads):
    """Softmax attention of q [N, Lq, D] over k, v [N, Lk, D], heads split from D."""
    n, lq, d = q.shape
    lk = k.shape[1]
    dh = d // heads
    q = q.view(n, lq, heads, dh).transpose(1, 2)
    k = k.view(n, lk, heads, dh).transpose(1, 2)
    v = v.view(n, lk, heads, dh).transpose(1, 2)
    if hasattr(F, "scaled_dot_product_attention") and q.is_cuda:
        o = F.scaled_dot_product_attention(q, k, v)
    else:
        s = torch.matmul(q, k.transpose(-1, -2)) * (1.0 / math.sqrt(dh))
        o = torch.matmul(torch.softmax(s, dim=-1), v)
    return o.transpose(1, 2).reshape(n, lq, d)


def _ln(x):
    return F.layer_norm(x, (x.shape[-1],), eps=NORM_EPS)


def _modulate(x, shift, scale):
    return x * (1 + scale[:, None, :]) + shift[:, None, :]


class JointBlock(nn.Module):
    """JointTransformerBlock; the last one is context-pre-only."""

    def __init__(self, d, heads, pre_only):
        super().__init__()
        self.pre_only = pre_only
        self.norm1 = _Linear(d, 6 * d)
        self.norm1_context = _Linear(d, (2 if pre_only else 6) * d)
        self.attn = Attention(d, heads, pre_only)
        self.ff = FeedForward(d)
        if not pre_only:
            self.ff_context = FeedForward(d)

    def forward(self, x, ctx, sc):
        li = x.shape[1]
        mi = self.norm1.linear(sc).chunk(6, dim=1)
        nx = _modulate(_ln(x), mi[0], mi[1])
        a = self.attn
        if self.pre_only:
            mc = self.norm1_context.linear(sc).chunk(2, dim=1)  # scale, shift
            nc = _modulate(_ln(ctx), mc[1], mc[0])
        else:
            mc = self.norm1_context.linear(sc).chunk(6, dim=1)
            nc = _modulate(_ln(ctx), mc[0], mc[1])
        k = torch.cat([a.to_k(nx), a.add_k_proj(nc)], dim=1)
        v = torch.cat([a.to_v(nx), a.add_v_proj(nc)], dim=1)
        if self.pre_only:
            ax = attention(a.to_q(nx), k, v, a.heads)
        else:
            q = torch.cat([a.to_q(nx), a.add_q_proj(nc)], dim=1)
            o = attention(q, k, v, a.heads)
            ax, ac = o[:, :li], o[:, li:]
        x = x + mi[2][:, None, :] * a.to_out[0](ax)
        x = x + mi[5][:, None, :] * self.ff(_modulate(_ln(x), mi[3], mi[4]))
        if self.pre_only:
            return x, ctx
        ctx = ctx + mc[2][:, None, :] * a.to_add_out(ac)
        ctx = ctx + mc[5][:, None, :] * self.ff_context(_modulate(_ln(ctx), mc[3], mc[4]))
        return x, ctx


class _TimeText(nn.Module):
    def __init__(self, d, pooled):
        super().__init__()
        self.timestep_embedder = nn.Module()
        self.timestep_embedder.linear_1 = nn.Linear(TIME_DIM, d)
        self.timestep_embedder.linear_2 = nn.Linear(d, d)
        self.text_embedder = nn.Module()
        self.text_embedder.linear_1 = nn.Linear(pooled, d)
        self.text_embedder.linear_2 = nn.Linear(d, d)


class MMDiT(nn.Module):
    """The transformer: velocity(x [N, C, H, W], t [N] = 1000 sigma) -> [N, C, H, W]."""

    def __init__(self, cfg):
        super().__init__()
        validate(cfg)
        self.cfg = dict(cfg)
        d = cfg["num_attention_heads"] * cfg["attention_head_dim"]
        p = cfg["patch_size"]
        self.hidden = d
        self.pos_embed = nn.Module()
        self.pos_embed.proj = nn.Conv2d(cfg["in_channels"], d, p, stride=p)
        self.time_text_embed = _TimeText(d, cfg["pooled_projection_dim"])
        self.context_embedder = nn.Linear(cfg["joint_attention_dim"], cfg["caption_projection_dim"])
        n = cfg["num_layers"]
        self.transformer_blocks = nn.ModuleList(
            [JointBlock(d, cfg["num_attention_heads"], i == n - 1) for i in range(n)])
        self.norm_out = _Linear(d, 2 * d)
        self.proj_out = nn.Linear(d, p * p * cfg["out_channels"])
        L = cfg.get("context_tokens", 0)
        if L > 0:
            self.prompt_embeds = nn.Parameter(torch.zeros(1, L, cfg["joint_attention_dim"]))
            self.pooled_prompt_embeds = nn.Parameter(torch.zeros(1, cfg["pooled_projection_dim"]))
        else:
            self.prompt_embeds = self.pooled_prompt_embeds = None
        g = cfg["pos_embed_max_size"]
        tab = pos_table(d, g, cfg["sample_size"] // p)
        self.register_buffer("pos_table", torch.from_numpy(tab).view(g, g, d), persistent=False)
        self.register_buffer("time_freqs", torch.from_numpy(time_freqs()), persistent=False)
        self.init_dit()

    @torch.no_grad()
    def init_dit(self, seed=0):
        """DiT's initialisation: adaLN modulation and the output projection at
        zero (the untrained net predicts zero velocity), other linears
        PyTorch's default, the learned prompt N(0, 1). Go draws from its own
        generator, so the values differ from a Go-initialised model; loading
        a checkpoint overwrites all of them."""
        gen = torch.Generator().manual_seed(seed)
        for m in self.modules():
            if isinstance(m, (nn.Linear, nn.Conv2d)):
                fan_in = m.weight[0].numel()
                bound = 1 / math.sqrt(fan_in)
                m.weight.copy_(torch.empty_like(m.weight).uniform_(-bound, bound, generator=gen))
                m.bias.copy_(torch.empty_like(m.bias).uniform_(-bound, bound, generator=gen))
        zero = [b.norm1.linear for b in self.transformer_blocks] + [b.norm1_context.linear for b in self.transformer_blocks]
        for l in zero + [self.norm_out.linear, self.proj_out]:
            l.weight.zero_()
            l.bias.zero_()
        if self.prompt_embeds is not None:
            self.prompt_embeds.copy_(torch.randn(self.prompt_embeds.shape, generator=gen))
            self.pooled_prompt_embeds.copy_(torch.randn(self.pooled_prompt_embeds.shape, generator=gen))

    def timestep_embedding(self, t):
        """[cos(t f), sin(t f)]: the product in float32, cos/sin in float64, as Go does."""
        a = (t.float()[:, None] * self.time_freqs[None, :]).double()
        return torch.cat([torch.cos(a), torch.sin(a)], dim=1).float()

    def positions(self, h, w):
        g = self.cfg["pos_embed_max_size"]
        top, left = (g - h) // 2, (g - w) // 2
        return self.pos_table[top : top + h, left : left + w].reshape(1, h * w, self.hidden)

    def forward(self, x, t, context=None, pooled=None):
        cfg, d = self.cfg, self.hidden
        p = cfg["patch_size"]
        n, _, H, W = x.shape
        h, w = H // p, W // p
        if context is None:
            if self.prompt_embeds is None:
                raise ValueError("mmdit: model has no learned prompt (context_tokens = 0)")
            context, pooled = self.prompt_embeds, self.pooled_prompt_embeds
        tok = self.pos_embed.proj(x).flatten(2).transpose(1, 2)  # [N, hw, D]
        tok = tok + self.positions(h, w).to(tok.dtype)
        te = self.time_text_embed
        temb = self.timestep_embedding(t)
        c = te.timestep_embedder.linear_2(F.silu(te.timestep_embedder.linear_1(temb)))
        c = c + te.text_embedder.linear_2(F.silu(te.text_embedder.linear_1(pooled)))
        ctx = self.context_embedder(context)
        if ctx.shape[0] == 1 and n > 1:
            ctx = ctx.expand(n, -1, -1)
        sc = F.silu(c)
        for b in self.transformer_blocks:
            tok, ctx = b(tok, ctx, sc)
        scale, shift = self.norm_out.linear(sc).chunk(2, dim=1)
        tok = _modulate(_ln(tok), shift, scale)
        out = self.proj_out(tok)  # [N, hw, p*p*C]
        c_out = cfg["out_channels"]
        out = out.view(n, h, w, p, p, c_out).permute(0, 5, 1, 3, 2, 4)
        return out.reshape(n, c_out, H, W)


def load_state(model, tensors, strict=True):
    """Copies name -> numpy array into the model, strictly by default:
    missing, unexpected or mis-shaped tensors are an error naming them."""
    own = model.state_dict()
    missing = sorted(set(own) - set(tensors))
    unexpected = sorted(set(tensors) - set(own))
    bad = [k for k in own if k in tensors and tuple(own[k].shape) != tuple(np.shape(tensors[k]))]
    if bad or (strict and (missing or unexpected)):
        raise ValueError(f"mmdit: checkpoint does not match the model: missing {missing[:8]}, "
                         f"unexpected {unexpected[:8]}, mis-shaped {bad[:8]}")
    with torch.no_grad():
        for k, v in own.items():
            if k in tensors:
                v.copy_(torch.from_numpy(np.ascontiguousarray(tensors[k], dtype=np.float32)))
    return missing, unexpected


def load_checkpoint(path, config_path=None):
    """A model from a tsdsr/diffusers safetensors file: its config from the
    "config" metadata, else from config_path (or config.json beside it)."""
    import os

    import st

    f = st.File(path)
    if "config" in f.metadata:
        raw = json.loads(f.metadata["config"])
        cfg = {k: int(raw.get(k, 0)) for k in CONFIG_KEYS}
        validate(cfg)
    else:
        cfg = load_config(config_path or os.path.join(os.path.dirname(path), "config.json"))
    m = MMDiT(cfg)
    load_state(m, f.tensors())
    return m

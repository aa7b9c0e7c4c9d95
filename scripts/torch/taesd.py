"""TAESD3's encoder (Ollin Boer Bohan, MIT) in PyTorch, as model/taesd builds it.

Layout "cbdbbbdbbbdbbbc" (conv(3,64), Block, [conv stride 2 without bias,
Block x3] x3, conv(64,16)); a Block is ReLU(conv-ReLU-conv-ReLU-conv(x) + x).
Parameter names are the nn.Sequential indices of the released safetensors
("0.weight", "1.conv.0.weight", ...), so the weights the Go binary embeds,
model/taesd/weights/taesd3_encoder.safetensors, load as they are. Images are
NCHW in [0, 1]; latents are raw SD3 latents (multiply by LATENT_SCALE for the
transformer, as tsdsr does; no shift).
"""

import os

import torch
import torch.nn as nn
import torch.nn.functional as F

import st

LATENT_SCALE = 1.5305
FACTOR = 8
ENCODER_LAYOUT = "cbdbbbdbbbdbbbc"
_HERE = os.path.dirname(os.path.abspath(__file__))
# The copy the Go binary embeds (go:embed in model/taesd), which travels with the tree.
EMBEDDED_ENCODER = os.path.join(_HERE, "..", "..", "model", "taesd", "weights", "taesd3_encoder.safetensors")


class Block(nn.Module):
    def __init__(self, cin, cout):
        super().__init__()
        self.conv = nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), nn.ReLU(),
                                  nn.Conv2d(cout, cout, 3, padding=1), nn.ReLU(),
                                  nn.Conv2d(cout, cout, 3, padding=1))
        self.skip = nn.Conv2d(cin, cout, 1, bias=False) if cin != cout else nn.Identity()

    def forward(self, x):
        return F.relu(self.conv(x) + self.skip(x))


def encoder():
    layers, ch = [], 3
    for i, k in enumerate(ENCODER_LAYOUT):
        if k == "c":
            cout = 16 if i == len(ENCODER_LAYOUT) - 1 else 64
            layers.append(nn.Conv2d(ch, cout, 3, padding=1))
            ch = cout
        elif k == "d":
            layers.append(nn.Conv2d(ch, 64, 3, stride=2, padding=1, bias=False))
        elif k == "b":
            layers.append(Block(ch, 64))
            ch = 64
    return nn.Sequential(*layers)


def load_encoder(path=None):
    """The encoder with weights from path (default: the embedded copy), frozen, in eval mode."""
    path = path or EMBEDDED_ENCODER
    enc = encoder()
    tensors = st.File(path).tensors()
    own = enc.state_dict()
    if set(own) != set(tensors):
        raise ValueError(f"taesd: {path}: missing {sorted(set(own) - set(tensors))[:8]}, "
                         f"unexpected {sorted(set(tensors) - set(own))[:8]}")
    with torch.no_grad():
        for k, v in own.items():
            if tuple(v.shape) != tensors[k].shape:
                raise ValueError(f"taesd: {path}: {k} has shape {tensors[k].shape}, want {tuple(v.shape)}")
            v.copy_(torch.from_numpy(tensors[k]))
    enc.requires_grad_(False)
    return enc.eval()

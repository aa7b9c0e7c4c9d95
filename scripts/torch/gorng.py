"""tsdsr's random generator (package rng: PCG with 128-bit state, XSL-RR
output) in pure Python, draw for draw.

The trainer draws its own batches and noise from torch's generators (fast,
on the device); this port exists for the two places where the Go trainer's
choices must be repeated exactly: which photos a latent cache holds out for
validation (latents.Cache.Split) and the fixed noise of the validation loss
(train.ValidationLoss), so validation losses of a PyTorch run and a Go run
on the same cache are the same measurement.
"""

import math

_M64 = (1 << 64) - 1
_MUL = (2549297995355413924 << 64) | 4865540595714422341
_INC = (6364136223846793005 << 64) | 1442695040888963407
_M128 = (1 << 128) - 1


def _mix(z):
    z = (z + 0x9E3779B97F4A7C15) & _M64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _M64
    return z ^ (z >> 31)


class Rand:
    """rng.Rand: New(seed), Uint64, Float64, IntN, Normal, Perm, Child."""

    def __init__(self, seed=0, _state=None):
        if _state is None:
            seed &= _M64
            self.s = ((seed ^ 0x9E3779B97F4A7C15) << 64) | seed
            self.uint64()
            self.uint64()
        else:
            self.s = _state
        self.spare = None

    def uint64(self):
        s = (self.s * _MUL + _INC) & _M128
        self.s = s
        hi, lo = s >> 64, s & _M64
        x, r = hi ^ lo, hi >> 58
        return ((x >> r) | (x << (64 - r))) & _M64 if r else x

    def float64(self):
        return (self.uint64() >> 11) / float(1 << 53)

    def intn(self, n):
        if n <= 0:
            raise ValueError("intn: n <= 0")
        m = self.uint64() * n
        hi, lo = m >> 64, m & _M64
        if lo < n:
            thresh = ((1 << 64) - n) % n
            while lo < thresh:
                m = self.uint64() * n
                hi, lo = m >> 64, m & _M64
        return hi

    def normal(self):
        if self.spare is not None:
            v, self.spare = self.spare, None
            return v
        while True:
            u = 2 * self.float64() - 1
            v = 2 * self.float64() - 1
            s = u * u + v * v
            if 0 < s < 1:
                f = math.sqrt(-2 * math.log(s) / s)
                self.spare = v * f
                return u * f

    def fill_normal(self, n):
        """n draws of FillNormal(dst, 0, 1), as float32 values in a numpy array."""
        import numpy as np

        return np.array([self.normal() for _ in range(n)], dtype=np.float64).astype(np.float32)

    def perm(self, n):
        p = list(range(n))
        for i in range(n - 1, 0, -1):
            j = self.intn(i + 1)
            p[i], p[j] = p[j], p[i]
        return p

    def child(self, id_):
        hi, lo = self.s >> 64, self.s & _M64
        c = Rand(_state=((hi ^ _mix(id_)) << 64) | ((lo + _mix(id_ ^ 0x5851F42D4C957F2D)) & _M64))
        c.uint64()
        return c


if __name__ == "__main__":
    # The values rng's own test pins.
    r = Rand(1)
    assert (r.uint64(), r.uint64()) == (11722706399272220446, 18160466081297704541)
    assert Rand(2).normal() == 0.16348066135576853
    print("ok")

"""The paper's MLP for vector data (App. C.1; after De Bortoli et al. 2021), any dimension d."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

PAPER_ENCODER = (16, 32, 32, 32)
PAPER_DECODER = (128, 256, 128, 64)


def default_encoder(dim: int) -> tuple[int, ...]:
    """The paper's encoder for d <= 2; wider for larger d.

    With [16, 32, 32, 32] the teacher could not tell mid-size variances apart in d = 8
    (SPEC §7); [64, 64, 32] fixed it, and we keep the first layers at least 8d wide.
    """
    if dim <= 2:
        return PAPER_ENCODER
    w = max(64, 8 * dim)
    return (w, w, 32)


def _mlp(sizes: Sequence[int], last_act: bool) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        layers.append(nn.Linear(a, b))
        if last_act or i < len(sizes) - 2:
            # In place: a Linear's output is not needed by its backward, and a fresh buffer
            # per activation costs about a tenth of a forward at batch 1024.
            layers.append(nn.LeakyReLU(0.2, inplace=True))
    return nn.Sequential(*layers)


class PositionalEmbedding(nn.Module):
    """Sinusoidal embedding of the scalar noise input (Vaswani et al. 2017)."""

    def __init__(self, dim: int = 16, max_positions: float = 10000.0,
                 scale: float = 100.0) -> None:
        super().__init__()
        self.scale = scale
        half = dim // 2
        freqs = torch.exp(-math.log(max_positions) * torch.arange(half) / max(half - 1, 1))
        self.register_buffer("freqs", freqs, persistent=False)

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        # Scale so the small range of c_noise = ln(sigma)/4 reaches the high frequencies too.
        a = (self.scale * t.float())[:, None] * self.freqs[None, :]
        return torch.cat([a.cos(), a.sin()], dim=1)


class CondEmbedding(nn.Module):
    """Per-sample conditioning scalars (e.g. ``log lambda``) -> a vector added to the noise
    embedding. The last layer starts at zero, so a conditioned network starts equal to its
    unconditioned parent (a teacher's weights load unchanged)."""

    def __init__(self, cond_dim: int, out_dim: int, emb_dim: int = 16,
                 hidden: int = 64) -> None:
        super().__init__()
        self.cond_dim = cond_dim
        self.pos = PositionalEmbedding(emb_dim, scale=10.0)
        self.net = _mlp([emb_dim * cond_dim, hidden, out_dim], last_act=False)
        last = self.net[-1]
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)

    def forward(self, cond: torch.Tensor) -> torch.Tensor:
        c = cond.reshape(cond.shape[0], -1)
        if c.shape[1] != self.cond_dim:
            raise ValueError(f"conditioning input has {c.shape[1]} values per sample, the "
                             f"network takes {self.cond_dim}")
        return self.net(self.pos(c.reshape(-1)).reshape(c.shape[0], -1))


class FourierFeatures(nn.Module):
    """``x -> [x, sin(2 pi x B), cos(2 pi x B)]`` with a fixed Gaussian ``B`` (Tancik et al.
    2020): an MLP on a low-dimensional input learns sharp changes (the boundaries between
    modes a one-step map must draw) slowly without them (spectral bias). ``B`` is a saved
    buffer drawn from a fixed seed, so a model file alone rebuilds the same network."""

    def __init__(self, dim: int, n: int, scale: float) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.register_buffer("b", scale * torch.randn(dim, n, generator=g))
        self.out_dim = dim + 2 * n

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = 2 * math.pi * x @ self.b.to(x.dtype)
        return torch.cat([x, a.sin(), a.cos()], dim=1)


def _fourier(dim: int, value: Sequence[float], key: str) -> FourierFeatures:
    n, scale = value
    if int(n) != n or n < 1 or scale <= 0:
        raise ValueError(f"{key} = [n, scale] needs an integer n >= 1 and a scale > 0, "
                         f"got {list(value)}")
    return FourierFeatures(dim, int(n), float(scale))


class MLPBackbone(nn.Module):
    """Input encoder and noise encoder, concatenated, then a decoder to ``dim`` outputs.

    With ``dim=2`` and the default widths it has the paper's size (about 88k parameters).
    ``cond_dim > 0`` adds a conditioning input (see :class:`CondEmbedding`) beside the noise
    level; 0 keeps the paper's network and its ``state_dict`` exactly. ``fourier = (n,
    scale)`` puts :class:`FourierFeatures` before the input encoder; ``fourier_branch = (n,
    scale)`` adds them as a second input path whose last layer starts at zero (a generator
    gains them on top of its teacher's weights and starts as the teacher).
    """

    def __init__(self, dim: int, encoder: Sequence[int] | None = None,
                 decoder: Sequence[int] = PAPER_DECODER, emb_dim: int = 16,
                 cond_dim: int = 0, fourier: Sequence[float] | None = None,
                 fourier_branch: Sequence[float] | None = None) -> None:
        super().__init__()
        enc = tuple(encoder) if encoder is not None else default_encoder(dim)
        self.dim = dim
        self.config = {"dim": dim, "encoder": list(enc), "decoder": list(decoder),
                       "emb_dim": emb_dim}
        if cond_dim:
            self.config["cond_dim"] = cond_dim
        self.fourier: FourierFeatures | None = None
        if fourier:
            self.fourier = _fourier(dim, fourier, "fourier")
            self.config["fourier"] = [self.fourier.b.shape[1], float(fourier[1])]
        in_dim = self.fourier.out_dim if self.fourier is not None else dim
        self.x_enc = _mlp([in_dim, *enc], last_act=True)
        self.ff_branch: nn.Sequential | None = None
        if fourier_branch:
            ff = _fourier(dim, fourier_branch, "fourier_branch")
            head = _mlp([ff.out_dim, enc[-1], enc[-1]], last_act=False)
            nn.init.zeros_(head[-1].weight)
            nn.init.zeros_(head[-1].bias)
            self.ff_branch = nn.Sequential(ff, head)
            self.config["fourier_branch"] = [ff.b.shape[1], float(fourier_branch[1])]
        self.pos = PositionalEmbedding(emb_dim)
        self.t_enc = _mlp([emb_dim, *enc], last_act=True)
        self.c_enc = CondEmbedding(cond_dim, enc[-1], emb_dim) if cond_dim else None
        self.dec = _mlp([2 * enc[-1], *decoder, dim], last_act=False)

    def forward(self, x: torch.Tensor, c_noise: torch.Tensor,
                cond: torch.Tensor | None = None) -> torch.Tensor:
        # A single c_noise (the one-step generator's fixed level) is embedded once and
        # broadcast: the noise branch then costs nothing per sample, forward or backward.
        t = self.t_enc(self.pos(c_noise.reshape(-1)))
        if self.c_enc is not None:
            if cond is None:
                raise ValueError("this network is conditioned: pass cond")
            t = t + self.c_enc(cond.to(x.dtype))
        elif cond is not None:
            raise ValueError("this network takes no conditioning input (cond_dim = 0)")
        if t.shape[0] != x.shape[0]:
            t = t.expand(x.shape[0], -1)
        xe = self.x_enc(self.fourier(x) if self.fourier is not None else x)
        if self.ff_branch is not None:
            xe = xe + self.ff_branch(x)
        h = torch.cat([xe, t], dim=1)
        return self.dec(h)

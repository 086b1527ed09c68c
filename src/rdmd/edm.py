"""EDM core (Karras et al. 2022), variance exploding: preconditioning, DSM loss, sigma draws.

The preconditioning wrapper is separate from the backbone so that any network that maps
``(c_in * y, c_noise[, cond]) -> F`` plugs in: the paper's MLP for vectors, a UNet for images.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

SIGMA_MIN = 0.002
SIGMA_MAX = 80.0


def _bcast(sigma: torch.Tensor | float, like: torch.Tensor) -> torch.Tensor:
    """Sigma as a tensor broadcastable against a batch ``like`` (one sigma per sample)."""
    s = torch.as_tensor(sigma, dtype=like.dtype, device=like.device)
    if s.ndim == 0:
        s = s.expand(like.shape[0])
    return s.reshape(-1, *([1] * (like.ndim - 1)))


def preconditioning(sigma: Any, sigma_data: float) -> tuple[Any, Any, Any, Any]:
    """EDM's ``(c_skip, c_out, c_in, c_noise)`` at ``sigma``: the formula, written once.

    ``sigma`` is a tensor (one level per sample) or a plain number (the one-step generator's
    fixed level, where plain-number coefficients keep the batch arithmetic minimal); the
    coefficients come back of the same kind.
    """
    if isinstance(sigma, torch.Tensor):
        sqrt, log = torch.sqrt, torch.log
    else:
        sigma, sqrt, log = float(sigma), math.sqrt, math.log
    sd = sigma_data
    norm = sqrt(sigma**2 + sd**2)
    return sd**2 / (sigma**2 + sd**2), sigma * sd / norm, 1.0 / norm, log(sigma) / 4


class EDMDenoiser(nn.Module):
    """``D(y; sigma) = c_skip*y + c_out*F(c_in*y, c_noise)``: the denoiser every method shares.

    ``backbone(x, c_noise, cond=None)`` receives the scaled input and one
    ``c_noise = ln(sigma)/4`` per sample, or a single one for the whole batch (shape ``(1,)``)
    at a fixed level (backbones broadcast it). ``cond`` is an optional per-sample conditioning
    input (e.g. ``log lambda``) for backbones built with ``cond_dim > 0``. ``sigma_data`` is
    0.5 for images in [-1, 1], the data's own std for vectors.
    """

    def __init__(self, backbone: nn.Module, sigma_data: float = 0.5) -> None:
        super().__init__()
        self.backbone = backbone
        self.sigma_data = float(sigma_data)

    def forward(self, y: torch.Tensor, sigma: torch.Tensor | float,
                cond: torch.Tensor | None = None) -> torch.Tensor:
        fixed = not isinstance(sigma, torch.Tensor)
        s = sigma if fixed else _bcast(sigma, y)
        c_skip, c_out, c_in, c_noise = preconditioning(s, self.sigma_data)
        # One fixed level (the one-step generator): one c_noise serves the whole batch, so
        # the backbone embeds the noise level once.
        c_noise = (torch.full((1,), c_noise, device=y.device) if fixed
                   else c_noise.reshape(-1))
        kw = {} if cond is None else {"cond": cond}
        f = self.backbone(c_in * y, c_noise, **kw)
        return c_skip * y + c_out * f.to(y.dtype)

    def score(self, y: torch.Tensor, sigma: torch.Tensor | float,
              cond: torch.Tensor | None = None) -> torch.Tensor:
        """``s(y; sigma) = (D(y; sigma) - y) / sigma^2``."""
        s = _bcast(sigma, y)
        return (self(y, sigma, cond) - y) / s**2


@dataclass
class LogNormalSigma:
    """``ln sigma ~ N(p_mean, p_std^2)``: EDM's training distribution of noise levels.

    Draws happen on the (CPU) generator and are then moved, so runs are reproducible and
    resumable on any device.
    """

    p_mean: float = -1.2
    p_std: float = 1.2

    def __call__(self, n: int, generator: torch.Generator | None = None,
                 device: torch.device | str = "cpu") -> torch.Tensor:
        z = torch.randn(n, generator=generator)
        return (self.p_mean + self.p_std * z).exp().to(device)


@dataclass
class LogUniformSigma:
    """``ln sigma ~ U(ln lo, ln hi)``: our default for the distribution-matching term.

    DMD/DMD2 draw timesteps uniformly from an index range of the teacher's schedule (DMD2's
    own table spans about [0.0032, 72] in sigma); we cover EDM's training range [0.02, 80]
    evenly in log sigma.
    """

    lo: float = 0.02
    hi: float = 80.0

    def __call__(self, n: int, generator: torch.Generator | None = None,
                 device: torch.device | str = "cpu") -> torch.Tensor:
        u = torch.rand(n, generator=generator)
        return (math.log(self.lo) + u * (math.log(self.hi) - math.log(self.lo))).exp().to(device)


class EDMLoss:
    """Denoising score matching with EDM's weighting ``(sigma^2+sd^2)/(sigma*sd)^2``.

    Used twice with the same code: to train the teacher on target data and, inside RDMD,
    to train the fake score on the generator's (detached) outputs.
    """

    def __init__(self, sigma_dist: LogNormalSigma | None = None) -> None:
        self.sigma_dist = sigma_dist or LogNormalSigma()

    def __call__(self, denoiser: EDMDenoiser, y: torch.Tensor,
                 generator: torch.Generator | None = None,
                 sigma: torch.Tensor | None = None,
                 eps: torch.Tensor | None = None,
                 cond: torch.Tensor | None = None) -> torch.Tensor:
        """``cond``: the per-sample conditioning of a conditioned denoiser (lambda-RDMD's
        fake score learns the law of ``G(x, lambda)`` for each ``lambda``)."""
        if sigma is None:
            sigma = self.sigma_dist(y.shape[0], generator, y.device)
        if eps is None:
            eps = torch.randn(y.shape, generator=generator).to(device=y.device, dtype=y.dtype)
        s = _bcast(sigma, y)
        sd = denoiser.sigma_data
        weight = (s**2 + sd**2) / (s * sd) ** 2
        d = denoiser(y + s * eps, sigma) if cond is None else denoiser(y + s * eps, sigma, cond)
        return (weight * (d.float() - y.float()) ** 2).mean()

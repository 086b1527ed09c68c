"""EDM core (Karras et al. 2022), variance exploding: preconditioning, DSM loss, sigma draws.

The preconditioning wrapper is separate from the backbone so that any network that maps
``(c_in * y, c_noise) -> F`` plugs in: the paper's MLP for vectors, a UNet for images.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

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


class EDMDenoiser(nn.Module):
    """``D(y; sigma) = c_skip*y + c_out*F(c_in*y, c_noise)``: the denoiser every method shares.

    ``backbone(x, c_noise)`` receives the scaled input and one ``c_noise = ln(sigma)/4`` per
    sample, or a single one for the whole batch (shape ``(1,)``) at a fixed level
    (backbones broadcast it). ``sigma_data`` is 0.5 for images in [-1, 1], the data's own std
    for vectors.
    """

    def __init__(self, backbone: nn.Module, sigma_data: float = 0.5) -> None:
        super().__init__()
        self.backbone = backbone
        self.sigma_data = float(sigma_data)

    def coefficients(self, sigma: torch.Tensor) -> tuple[torch.Tensor, ...]:
        sd = self.sigma_data
        c_skip = sd**2 / (sigma**2 + sd**2)
        c_out = sigma * sd / (sigma**2 + sd**2).sqrt()
        c_in = 1.0 / (sigma**2 + sd**2).sqrt()
        c_noise = sigma.log() / 4
        return c_skip, c_out, c_in, c_noise

    def forward(self, y: torch.Tensor, sigma: torch.Tensor | float) -> torch.Tensor:
        if isinstance(sigma, float | int):
            # One fixed level (the one-step generator): the coefficients are plain numbers and
            # one c_noise serves the whole batch, so the backbone embeds the noise level once.
            sd, s2 = self.sigma_data, float(sigma) ** 2
            c_noise = torch.full((1,), math.log(sigma) / 4, device=y.device)
            f = self.backbone(y / math.sqrt(s2 + sd**2), c_noise)
            return sd**2 / (s2 + sd**2) * y + sigma * sd / math.sqrt(s2 + sd**2) * f.to(y.dtype)
        s = _bcast(sigma, y)
        c_skip, c_out, c_in, c_noise = self.coefficients(s)
        f = self.backbone(c_in * y, c_noise.reshape(-1))
        return c_skip * y + c_out * f.to(y.dtype)

    def score(self, y: torch.Tensor, sigma: torch.Tensor | float) -> torch.Tensor:
        """``s(y; sigma) = (D(y; sigma) - y) / sigma^2``."""
        s = _bcast(sigma, y)
        return (self(y, sigma) - y) / s**2


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

    DMD/DMD2 draw timesteps uniformly over about [0.02, 0.98] of the schedule; on EDM's
    rho=7 schedule that spans roughly [0.02, 80] in sigma, which a log-uniform covers evenly.
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
                 eps: torch.Tensor | None = None) -> torch.Tensor:
        if sigma is None:
            sigma = self.sigma_dist(y.shape[0], generator, y.device)
        if eps is None:
            eps = torch.randn(y.shape, generator=generator).to(device=y.device, dtype=y.dtype)
        s = _bcast(sigma, y)
        sd = denoiser.sigma_data
        weight = (s**2 + sd**2) / (s * sd) ** 2
        d = denoiser(y + s * eps, sigma)
        return (weight * (d.float() - y.float()) ** 2).mean()

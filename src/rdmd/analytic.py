"""Closed-form Gaussian tools: exact denoisers and KLs for tests and toy experiments.

For Gaussian data every quantity RDMD needs (denoiser, score, the KL along the noising path)
is known in closed form, so the Monte-Carlo machinery can be checked against exact numbers.
"""

from __future__ import annotations

import torch
from torch import nn


def _as_tensor(x: torch.Tensor | float | list, dtype: torch.dtype = torch.float64
               ) -> torch.Tensor:
    return torch.as_tensor(x, dtype=dtype)


class GaussianDenoiser(nn.Module):
    """Exact denoiser of ``N(mean, cov)``: ``D(y; s) = mean + cov (cov + s^2 I)^{-1} (y - mean)``.

    Same call signature as :class:`rdmd.edm.EDMDenoiser`, so it can stand in for the teacher
    or the fake score wherever only ``denoiser(y, sigma)`` is used. Computes in float64 and
    returns ``y``'s dtype. ``sigma_data`` is ``sqrt(mean(diag(cov)))``, the data's own std.
    """

    mean: torch.Tensor
    cov: torch.Tensor

    def __init__(self, mean: torch.Tensor | float | list, cov: torch.Tensor | list) -> None:
        super().__init__()
        c = _as_tensor(cov).detach().clone()
        if c.ndim != 2 or c.shape[0] != c.shape[1]:
            raise ValueError(f"cov must be a square matrix, got shape {tuple(c.shape)}")
        d = c.shape[0]
        m = _as_tensor(mean).detach().clone()
        if m.ndim == 0:
            m = m.expand(d).clone()
        if m.shape != (d,):
            raise ValueError(f"mean must have shape ({d},), got {tuple(m.shape)}")
        self.register_buffer("mean", m)
        self.register_buffer("cov", 0.5 * (c + c.T))
        self.sigma_data = float(self.cov.diagonal().mean().sqrt())

    @property
    def dim(self) -> int:
        return self.cov.shape[0]

    def forward(self, y: torch.Tensor, sigma: torch.Tensor | float) -> torch.Tensor:
        yy = y.to(torch.float64)
        s = torch.as_tensor(sigma, dtype=torch.float64, device=y.device).reshape(-1)
        if s.numel() == 1:
            s = s.expand(y.shape[0])
        eye = torch.eye(self.dim, dtype=torch.float64, device=y.device)
        # (cov + s^2 I)^{-1} cov for every sample's sigma: one (B, d, d) solve.
        lhs = self.cov + s[:, None, None] ** 2 * eye
        gain = torch.linalg.solve(lhs, self.cov.expand(s.shape[0], -1, -1))
        r = yy - self.mean
        # cov (cov + s^2)^{-1} r == ((cov + s^2)^{-1} cov)^T r, since both are symmetric.
        out = self.mean + torch.einsum("bji,bj->bi", gain, r)
        return out.to(y.dtype)

    def score(self, y: torch.Tensor, sigma: torch.Tensor | float) -> torch.Tensor:
        """``(D(y; s) - y) / s^2``, equal to ``-(cov + s^2 I)^{-1} (y - mean)``."""
        s = torch.as_tensor(sigma, dtype=y.dtype, device=y.device).reshape(-1, 1)
        return (self(y, sigma) - y) / s**2


def gaussian_kl(m0: torch.Tensor, S0: torch.Tensor, m1: torch.Tensor, S1: torch.Tensor
                ) -> torch.Tensor:
    """``KL(N(m0, S0) || N(m1, S1))`` in float64, differentiable in all four arguments.

    ``0.5 * (tr(S1^{-1} S0) + (m1-m0)^T S1^{-1} (m1-m0) - d + ln det S1 - ln det S0)``.
    """
    m0, S0, m1, S1 = (_as_tensor(t) if not torch.is_tensor(t) else t.to(torch.float64)
                      for t in (m0, S0, m1, S1))
    d = S0.shape[-1]
    L1 = torch.linalg.cholesky(S1)
    trace = torch.cholesky_solve(S0, L1).diagonal(dim1=-2, dim2=-1).sum(-1)
    diff = (m1 - m0).unsqueeze(-1)
    maha = (diff * torch.cholesky_solve(diff, L1)).sum((-2, -1))
    logdet1 = 2 * L1.diagonal(dim1=-2, dim2=-1).log().sum(-1)
    logdet0 = torch.linalg.slogdet(S0)[1]
    return 0.5 * (trace + maha - d + logdet1 - logdet0)


def weighted_dm_objective(A: torch.Tensor, target_cov: torch.Tensor, sigmas: torch.Tensor,
                          weights: torch.Tensor) -> torch.Tensor:
    """``sum_k w_k KL(N(0, A A^T + s_k^2 I) || N(0, C_T + s_k^2 I))`` for ``G(x) = A x``.

    With ``x ~ N(0, I)`` the generator's noised law at level ``s_k`` is ``N(0, AA^T + s_k^2 I)``,
    so this is the distribution-matching objective (Eq. 11's integral, as a quadrature) whose
    gradient RDMD's generator loss estimates. Differentiable w.r.t. ``A``.
    """
    A = A.to(torch.float64)
    C = _as_tensor(target_cov) if not torch.is_tensor(target_cov) else target_cov.double()
    s = _as_tensor(sigmas).reshape(-1)
    w = _as_tensor(weights).reshape(-1)
    d = A.shape[0]
    eye = torch.eye(d, dtype=torch.float64)
    noise = s[:, None, None] ** 2 * eye
    zero = torch.zeros(d, dtype=torch.float64)
    kls = gaussian_kl(zero, A @ A.T + noise, zero, C + noise)
    return (w * kls).sum()

"""EDM's Heun sampler (Karras et al. 2022), shared by the teacher's samples and by the
multi-step baselines (SDEdit starts it mid-way, ILVR hooks each step, EGSDE passes an
energy-guided denoiser).

Deterministic by default (Alg. 1: the probability-flow ODE). With a :class:`Churn` it is the
paper's stochastic sampler (Alg. 2): before each step the state is pushed up to a slightly
higher noise level with fresh noise, then integrated down as before, so the errors an
imperfect denoiser made earlier get partly washed out (EDM Sec. 4). ``Churn(0)`` or
``churn=0`` runs exactly the deterministic code.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from rdmd.edm import SIGMA_MAX, SIGMA_MIN

Denoise = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
# Called after each step with the new state and its noise level; returns the state to go on
# from. ILVR uses it to replace the state's low frequencies by those of the noised source.
StepHook = Callable[[torch.Tensor, float], torch.Tensor]


@dataclass(frozen=True)
class Churn:
    """EDM's stochasticity settings (Alg. 2, Table 5): ``s_churn`` sets the total amount of
    added noise (per step ``gamma = min(s_churn / N, sqrt(2) - 1)`` for ``N`` steps), only at
    levels in ``[s_tmin, s_tmax]``; ``s_noise`` slightly inflates the added noise to offset a
    denoiser that removes a little too much."""

    s_churn: float
    s_tmin: float = 0.0
    s_tmax: float = math.inf
    s_noise: float = 1.0

    def __post_init__(self) -> None:
        if not (math.isfinite(self.s_churn) and self.s_churn >= 0):
            raise ValueError(f"s_churn must be a finite number >= 0, got {self.s_churn}")
        if not (self.s_tmin >= 0 and self.s_tmax >= self.s_tmin):
            raise ValueError(f"need 0 <= s_tmin <= s_tmax, got [{self.s_tmin}, {self.s_tmax}]")
        if not (math.isfinite(self.s_noise) and self.s_noise > 0):
            raise ValueError(f"s_noise must be a finite number > 0, got {self.s_noise}")

    def gamma(self, sigma: float, n_steps: int) -> float:
        """The relative raise ``sigma_hat = (1 + gamma) sigma`` of a step starting at
        ``sigma`` (capped at ``sqrt(2) - 1``: the added noise never exceeds what is there)."""
        if self.s_churn == 0 or not self.s_tmin <= sigma <= self.s_tmax:
            return 0.0
        return min(self.s_churn / n_steps, math.sqrt(2) - 1)


def as_churn(churn: float | Churn | None) -> Churn | None:
    """``None`` when sampling is deterministic, else the settings (a number is ``s_churn``
    with EDM's defaults for the rest)."""
    if churn is None:
        return None
    c = churn if isinstance(churn, Churn) else Churn(float(churn))
    return None if c.s_churn == 0 else c


def karras_sigmas(n_steps: int, sigma_min: float = SIGMA_MIN, sigma_max: float = SIGMA_MAX,
                  rho: float = 7.0) -> torch.Tensor:
    """The rho-schedule from ``sigma_max`` to ``sigma_min`` in ``n_steps`` levels, then 0."""
    if n_steps < 1:
        raise ValueError(f"n_steps must be >= 1, got {n_steps}")
    if n_steps == 1:
        t = torch.tensor([float(sigma_max)], dtype=torch.float64)
    else:
        i = torch.arange(n_steps, dtype=torch.float64)
        t = (sigma_max ** (1 / rho) + i / (n_steps - 1)
             * (sigma_min ** (1 / rho) - sigma_max ** (1 / rho))) ** rho
    return torch.cat([t, torch.zeros(1, dtype=torch.float64)])


@torch.no_grad()
def heun_sample(denoise: Denoise, x_start: torch.Tensor, sigmas: torch.Tensor,
                after_step: StepHook | None = None, churn: float | Churn | None = None,
                generator: torch.Generator | None = None) -> torch.Tensor:
    """Integrate the probability-flow ODE along ``sigmas`` (decreasing, ending at 0).

    ``x_start`` must already carry noise of level ``sigmas[0]``. Uses ``2N-1`` network
    evaluations for ``N`` nonzero levels (the last step is Euler). With ``churn`` (see
    :class:`Churn`) each step first adds fresh noise drawn from ``generator`` (same number of
    evaluations); without it the result is deterministic.
    """
    ch = as_churn(churn)
    n_steps = len(sigmas) - 1
    x = x_start
    for s_cur, s_next in zip(sigmas[:-1].tolist(), sigmas[1:].tolist(), strict=True):
        gamma = 0.0 if ch is None else ch.gamma(s_cur, n_steps)
        if gamma > 0:
            assert ch is not None
            # raise the level from s_cur to s_hat: variances add, so the fresh noise has
            # standard deviation sqrt(s_hat^2 - s_cur^2)
            s_hat = s_cur * (1 + gamma)
            eps = torch.randn(x.shape, generator=generator, dtype=x.dtype,
                              device=generator.device if generator is not None else x.device)
            x = x + math.sqrt(s_hat**2 - s_cur**2) * ch.s_noise * eps.to(x.device)
            s_cur = s_hat
        d_cur = (x - denoise(x, torch.full((x.shape[0],), s_cur, device=x.device))) / s_cur
        x_next = x + (s_next - s_cur) * d_cur
        if s_next > 0:
            d_next = (x_next - denoise(x_next, torch.full((x.shape[0],), s_next,
                                                           device=x.device))) / s_next
            x_next = x + (s_next - s_cur) * 0.5 * (d_cur + d_next)
        x = x_next if after_step is None else after_step(x_next, s_next)
    return x


def sample(denoise: Denoise, shape: tuple[int, ...], n_steps: int = 18,
           generator: torch.Generator | None = None, device: torch.device | str = "cpu",
           sigma_max: float = SIGMA_MAX, churn: float | Churn | None = None,
           sigmas: torch.Tensor | None = None) -> torch.Tensor:
    """Unconditional samples: start from ``N(0, sigma_max^2 I)`` and run ``heun_sample``.

    ``churn`` makes it EDM's stochastic sampler (its noise also comes from ``generator``,
    after the start noise, so ``churn=None`` draws exactly what it always drew). ``sigmas``
    replaces the rho-schedule (then ``n_steps`` and ``sigma_max`` are ignored), e.g. to sample
    at a diffusers teacher's own discrete levels.
    """
    if sigmas is None:
        sigmas = karras_sigmas(n_steps, sigma_max=sigma_max)
    x = torch.randn(shape, generator=generator).to(device) * sigmas[0].item()
    return heun_sample(denoise, x, sigmas, churn=churn, generator=generator)

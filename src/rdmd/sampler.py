"""EDM's deterministic Heun sampler (Karras et al. 2022, Alg. 1), shared by the teacher's
samples and by the multi-step baselines (SDEdit starts it mid-way, ILVR hooks each step,
EGSDE passes an energy-guided denoiser)."""

from __future__ import annotations

from collections.abc import Callable

import torch

from rdmd.edm import SIGMA_MAX, SIGMA_MIN

Denoise = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
# Called after each step with the new state and its noise level; returns the state to go on
# from. ILVR uses it to replace the state's low frequencies by those of the noised source.
StepHook = Callable[[torch.Tensor, float], torch.Tensor]


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
                after_step: StepHook | None = None) -> torch.Tensor:
    """Integrate the probability-flow ODE along ``sigmas`` (decreasing, ending at 0).

    ``x_start`` must already carry noise of level ``sigmas[0]``. Uses ``2N-1`` network
    evaluations for ``N`` nonzero levels (the last step is Euler).
    """
    x = x_start
    for s_cur, s_next in zip(sigmas[:-1].tolist(), sigmas[1:].tolist(), strict=True):
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
           sigma_max: float = SIGMA_MAX) -> torch.Tensor:
    """Unconditional samples: start from ``N(0, sigma_max^2 I)`` and run ``heun_sample``."""
    sigmas = karras_sigmas(n_steps, sigma_max=sigma_max)
    x = torch.randn(shape, generator=generator).to(device) * sigmas[0].item()
    return heun_sample(denoise, x, sigmas)

"""ILVR (Choi et al. 2021) on the EDM teacher: sample from pure noise, and after every step
replace the state's low frequencies by those of the source noised to the same level.

``x <- x - LP_N(x) + LP_N(source + sigma * eps)`` with fresh ``eps`` at each step, as in the
original (which draws ``q(y_t | y_0)`` anew per step). Departures: EDM's Heun ODE instead of
ancestral DDPM sampling, and a box filter (average-pool by ``N``, nearest upsample) instead
of the bicubic resizer. ``N`` is the only knob: small ``N`` pins fine detail, large ``N``
only the coarse layout and colour.
"""

from __future__ import annotations

from typing import Any

import torch

from rdmd.baselines.common import SamplerTranslator, check_factor, low_pass
from rdmd.data.normalizer import Normalizer
from rdmd.edm import SIGMA_MAX, EDMDenoiser
from rdmd.sampler import heun_sample, karras_sigmas


class ILVR(SamplerTranslator):
    method = "ilvr"

    def __init__(self, teacher: EDMDenoiser, normalizer: Normalizer, shape: tuple[int, ...],
                 down: int = 8, n_steps: int = 18, sigma_max: float = SIGMA_MAX) -> None:
        super().__init__(teacher, normalizer, shape, n_steps)
        self.down = check_factor(down, shape)
        self.sigma_max = float(sigma_max)

    @property
    def params(self) -> dict[str, Any]:
        return {"down": self.down, "n_steps": self.n_steps}

    def _map(self, z: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        sigmas = karras_sigmas(self.n_steps, sigma_max=self.sigma_max)
        x = self.sigma_max * self.noise(z, gen)

        def refine(x: torch.Tensor, sigma: float) -> torch.Tensor:
            ref = z + sigma * self.noise(z, gen) if sigma > 0 else z
            return x - low_pass(x, self.down) + low_pass(ref, self.down)

        return heun_sample(self.teacher, x, sigmas, after_step=refine)

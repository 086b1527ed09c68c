"""SDEdit (Meng et al. 2021) on the EDM teacher: noise the source to ``sigma_start``, then
run the shared Heun sampler from there to 0.

Departure from the original: the reverse process is EDM's deterministic probability-flow
ODE (Heun, ``2 n_steps - 1`` evaluations) instead of the stochastic SDE; the randomness is
the noise added to the source. Small ``sigma_start`` keeps the input, large forgets it.
"""

from __future__ import annotations

from typing import Any

import torch

from rdmd.baselines.common import SamplerTranslator
from rdmd.data.normalizer import Normalizer
from rdmd.edm import SIGMA_MIN, EDMDenoiser
from rdmd.errors import RdmdError
from rdmd.sampler import heun_sample, karras_sigmas


class SDEdit(SamplerTranslator):
    method = "sdedit"

    def __init__(self, teacher: EDMDenoiser, normalizer: Normalizer, shape: tuple[int, ...],
                 sigma_start: float = 2.0, n_steps: int = 18) -> None:
        super().__init__(teacher, normalizer, shape, n_steps)
        if not SIGMA_MIN < float(sigma_start) <= 1000:
            raise RdmdError(f"sigma_start must be in ({SIGMA_MIN}, 1000], got {sigma_start}")
        self.sigma_start = float(sigma_start)

    @property
    def params(self) -> dict[str, Any]:
        return {"sigma_start": self.sigma_start, "n_steps": self.n_steps}

    def _map(self, z: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        sigmas = karras_sigmas(self.n_steps, sigma_max=self.sigma_start)
        x = z + self.sigma_start * self.noise(z, gen)
        return heun_sample(self.teacher, x, sigmas)

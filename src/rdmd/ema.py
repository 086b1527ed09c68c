"""Exponential moving average of weights: the teacher we ship is the EMA, not the raw net;
for RDMD the generator's EMA is optional (``DistillConfig.ema_decay``)."""

from __future__ import annotations

import copy

import torch
from torch import nn


def warmup_decay(decay: float, step: int) -> float:
    """``min(decay, (1 + step) / (10 + step))``: the usual EMA warm-up, so that an average
    over a run shorter than ``1 / (1 - decay)`` steps is not dominated by the initial weights
    (after ``t`` steps it spans roughly the last ``t / 10`` of them)."""
    return min(decay, (1.0 + step) / (10.0 + step))


class EMA:
    def __init__(self, model: nn.Module, decay: float) -> None:
        self.decay = float(decay)
        self.model = copy.deepcopy(model).eval().requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module, decay: float | None = None) -> None:
        """``e <- d e + (1 - d) p`` with ``d = decay`` if given, else the fixed ``self.decay``."""
        d = self.decay if decay is None else float(decay)
        for e, p in zip(self.model.parameters(), model.parameters(), strict=True):
            e.lerp_(p.detach(), 1.0 - d)
        for e, b in zip(self.model.buffers(), model.buffers(), strict=True):
            e.copy_(b)

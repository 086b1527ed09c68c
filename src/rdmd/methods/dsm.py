"""Denoising score matching (SPEC §1): the teacher's training, as a method of the run loop."""

from __future__ import annotations

import torch

from rdmd.edm import EDMDenoiser, EDMLoss
from rdmd.guidance import GuideSnapshot, guide_step
from rdmd.methods.base import Method


class DSM(Method):
    """One network fitted to the data's score; the exported result is its EMA.

    ``guide_at`` (a share of the steps, 0: none) keeps the EMA of that point of the run as
    the autoguidance guide (:mod:`rdmd.guidance`); it is a module of the run, so a resumed
    run has it."""

    name = "dsm"
    ema_of = "net"

    def __init__(self, net: EDMDenoiser, loss: EDMLoss, lr: float,
                 grad_clip: float = 0.0, guide_at: float = 0.0) -> None:
        super().__init__()
        self.declare("net", net, lr)
        self.loss_fn = loss
        self.grad_clip = grad_clip
        self.guide_at = float(guide_at)
        if self.guide_at:
            self.declare("guide", GuideSnapshot(net))

    def begin_step(self, step: int, total: int) -> None:
        if self.guide_at and step == guide_step(self.guide_at, total):
            guide = self.modules["guide"]
            assert isinstance(guide, GuideSnapshot)
            guide.take(self.result(), step)

    def guide(self) -> EDMDenoiser | None:
        """The guide the run kept (None: none asked for, or its step not reached)."""
        g = self.modules.get("guide")
        return g.net if isinstance(g, GuideSnapshot) and g.taken else None  # type: ignore[return-value]

    def train_step(self, batch: torch.Tensor, rng: torch.Generator) -> dict[str, float]:
        loss = self.loss_fn(self.nets["net"], batch, generator=rng)
        value = loss.item()
        self.check_finite("DSM", value)
        self.update("net", loss)
        return {"loss": value}

"""Denoising score matching (SPEC §1): the teacher's training, as a method of the run loop."""

from __future__ import annotations

import torch

from rdmd.edm import EDMDenoiser, EDMLoss
from rdmd.methods.base import Method


class DSM(Method):
    """One network fitted to the data's score; the exported result is its EMA."""

    name = "dsm"
    ema_of = "net"

    def __init__(self, net: EDMDenoiser, loss: EDMLoss, lr: float,
                 grad_clip: float = 0.0) -> None:
        super().__init__()
        self.declare("net", net, lr)
        self.loss_fn = loss
        self.grad_clip = grad_clip

    def train_step(self, batch: torch.Tensor, rng: torch.Generator) -> dict[str, float]:
        loss = self.loss_fn(self.nets["net"], batch, generator=rng)
        value = loss.item()
        self.check_finite("DSM", value)
        self.update("net", loss)
        return {"loss": value}

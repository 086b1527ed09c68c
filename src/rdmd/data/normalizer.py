"""Affine map between the data's units and the units the networks see."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch


@dataclass
class Normalizer:
    """``z = (x - mean) / scale`` with one scalar ``scale`` for all dimensions.

    A scalar (not per-dimension) scale keeps squared-L2 costs proportional to those in the
    data's units, so the optimal transport map is the same map in either unit system.
    Fitted on the teacher's target data and inherited by every model distilled from it.
    """

    mean: list[float]
    scale: float

    @classmethod
    def fit(cls, x: torch.Tensor) -> Normalizer:
        flat = x.reshape(x.shape[0], -1).double()
        mean = flat.mean(0)
        scale = float((flat - mean).pow(2).mean().sqrt().clamp_min(1e-12))
        return cls(mean.tolist(), scale)

    @classmethod
    def identity(cls) -> Normalizer:
        """For images, already in [-1, 1]: an empty mean stands for zero."""
        return cls([], 1.0)

    def _mean(self, x: torch.Tensor) -> torch.Tensor | float:
        if not self.mean:
            return 0.0
        return torch.tensor(self.mean, dtype=x.dtype, device=x.device).reshape(1, *x.shape[1:])

    @property
    def is_identity(self) -> bool:
        return not self.mean and self.scale == 1.0

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        if self.is_identity:  # images: no full-size passes over the data for nothing
            return x
        return (x - self._mean(x)) / self.scale

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        if self.is_identity:
            return z
        return z * self.scale + self._mean(z)

    def to_dict(self) -> dict[str, Any]:
        return {"mean": list(self.mean), "scale": self.scale}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Normalizer:
        return cls(list(d["mean"]), float(d["scale"]))

"""One side of a translation problem, whatever the data: train and held-out samples.

This module imports no loader: the loaders (:mod:`rdmd.data.vectors`,
:mod:`rdmd.data.images`) import :class:`Domain` from here, and :mod:`rdmd.data.registry`
imports the loaders, so the imports form no cycle.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

Sampler = Callable[[int, np.random.Generator], np.ndarray]


@dataclass
class Domain:
    """Train and held-out test samples of one domain (float32, in the data's own units).

    ``sampler`` draws fresh samples where the domain is a known distribution, so noise floors
    use truly independent sets; for files it is None and floors use disjoint subsets.
    """

    name: str
    train: torch.Tensor
    test: torch.Tensor
    kind: str = "vector"
    sampler: Sampler | None = None
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.train.shape[1:])

    @property
    def dim(self) -> int:
        return int(np.prod(self.shape))

"""One side of a translation problem, whatever the data: train and held-out samples."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rdmd.errors import RdmdError

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


def load_domain(spec: str, n_train: int = 5000, n_test: int = 5000, seed: int = 0) -> Domain:
    """A ``.npy`` path or a built-in name such as ``8gaussians`` or ``gaussian:d=8;std=1.5``.

    ``n_train``/``n_test`` and ``seed`` apply to built-in distributions only; files are split
    deterministically (see :func:`rdmd.data.vectors.load_npy`).
    """
    from rdmd.data import vectors

    if spec.endswith(".npy") or Path(spec).exists():
        return vectors.load_npy(spec)
    name = spec.split(":", 1)[0]
    if name in vectors.BUILTIN_VECTORS:
        return vectors.builtin(spec, n_train, n_test, seed)
    raise RdmdError(f"{spec!r} is neither an existing .npy file nor a built-in data set "
                    f"(built-ins: {', '.join(sorted(vectors.BUILTIN_VECTORS))})")

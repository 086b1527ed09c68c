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


def load_domain(spec: str, n_train: int = 5000, n_test: int = 5000, seed: int = 0,
                size: int = 32, channels: int = 3) -> Domain:
    """A ``.npy`` path, a folder of images, or a built-in name (``8gaussians``,
    ``gaussian:d=8;std=1.5``, ``cmnist2``, ``fmnist-sneaker``, ``digits:class=3``, ...).

    ``n_train``/``n_test`` apply to built-in distributions only, ``size``/``channels`` to
    image folders only; files and image sets are split deterministically, independent of
    ``seed`` (see :mod:`rdmd.data.vectors` and :mod:`rdmd.data.images`).
    """
    from rdmd.data import images, vectors

    if images.is_image_spec(spec):
        return images.load_image_domain(spec, seed, size=size, channels=channels)
    name = spec.split(":", 1)[0]
    if name in vectors.BUILTIN_VECTORS:
        return vectors.builtin(spec, n_train, n_test, seed)
    if spec.endswith(".npy") or _is_file(spec):
        return vectors.load_npy(spec)
    raise RdmdError(f"{spec!r} is neither an existing .npy file, an image folder, nor a "
                    f"built-in data set (built-ins: "
                    f"{', '.join(sorted([*vectors.BUILTIN_VECTORS, *images.IMAGE_BUILTINS]))})")


def _is_file(spec: str) -> bool:
    try:
        return Path(spec).is_file()
    except OSError:  # e.g. a name longer than the file system allows
        return False

"""Which loader reads a data spec: :func:`load_domain`, the one entry point to every loader.

It lives apart from :class:`~rdmd.data.domain.Domain` because it imports the loaders, which
import ``Domain``: keeping both in one module made ``domain -> images -> domain`` a cycle.
"""

from __future__ import annotations

from pathlib import Path

from rdmd.data import images, vectors
from rdmd.data.domain import Domain
from rdmd.errors import RdmdError


def load_domain(spec: str, n_train: int = 5000, n_test: int = 5000, seed: int = 0,
                size: int | None = None, channels: int | None = None,
                recursive: bool = False, purpose: str | None = None) -> Domain:
    """A ``.npy`` path, a folder of images, or a built-in name (``8gaussians``,
    ``gaussian:d=8;std=1.5``, ``cmnist2``, ``fmnist-sneaker``, ``digits:class=3``, ...).

    ``n_train``/``n_test`` apply to built-in distributions only; ``size``/``channels``
    (None: from the images), ``recursive`` and ``purpose`` to image folders only
    (:mod:`rdmd.data.folders`); files and image sets are split deterministically, independent of
    ``seed`` (see :mod:`rdmd.data.vectors` and :mod:`rdmd.data.images`).
    """
    if images.is_image_spec(spec):
        return images.load_image_domain(spec, seed, size=size, channels=channels,
                                        recursive=recursive, purpose=purpose)
    name = spec.split(":", 1)[0]
    if name in vectors.BUILTIN_VECTORS:
        return vectors.builtin(spec, n_train, n_test, seed)
    if spec.endswith(".npy") or _is_file(spec):
        return vectors.load_npy(spec)
    raise RdmdError(f"{spec!r} is neither an existing .npy file, an image folder, nor a "
                    f"built-in data set (built-ins: "
                    f"{', '.join(sorted([*vectors.BUILTIN_VECTORS, *images.IMAGE_BUILTINS]))})")


def vector_dim(spec: str) -> int | None:
    """The dimension of a vector data spec without reading it all (a built-in's one draw, a
    ``.npy`` header); None where it cannot be told (the loader then says why)."""
    import numpy as np

    name = spec.split(":", 1)[0]
    try:
        if name in vectors.BUILTIN_VECTORS:
            return vectors.builtin(spec, 1, 1, 0).dim
        if spec.endswith(".npy") or _is_file(spec):  # as load_domain reads files
            shape = np.load(spec, mmap_mode="r", allow_pickle=False).shape
            return int(shape[1]) if len(shape) == 2 else None
    except (RdmdError, ValueError, OSError):
        return None
    return None


def _is_file(spec: str) -> bool:
    try:
        return Path(spec).is_file()
    except OSError:  # e.g. a name longer than the file system allows
        return False

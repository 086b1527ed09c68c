"""A disk cache of the W2 noise floors.

A floor is W2^2 between independent target sets drawn from a fixed seed: the same numbers
for every run on the same target, yet each 2-D evaluation solved them again (5 exact OT
problems of 3000 points and 12 of 1000 per evaluation, about a tenth of a 2-D pipeline's
wall time). The values are stored under the user's cache folder, keyed by a hash of the
point sets themselves and POT's version, so a changed sampler, seed or size can never be
served an old floor: the key is the exact input of the computation.

The folder is ``$RDMD_CACHE_DIR``, else ``$XDG_CACHE_HOME/rdmd``, else ``~/.cache/rdmd``;
``RDMD_CACHE_DIR=off`` turns the cache off. A file that cannot be read is recomputed and
one that cannot be written is skipped: the cache never fails an evaluation.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np


def cache_dir() -> Path | None:
    """Where floors are kept; None when ``RDMD_CACHE_DIR=off``."""
    env = os.environ.get("RDMD_CACHE_DIR")
    if env is not None:
        return None if env.strip().lower() in ("", "off", "0", "none") else Path(env)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "rdmd"


def _digest(what: str, sets: list[tuple[Any, Any]]) -> str:
    import ot

    h = hashlib.sha256(f"{what}|pot {ot.__version__}|{len(sets)}".encode())
    for pair in sets:
        for a in pair:
            arr = np.ascontiguousarray(np.asarray(a, dtype=np.float64))
            h.update(str(arr.shape).encode())
            h.update(arr.tobytes())
    return h.hexdigest()


def cached_values(what: str, sets: list[tuple[Any, Any]],
                  compute: Callable[[], list[float]]) -> list[float]:
    """``compute()`` (one float per pair of ``sets``), read from the cache when it holds
    the values of ``what`` for exactly these sets, else computed and stored."""
    root = cache_dir()
    if root is None:
        return compute()
    digest = _digest(what, sets)
    path = root / "floors" / f"{digest[:32]}.json"
    try:
        stored = json.loads(path.read_text())
        values = stored["values"]
        if (stored.get("digest") == digest and len(values) == len(sets)
                and all(isinstance(v, float) for v in values)):
            return [float(v) for v in values]
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        pass
    values = [float(v) for v in compute()]
    try:
        from rdmd.checkpoint import atomic_write_json

        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_json(path, {"what": what, "digest": digest, "values": values})
    except OSError:
        pass
    return values

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

The floors of the 2-D built-ins at the default evaluation sizes also ship with the package
(``floors.json``, read first), so a fresh install's first run does not solve them either;
``python -m rdmd.metrics.floor_cache`` rewrites that table. Its entries are found by the
same hash, so a numpy whose sampler draws other points, or another POT, simply misses them.
"""

from __future__ import annotations

import functools
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
    shipped = _shipped().get(digest)
    if shipped is not None and len(shipped) == len(sets):
        return [float(v) for v in shipped]
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


def w2_floor_values(sets: list[tuple[Any, Any]]) -> list[float]:
    """W2^2 within each pair of ``sets`` (a noise floor), through the cache."""
    from rdmd.metrics.ot import w2_many

    return cached_values("w2_floor", sets, lambda: w2_many(sets))


SHIPPED = Path(__file__).with_name("floors.json")
#: what the shipped table holds: the 2-D built-ins at the sizes evaluations use
#: (3000 points x 5 pairs: the default n_test; 1000 x 5: ``rdmd demo --quick``; the stable
#: estimate's 1000 x 12)
SHIPPED_TARGETS = ("8gaussians", "swissroll", "moons")
SHIPPED_SIZES = ((3000, 5), (1000, 5))


@functools.cache
def _shipped() -> dict[str, list[float]]:
    try:
        table = json.loads(SHIPPED.read_text())
        return {k: v for k, v in table["floors"].items() if isinstance(v, list)}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return {}


def write_shipped(path: Path = SHIPPED) -> dict[str, list[float]]:
    """Solve the floors of :data:`SHIPPED_TARGETS` at :data:`SHIPPED_SIZES` and the stable
    size, and write them as the shipped table (run by a maintainer; minutes)."""
    from rdmd import evaluation as ev
    from rdmd.checkpoint import atomic_write_json
    from rdmd.data import load_domain
    from rdmd.metrics.ot import w2_many

    floors: dict[str, list[float]] = {}
    for name in SHIPPED_TARGETS:
        tgt = load_domain(name, 5000, 5000, 0)
        jobs = [ev.floor_sets(tgt, n, pairs) for n, pairs in SHIPPED_SIZES]
        jobs.append(ev.stable_floor_sets(tgt, ev.STABLE_N, ev.STABLE_PAIRS, ev.FLOOR_SEED))
        for sets in jobs:
            floors[_digest("w2_floor", sets)] = [float(v) for v in w2_many(sets)]
            print(f"{name}: {len(sets)} pairs of {len(sets[0][0])} points", flush=True)
    atomic_write_json(path, {"about": "W2^2 noise floors of the 2-D built-ins, keyed by "
                                      "rdmd.metrics.floor_cache._digest of their point sets",
                             "floors": floors})
    return floors


if __name__ == "__main__":
    write_shipped()

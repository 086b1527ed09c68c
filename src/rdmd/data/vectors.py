"""Vector data: built-in distributions and user ``.npy`` arrays (N x d floats).

Built-in names take parameters after a colon, ``key=value`` separated by ``;``, values in
JSON: ``gaussian:d=8;std=1.5``, ``gaussian:mean=[1,2];cov=[[2,0.5],[0.5,1]]``,
``8gaussians:radius=4;std=0.4``.
"""

from __future__ import annotations

import json
import math
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rdmd.data.domain import Domain
from rdmd.errors import RdmdError

NPY_TEST_FRACTION = 0.2
NPY_SPLIT_SEED = 0


def _gaussian(d: int = 2, mean: Any = 0.0, std: float | None = None,
              cov: Any = None) -> tuple[Callable[[int, np.random.Generator], np.ndarray],
                                        dict[str, Any]]:
    if not isinstance(d, int) or d < 1:
        raise RdmdError(f"gaussian: d must be a positive integer, got {d!r}")
    if cov is not None:
        c = np.asarray(cov, dtype=np.float64)
        if c.ndim != 2 or c.shape[0] != c.shape[1]:
            raise RdmdError(f"gaussian: cov must be a square matrix, got shape {c.shape}")
        d = c.shape[0]
    else:
        s = 1.0 if std is None else float(std)
        c = np.eye(d) * s**2
    try:
        m = np.broadcast_to(np.asarray(mean, dtype=np.float64), (d,)).copy()
    except ValueError:
        raise RdmdError(f"gaussian: mean {mean!r} does not fit dimension {d}") from None
    try:
        chol = np.linalg.cholesky(c)
    except np.linalg.LinAlgError:
        raise RdmdError("gaussian: cov must be symmetric positive definite") from None

    def sample(n: int, rng: np.random.Generator) -> np.ndarray:
        return m + rng.standard_normal((n, d)) @ chol.T

    return sample, {"mean": m.tolist(), "cov": c.tolist()}


def _eight_gaussians(radius: float = 4.0, std: float = 0.4):
    angles = np.arange(8) * (2 * math.pi / 8)
    centers = radius * np.stack([np.cos(angles), np.sin(angles)], 1)

    def sample(n: int, rng: np.random.Generator) -> np.ndarray:
        return centers[rng.integers(0, 8, n)] + std * rng.standard_normal((n, 2))

    return sample, {"radius": radius, "std": std, "centres": centers.tolist()}


def _swissroll(noise: float = 0.25, scale: float = 1 / 3):
    def sample(n: int, rng: np.random.Generator) -> np.ndarray:
        t = 1.5 * math.pi * (1 + 2 * rng.random(n))
        pts = np.stack([t * np.cos(t), t * np.sin(t)], 1) * scale
        return pts + noise * rng.standard_normal((n, 2))

    return sample, {"noise": noise, "scale": scale}


def _moons(noise: float = 0.1, scale: float = 2.0):
    def sample(n: int, rng: np.random.Generator) -> np.ndarray:
        upper = rng.random(n) < 0.5
        t = math.pi * rng.random(n)
        x = np.where(upper, np.cos(t), 1 - np.cos(t))
        y = np.where(upper, np.sin(t), 0.5 - np.sin(t))
        pts = (np.stack([x, y], 1) - [0.5, 0.25]) * scale
        return pts + noise * rng.standard_normal((n, 2))

    return sample, {"noise": noise, "scale": scale}


BUILTIN_VECTORS: dict[str, Callable[..., Any]] = {
    "gaussian": _gaussian,
    "8gaussians": _eight_gaussians,
    "swissroll": _swissroll,
    "moons": _moons,
}


def parse_spec(spec: str) -> tuple[str, dict[str, Any]]:
    """``"name:k=v;k=v"`` -> ``(name, {k: v})`` with JSON values."""
    name, _, rest = spec.partition(":")
    params: dict[str, Any] = {}
    for part in filter(None, (p.strip() for p in rest.split(";"))):
        if "=" not in part:
            raise RdmdError(f"bad parameter {part!r} in {spec!r}; expected key=value")
        k, v = part.split("=", 1)
        try:
            params[k.strip()] = json.loads(v)
        except json.JSONDecodeError:
            raise RdmdError(f"bad value {v!r} for {k!r} in {spec!r} (JSON expected)") from None
    return name, params


def _spec_seed(spec: str, seed: int, salt: int) -> int:
    """Different distributions get different streams, so that e.g. ``gaussian`` and
    ``gaussian:std=1.5`` are never accidentally paired sample-for-sample."""
    return (zlib.crc32(spec.encode()) * 1_000_003 + seed * 7919 + salt) % (2**63)


def builtin(spec: str, n_train: int, n_test: int, seed: int) -> Domain:
    name, params = parse_spec(spec)
    try:
        sampler, info = BUILTIN_VECTORS[name](**params)
    except (TypeError, ValueError) as e:
        raise RdmdError(f"bad parameters for built-in {name!r}: {e}") from None
    train = sampler(n_train, np.random.default_rng(_spec_seed(spec, seed, 1)))
    test = sampler(n_test, np.random.default_rng(_spec_seed(spec, seed, 2)))
    return Domain(spec, torch.from_numpy(train).float(), torch.from_numpy(test).float(),
                  "vector", sampler, {"builtin": name, **info})


def fresh_batches(sampler: Callable[[int, np.random.Generator], np.ndarray],
                  encode: Callable[[torch.Tensor], torch.Tensor], batch: int,
                  rng: torch.Generator, rank: int = 0, world: int = 1,
                  device: torch.device | str = "cpu") -> Iterator[torch.Tensor]:
    """Batches drawn afresh from a built-in distribution, in the model's units.

    A built-in is a sampler, not a finite set: a teacher fitted to 5000 fixed points learns
    their empirical density (a few percent of its samples fall between the 8 Gaussians'
    modes). Each batch's seed comes from the run generator ``rng``, whose state is
    checkpointed, so a resumed run draws the same batches. Every rank draws the same global
    batch and keeps its slice, as :func:`rdmd.training.runtime.batches` does.
    """
    local = batch // world
    while True:
        yield fresh_draw(sampler, encode, batch, rng, device)[rank * local:(rank + 1) * local]


def fresh_draw(sampler: Callable[[int, np.random.Generator], np.ndarray],
               encode: Callable[[torch.Tensor], torch.Tensor], n: int, rng: torch.Generator,
               device: torch.device | str = "cpu") -> torch.Tensor:
    """``n`` points drawn afresh from a built-in, encoded, their seed taken from ``rng``."""
    seed = int(torch.randint(0, 2**62, (1,), generator=rng))
    pts = sampler(n, np.random.default_rng(seed))
    return encode(torch.from_numpy(np.ascontiguousarray(pts)).float()).to(device)


def check_array(a: np.ndarray, where: str) -> np.ndarray:
    """N x d finite floats, or a one-line error naming ``where``."""
    if a.dtype.kind not in "fiu":
        raise RdmdError(f"{where}: expected a numeric array, got dtype {a.dtype}")
    if a.ndim != 2:
        raise RdmdError(f"{where}: expected an N x d array, got shape {tuple(a.shape)}")
    if a.shape[0] < 2 or a.shape[1] < 1:
        raise RdmdError(f"{where}: need at least 2 samples of dimension >= 1, "
                        f"got shape {tuple(a.shape)}")
    bad = ~np.isfinite(a)
    if bad.any():
        row = int(np.argwhere(bad)[0][0])
        raise RdmdError(f"{where}: {int(bad.sum())} non-finite values (first in row {row})")
    return a.astype(np.float32)


def read_npy(path: str | Path) -> np.ndarray:
    p = Path(path)
    if not p.is_file():
        raise RdmdError(f"file not found: {p}")
    try:
        a = np.load(p, allow_pickle=False)
    except (ValueError, OSError) as e:
        raise RdmdError(f"{p}: not a readable .npy array ({e})") from None
    return check_array(a, str(p))


def load_npy(path: str | Path) -> Domain:
    """A user array, split once and for all: a fixed permutation (seed 0), the last 20% held
    out. The split does not depend on the run's seed, so teacher and distillation agree."""
    a = read_npy(path)
    perm = np.random.default_rng(NPY_SPLIT_SEED).permutation(len(a))
    n_test = max(1, int(round(NPY_TEST_FRACTION * len(a))))
    t = torch.from_numpy(a[perm])
    return Domain(str(path), t[:-n_test].contiguous(), t[-n_test:].contiguous(), "vector",
                  None, {"file": str(path), "n": len(a)})

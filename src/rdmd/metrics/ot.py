"""Optimal-transport metrics for vector data, exact where possible (POT's network simplex).

W2^2 alone cannot be read without its noise floor (two independent target sets of the same
size are not at distance 0), so the floor comes with it.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import ot
from scipy import linalg


def _np(a: Any) -> np.ndarray:
    if hasattr(a, "detach"):
        a = a.detach().cpu().numpy()
    return np.asarray(a, dtype=np.float64)


def _check_pair(a: np.ndarray, b: np.ndarray) -> None:
    if a.ndim != 2 or b.ndim != 2:
        raise ValueError(f"expected N x d arrays, got shapes {a.shape} and {b.shape}")
    if len(a) == 0 or len(b) == 0:
        raise ValueError("empty sample set")
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"dimension mismatch: {a.shape[1]} vs {b.shape[1]}")


def _plan(a: np.ndarray, b: np.ndarray, max_iter: int = 1_000_000) -> np.ndarray:
    wa = np.full(len(a), 1.0 / len(a))
    wb = np.full(len(b), 1.0 / len(b))
    return ot.emd(wa, wb, ot.dist(a, b, metric="sqeuclidean"), numItermax=max_iter)


def w2_squared(a: Any, b: Any, max_iter: int = 1_000_000) -> float:
    """Exact W2^2 between uniform empirical measures (squared Euclidean ground cost)."""
    a, b = _np(a), _np(b)
    _check_pair(a, b)
    wa = np.full(len(a), 1.0 / len(a))
    wb = np.full(len(b), 1.0 / len(b))
    return float(ot.emd2(wa, wb, ot.dist(a, b, metric="sqeuclidean"), numItermax=max_iter))


def w2_noise_floor(sets: list[tuple[Any, Any]]) -> dict[str, Any]:
    """W2^2 between independent target sets: what a perfect generator would score."""
    if not sets:
        raise ValueError("need at least one pair of sets for the noise floor")
    vals = [w2_squared(a, b) for a, b in sets]
    return {"mean": float(np.mean(vals)), "std": float(np.std(vals)),
            "min": float(np.min(vals)), "max": float(np.max(vals)), "values": vals,
            "n_pairs": len(vals)}


def floor_pairs_from_pool(pool: Any, n: int, n_pairs: int, rng: np.random.Generator
                          ) -> list[tuple[np.ndarray, np.ndarray]]:
    """Disjoint subsets of a finite pool, for data we cannot sample afresh."""
    p = _np(pool)
    if 2 * n > len(p):
        raise ValueError(f"pool of {len(p)} samples is too small for two disjoint sets of {n}")
    out = []
    for _ in range(n_pairs):
        idx = rng.permutation(len(p))
        out.append((p[idx[:n]], p[idx[n:2 * n]]))
    return out


def barycentric_ot_map(x: Any, y: Any) -> np.ndarray:
    """``T(x_i) = sum_j P_ij y_j / sum_j P_ij`` for the exact discrete OT plan P."""
    x, y = _np(x), _np(y)
    _check_pair(x, y)
    p = _plan(x, y)
    return (p @ y) / p.sum(1, keepdims=True)


def transport_cost(x: Any, gx: Any) -> float:
    """``mean ||G(x) - x||^2``, in the data's units."""
    x, gx = _np(x), _np(gx)
    return float(((gx - x) ** 2).sum(1).mean())


def ot_gap(x: Any, gx: Any, y: Any) -> float:
    """Distance of a learned map to the empirical OT map, relative to that map's own length."""
    x, gx = _np(x), _np(gx)
    t = barycentric_ot_map(x, y)
    return float(((gx - t) ** 2).sum(1).mean() / max(((t - x) ** 2).sum(1).mean(), 1e-300))


def crossing_fraction(x: Any, gx: Any, max_segments: int = 1000, seed: int = 0,
                      chunk: int = 500) -> float:
    """Fraction of pairs of segments ``[x_i, G(x_i)]`` that properly cross (2-D only).

    An OT map for the quadratic cost is cyclically monotone and never crosses; the fraction
    is the paper's visual proxy made a number.
    """
    x, gx = _np(x), _np(gx)
    if x.shape != gx.shape or x.ndim != 2 or x.shape[1] != 2:
        raise ValueError(f"crossings need two N x 2 arrays, got {x.shape} and {gx.shape}")
    n = len(x)
    if n < 2:
        return 0.0
    if n > max_segments:
        idx = np.random.default_rng(seed).choice(n, max_segments, replace=False)
        x, gx = x[idx], gx[idx]
        n = max_segments
    p, r = x, gx - x

    def orient(ax, ay, bx, by, cx, cy):  # sign of (b - a) x (c - a)
        return np.sign((bx - ax) * (cy - ay) - (by - ay) * (cx - ax))

    crossings = 0
    for s in range(0, n, chunk):
        i = np.arange(s, min(s + chunk, n))[:, None]
        j = np.arange(n)[None, :]
        mask = j > i
        a0x, a0y = p[i, 0], p[i, 1]
        a1x, a1y = a0x + r[i, 0], a0y + r[i, 1]
        b0x, b0y = p[j, 0], p[j, 1]
        b1x, b1y = b0x + r[j, 0], b0y + r[j, 1]
        o1 = orient(a0x, a0y, a1x, a1y, b0x, b0y)
        o2 = orient(a0x, a0y, a1x, a1y, b1x, b1y)
        o3 = orient(b0x, b0y, b1x, b1y, a0x, a0y)
        o4 = orient(b0x, b0y, b1x, b1y, a1x, a1y)
        hit = (o1 * o2 < 0) & (o3 * o4 < 0) & mask
        crossings += int(hit.sum())
    return crossings / (n * (n - 1) / 2)


def _sym_sqrt(m: np.ndarray) -> np.ndarray:
    w, v = np.linalg.eigh(0.5 * (m + m.T))
    return (v * np.sqrt(np.clip(w, 0, None))) @ v.T


def gaussian_ot_map(mean_s: Any, cov_s: Any, mean_t: Any, cov_t: Any
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Closed-form quadratic-cost OT map between Gaussians: ``T(x) = A x + b``."""
    ms, mt = _np(mean_s).reshape(-1), _np(mean_t).reshape(-1)
    s, c = _np(cov_s), _np(cov_t)
    s_half = _sym_sqrt(s)
    s_inv_half = linalg.inv(s_half)
    a = s_inv_half @ _sym_sqrt(s_half @ c @ s_half) @ s_inv_half
    a = 0.5 * (a + a.T)
    return a, mt - a @ ms


def relative_gaussian_ot_gap(x: Any, gx: Any, a: np.ndarray, b: np.ndarray) -> float:
    """Theorem 3.1's measure: ``E||G(x) - T(x)||^2 / E||T(x) - x||^2``."""
    x, gx = _np(x), _np(gx)
    t = x @ a.T + b
    return float(((gx - t) ** 2).sum(1).mean() / max(((t - x) ** 2).sum(1).mean(), 1e-300))


def vector_metrics(x: Any, gx: Any, y: Any, floor: dict | None = None,
                   gaussian_map: tuple[np.ndarray, np.ndarray] | None = None
                   ) -> dict[str, Any]:
    """All of the above for one translated held-out set, as JSON-ready floats."""
    x, gx, y = _np(x), _np(gx), _np(y)
    out: dict[str, Any] = {"w2_sq": w2_squared(gx, y), "transport_cost": transport_cost(x, gx),
                           "ot_gap": ot_gap(x, gx, y)}
    if x.shape[1] == 2:
        out["crossings"] = crossing_fraction(x, gx)
    if floor is not None:
        out["w2_floor_mean"] = floor["mean"]
        out["w2_floor_std"] = floor["std"]
        out["w2_over_floor"] = out["w2_sq"] / floor["mean"]
    if gaussian_map is not None:
        out["gaussian_ot_gap"] = relative_gaussian_ot_gap(x, gx, *gaussian_map)
    return out

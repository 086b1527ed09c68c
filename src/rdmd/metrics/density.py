"""Measures that use what is known about a built-in target: its density, its modes, its curve.

W2^2 on a few thousand points is dominated by sampling noise (for 8 Gaussians, by how many
points each mode happens to get), so it hardly sees mass smeared between the modes. What the
eye sees is measured here, always beside the value of true samples of the same size:

* ``mode_outliers``: share of points farther than 3 std from every centre (8 Gaussians);
* ``mode_width``: the spread of the points on the modes, in mode std (8 Gaussians): fewer
  points between the modes bought by too narrow modes shows here;
* ``log_density``: mean true log-density of the points (8 Gaussians, Gaussians);
* ``curve_distance`` and ``off_curve``: mean distance to the noiseless curve, and the share
  farther than 3 noise std from it (Swiss roll, two moons).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from rdmd.metrics.ot import _np, mode_outlier_share, mode_width

CURVE_POINTS = 20_000  # polyline vertices: spacing well below the noise of either curve


def mixture_log_density(points: Any, centres: Any, std: float) -> np.ndarray:
    """Log-density of an equal-weight isotropic Gaussian mixture, per point (stable)."""
    p, c = _np(points), _np(centres)
    d = p.shape[1]
    d2 = ((p[:, None, :] - c[None, :, :]) ** 2).sum(-1)
    log_comp = -0.5 * d2 / std**2 - d * math.log(std) - 0.5 * d * math.log(2 * math.pi)
    m = log_comp.max(1, keepdims=True)
    return (m[:, 0] + np.log(np.exp(log_comp - m).mean(1)))


def gaussian_log_density(points: Any, mean: Any, cov: Any) -> np.ndarray:
    """Log-density of ``N(mean, cov)`` per point."""
    p, m, c = _np(points), _np(mean).reshape(-1), np.atleast_2d(_np(cov))
    chol = np.linalg.cholesky(c)
    z = np.linalg.solve(chol, (p - m).T)
    logdet = 2 * np.log(np.diag(chol)).sum()
    return -0.5 * (z**2).sum(0) - 0.5 * logdet - 0.5 * len(m) * math.log(2 * math.pi)


def swissroll_curve(scale: float, n: int = CURVE_POINTS) -> np.ndarray:
    """The noiseless Swiss roll of :func:`rdmd.data.vectors._swissroll` as a polyline."""
    t = np.linspace(1.5 * math.pi, 4.5 * math.pi, n)
    return np.stack([t * np.cos(t), t * np.sin(t)], 1) * scale


def moons_curve(scale: float, n: int = CURVE_POINTS) -> np.ndarray:
    """Both noiseless half circles of :func:`rdmd.data.vectors._moons` as vertices."""
    t = np.linspace(0, math.pi, n // 2)
    upper = np.stack([np.cos(t), np.sin(t)], 1)
    lower = np.stack([1 - np.cos(t), 0.5 - np.sin(t)], 1)
    return (np.concatenate([upper, lower]) - [0.5, 0.25]) * scale


def curve_distance(points: Any, curve: np.ndarray) -> np.ndarray:
    """Distance of each point to the nearest curve vertex (a dense polyline: the error is
    below half the vertex spacing)."""
    from scipy.spatial import cKDTree

    dist, _ = cKDTree(curve).query(_np(points))
    return np.asarray(dist)


def _curve(info: dict[str, Any]) -> np.ndarray | None:
    name = info.get("builtin")
    if name == "swissroll":
        return swissroll_curve(float(info["scale"]))
    if name == "moons":
        return moons_curve(float(info["scale"]))
    return None


def known_measures(points: Any, info: dict[str, Any]) -> dict[str, float]:
    """The measures above that apply to a target described by ``info`` (a built-in's)."""
    p = _np(points)
    out: dict[str, float] = {}
    name = info.get("builtin")
    if "centres" in info and "std" in info:
        c, s = np.asarray(info["centres"], dtype=np.float64), float(info["std"])
        out["mode_outliers"] = mode_outlier_share(p, c, s)
        out["mode_width"] = mode_width(p, c, s)
        out["log_density"] = float(mixture_log_density(p, c, s).mean())
    elif name == "gaussian":
        out["log_density"] = float(gaussian_log_density(p, info["mean"], info["cov"]).mean())
    elif (curve := _curve(info)) is not None:
        dist = curve_distance(p, curve)
        out["curve_distance"] = float(dist.mean())
        out["off_curve"] = float((dist > 3 * float(info["noise"])).mean())
    return out


def known_measures_with_truth(points: Any, info: dict[str, Any],
                              sampler: Callable[[int, np.random.Generator], np.ndarray] | None,
                              seed: int = 0) -> dict[str, float]:
    """:func:`known_measures` of ``points``, each beside its value on as many true samples
    (``<name>_true``, a fresh draw with ``seed``), so a reader sees what perfect scores."""
    out = known_measures(points, info)
    if out and sampler is not None:
        true = known_measures(sampler(len(_np(points)), np.random.default_rng(seed)), info)
        out.update({f"{k}_true": v for k, v in true.items()})
    return out

"""Tests of the OT metrics against cases with known answers."""

from __future__ import annotations

import json

import numpy as np
import pytest

from rdmd.metrics import (
    barycentric_ot_map,
    crossing_fraction,
    floor_pairs_from_pool,
    gaussian_ot_map,
    mixture_modes,
    mode_outlier_share,
    ot_gap,
    relative_gaussian_ot_gap,
    transport_cost,
    vector_metrics,
    w2_noise_floor,
    w2_squared,
)


def _rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def _random_spd(d: int, rng: np.random.Generator) -> np.ndarray:
    m = rng.normal(size=(d, d))
    return m @ m.T + 0.5 * np.eye(d)


# ---------------------------------------------------------------------------- W2


def test_w2_self_is_zero():
    x = _rng().normal(size=(200, 3))
    assert w2_squared(x, x) == pytest.approx(0.0, abs=1e-12)


def test_w2_of_shift_is_squared_norm():
    x = _rng(1).normal(size=(150, 3))
    v = np.array([0.7, -1.3, 2.0])
    assert abs(w2_squared(x, x + v) - float(v @ v)) < 1e-9


def test_w2_symmetric_and_unequal_sizes():
    rng = _rng(2)
    a, b = rng.normal(size=(80, 2)), rng.normal(1.0, 1.0, size=(120, 2))
    assert w2_squared(a, b) == pytest.approx(w2_squared(b, a), rel=1e-10)
    assert w2_squared(a, b) > 0.5


def test_w2_1d_matches_sorted_matching():
    rng = _rng(3)
    a, b = rng.normal(size=(300, 1)), rng.exponential(size=(300, 1))
    expected = float(np.mean((np.sort(a[:, 0]) - np.sort(b[:, 0])) ** 2))
    assert w2_squared(a, b) == pytest.approx(expected, rel=1e-10, abs=1e-12)


def test_w2_rejects_bad_input():
    with pytest.raises(ValueError, match="dimension"):
        w2_squared(np.zeros((5, 2)), np.zeros((5, 3)))
    with pytest.raises(ValueError, match="empty"):
        w2_squared(np.zeros((0, 2)), np.zeros((5, 2)))


def test_w2_accepts_torch_tensors():
    torch = pytest.importorskip("torch")
    x = torch.randn(50, 2, generator=torch.Generator().manual_seed(0))
    v = torch.tensor([1.0, 2.0])
    assert w2_squared(x, x + v) == pytest.approx(5.0, rel=1e-5)


# ---------------------------------------------------------------- noise floor


def test_floor_pairs_are_disjoint():
    pool = np.arange(100, dtype=float)[:, None] * np.ones((1, 2))  # unique rows
    pairs = floor_pairs_from_pool(pool, 40, 5, _rng(4))
    assert len(pairs) == 5
    for a, b in pairs:
        assert a.shape == b.shape == (40, 2)
        ia, ib = set(a[:, 0].tolist()), set(b[:, 0].tolist())
        assert len(ia) == 40 and len(ib) == 40 and not ia & ib
    # different pairs are different draws
    assert not np.array_equal(pairs[0][0], pairs[1][0])


def test_floor_pairs_pool_too_small():
    with pytest.raises(ValueError, match="too small"):
        floor_pairs_from_pool(np.zeros((9, 2)), 5, 1, _rng())


def test_noise_floor_dict():
    rng = _rng(5)
    sets = [(rng.normal(size=(60, 2)), rng.normal(size=(60, 2))) for _ in range(3)]
    fl = w2_noise_floor(sets)
    assert set(fl) == {"mean", "std", "min", "max", "values", "n_pairs"}
    assert fl["n_pairs"] == 3 and len(fl["values"]) == 3
    assert fl["values"][1] == pytest.approx(w2_squared(*sets[1]))
    assert fl["min"] <= fl["mean"] <= fl["max"] and fl["std"] >= 0 and fl["mean"] > 0
    json.dumps(fl)
    with pytest.raises(ValueError):
        w2_noise_floor([])


# ------------------------------------------------------------ barycentric map


def test_barycentric_equal_sizes_is_permutation_of_y():
    rng = _rng(6)
    x, y = rng.normal(size=(70, 2)), rng.uniform(-2, 2, size=(70, 2))
    t = barycentric_ot_map(x, y)
    d = ((t[:, None, :] - y[None, :, :]) ** 2).sum(-1)
    nearest = d.argmin(1)
    assert np.allclose(d.min(1), 0.0, atol=1e-18)
    assert sorted(nearest.tolist()) == list(range(70))


def test_barycentric_of_shift_is_shift():
    x = _rng(7).normal(size=(90, 3))
    v = np.array([3.0, -1.0, 0.5])
    np.testing.assert_allclose(barycentric_ot_map(x, x + v), x + v, atol=1e-12)


def test_barycentric_unequal_sizes_averages():
    # two sources, four targets: each source gets the mean of its two nearest targets
    x = np.array([[0.0, 0.0], [10.0, 0.0]])
    y = np.array([[0.0, 1.0], [0.0, -1.0], [10.0, 1.0], [10.0, -1.0]])
    np.testing.assert_allclose(barycentric_ot_map(x, y), x, atol=1e-12)


def test_barycentric_kept_map_is_the_sets_own():
    # the map is kept by the sets' bytes: the same sets give it again (and a caller's edit
    # of the result does not leak into the kept copy), other sets of the same shape do not
    rng = _rng(9)
    x, y = rng.normal(size=(60, 2)), rng.normal(1.0, 0.3, size=(60, 2))
    t = barycentric_ot_map(x, y)
    t[:] = 0.0
    np.testing.assert_array_equal(barycentric_ot_map(x, y), barycentric_ot_map(x.copy(), y))
    assert not np.allclose(barycentric_ot_map(x, y), 0.0)
    y2 = y.copy()
    y2[0] += 5.0
    assert not np.allclose(barycentric_ot_map(x, y2), barycentric_ot_map(x, y))


def test_ot_gap_and_transport_cost():
    rng = _rng(8)
    x, y = rng.normal(size=(80, 2)), rng.normal(2.0, 0.5, size=(80, 2))
    t = barycentric_ot_map(x, y)
    assert ot_gap(x, t, y) == pytest.approx(0.0, abs=1e-12)
    assert ot_gap(x, x, y) == pytest.approx(1.0)
    assert ot_gap(x, rng.permutation(t), y) > 0.1
    assert transport_cost(x, x + np.array([3.0, 4.0])) == pytest.approx(25.0)
    with pytest.raises(ValueError):
        transport_cost(x, x[:-1])


# ---------------------------------------------------------------- crossings


def _brute_crossings(x: np.ndarray, gx: np.ndarray) -> float:
    def orient(p, q, r):
        return np.sign((q[0] - p[0]) * (r[1] - p[1]) - (q[1] - p[1]) * (r[0] - p[0]))

    n, hits = len(x), 0
    for i in range(n):
        for j in range(i + 1, n):
            a, b, c, d = x[i], gx[i], x[j], gx[j]
            if orient(a, b, c) * orient(a, b, d) < 0 and orient(c, d, a) * orient(c, d, b) < 0:
                hits += 1
    return hits / (n * (n - 1) / 2)


def test_crossing_hand_made():
    x = np.array([[0.0, 0.0], [0.0, 1.0]])
    assert crossing_fraction(x, np.array([[1.0, 1.0], [1.0, 0.0]])) == 1.0  # an X
    assert crossing_fraction(x, x + np.array([1.0, 0.0])) == 0.0  # parallel
    # touching at an endpoint is not a proper crossing
    assert crossing_fraction(x, np.array([[0.5, 0.5], [0.5, 0.5]])) == 0.0


def test_crossing_shift_and_swap():
    rng = _rng(9)
    x = rng.normal(size=(300, 2))
    assert crossing_fraction(x, x + np.array([0.3, -2.0])) == 0.0
    # two points swapped across each other: (0,0)->(2,0.5) and (2,0)->(0,0.5) meet at (1,0.25)
    p = np.array([[0.0, 0.0], [2.0, 0.0]])
    assert crossing_fraction(p, np.array([[2.0, 0.5], [0.0, 0.5]])) == 1.0
    # swapping two targets of the shift map makes the segments the diagonals of a
    # parallelogram, which always cross
    gx = x + np.array([0.3, -2.0])
    gx[[0, 1]] = gx[[1, 0]]
    assert crossing_fraction(x, gx) >= 1 / (300 * 299 / 2)


def test_crossing_matches_brute_force_and_chunking():
    rng = _rng(10)
    x, gx = rng.normal(size=(120, 2)), rng.normal(size=(120, 2))
    ref = _brute_crossings(x, gx)
    assert ref > 0
    assert crossing_fraction(x, gx) == pytest.approx(ref)
    assert crossing_fraction(x, gx, chunk=7) == pytest.approx(ref)


def test_crossing_subsample_and_errors():
    rng = _rng(11)
    x, gx = rng.normal(size=(3000, 2)), rng.normal(size=(3000, 2))
    f = crossing_fraction(x, gx, max_segments=400, seed=1)
    assert 0.0 < f < 1.0
    assert f == crossing_fraction(x, gx, max_segments=400, seed=1)
    with pytest.raises(ValueError):
        crossing_fraction(np.zeros((5, 3)), np.zeros((5, 3)))


# ---------------------------------------------------------------- Gaussians


def test_gaussian_map_isotropic():
    a, b = gaussian_ot_map(np.zeros(2), np.eye(2), np.array([1.0, -1.0]), 2.25 * np.eye(2))
    np.testing.assert_allclose(a, 1.5 * np.eye(2), atol=1e-12)
    np.testing.assert_allclose(b, [1.0, -1.0], atol=1e-12)


def test_gaussian_map_pushes_cov_forward():
    rng = _rng(12)
    s, c = _random_spd(3, rng), _random_spd(3, rng)
    a, _ = gaussian_ot_map(np.zeros(3), s, np.zeros(3), c)
    np.testing.assert_allclose(a, a.T, atol=1e-12)
    assert np.linalg.eigvalsh(a).min() > 0
    np.testing.assert_allclose(a @ s @ a, c, rtol=1e-9, atol=1e-9)


def test_gaussian_map_empirical_pushforward():
    rng = _rng(13)
    ms, mt = rng.normal(size=3), rng.normal(size=3)
    s, c = _random_spd(3, rng), _random_spd(3, rng)
    a, b = gaussian_ot_map(ms, s, mt, c)
    z = rng.multivariate_normal(ms, s, size=200_000) @ a.T + b
    np.testing.assert_allclose(z.mean(0), mt, atol=0.05 * np.sqrt(np.diag(c)).max())
    np.testing.assert_allclose(np.cov(z.T), c, atol=0.05 * np.abs(c).max())


def test_relative_gaussian_gap():
    rng = _rng(14)
    s, c = _random_spd(2, rng), _random_spd(2, rng)
    a, b = gaussian_ot_map(np.zeros(2), s, np.ones(2), c)
    x = rng.multivariate_normal(np.zeros(2), s, size=2000)
    t = x @ a.T + b
    assert relative_gaussian_ot_gap(x, t, a, b) == pytest.approx(0.0, abs=1e-20)
    th = 0.4
    rot = np.array([[np.cos(th), -np.sin(th)], [np.sin(th), np.cos(th)]])
    m = t.mean(0)
    assert relative_gaussian_ot_gap(x, (t - m) @ rot.T + m, a, b) > 0.01


# ---------------------------------------------------------------- bundle


def test_vector_metrics_bundle():
    rng = _rng(15)
    x, y = rng.normal(size=(100, 2)), rng.normal(1.0, 1.0, size=(100, 2))
    gx = x + 1.0
    a, b = gaussian_ot_map(np.zeros(2), np.eye(2), np.ones(2), np.eye(2))
    fl = {"mean": 0.05, "std": 0.01}
    res = vector_metrics(x, gx, y, floor=fl, gaussian_map=(a, b))
    assert set(res) == {"w2_sq", "transport_cost", "ot_gap", "crossings", "w2_floor_mean",
                        "w2_floor_std", "w2_over_floor", "gaussian_ot_gap"}
    assert all(type(v) is float for v in res.values())
    assert res["crossings"] == 0.0
    assert res["transport_cost"] == pytest.approx(2.0)
    assert res["gaussian_ot_gap"] == pytest.approx(0.0, abs=1e-20)
    assert res["w2_over_floor"] == pytest.approx(res["w2_sq"] / 0.05)
    json.dumps(res)
    res3 = vector_metrics(rng.normal(size=(50, 3)), rng.normal(size=(50, 3)),
                          rng.normal(size=(60, 3)))
    assert set(res3) == {"w2_sq", "transport_cost", "ot_gap"}


# ---------------------------------------------------------------------------- mode outliers


def _eight_gaussians(n: int, seed: int = 0):
    from rdmd.data import load_domain

    dom = load_domain("8gaussians", n, 10, seed)
    centres, std = mixture_modes(dom.info)
    return dom.train.double().numpy(), centres, std


def test_eight_gaussians_expose_their_modes():
    _, centres, std = _eight_gaussians(10)
    angles = np.arange(8) * np.pi / 4
    np.testing.assert_allclose(centres, 4 * np.stack([np.cos(angles), np.sin(angles)], 1))
    assert std == 0.4
    assert mixture_modes({"mean": [0.0], "cov": [[1.0]]}) is None  # a Gaussian has no modes


def test_mode_outliers_exact_on_constructed_points():
    _, centres, std = _eight_gaussians(10)
    assert mode_outlier_share(np.repeat(centres, 5, 0), centres, std) == 0.0
    assert mode_outlier_share(np.zeros((40, 2)), centres, std) == 1.0
    # just inside and just outside 3 std of a centre: exactly half
    pts = centres[:2] + np.array([[3 * std - 1e-6, 0.0], [0.0, 3 * std + 1e-6]])
    assert mode_outlier_share(pts, centres, std) == 0.5
    assert mode_outlier_share(pts, centres, std, k=4.0) == 0.0


def test_mode_outliers_of_true_samples_match_the_rayleigh_tail():
    """Radial distance of a 2-D Gaussian is Rayleigh: P(r > 3 std) = exp(-4.5) = 1.11%."""
    n = 50_000
    pts, centres, std = _eight_gaussians(n, seed=3)
    p = np.exp(-4.5)
    assert abs(mode_outlier_share(pts, centres, std) - p) < 4 * np.sqrt(p * (1 - p) / n)


def test_mode_outliers_reject_bad_input():
    with pytest.raises(ValueError):
        mode_outlier_share(np.zeros((3, 2)), np.zeros((2, 3)), 1.0)
    with pytest.raises(ValueError):
        mode_outlier_share(np.zeros((3, 2)), np.zeros((2, 2)), 0.0)


def test_translation_evaluation_reports_mode_outliers_for_a_mixture_target():
    from types import SimpleNamespace

    import torch

    from rdmd.data import Normalizer, load_domain
    from rdmd.evaluation import evaluate_translation

    class Identity(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.p = torch.nn.Parameter(torch.zeros(1))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x

    src = load_domain("gaussian", 10, 500, 0)
    cfg = SimpleNamespace(floor_pairs=1)
    res = evaluate_translation(Identity(), Normalizer.identity(), src,
                               load_domain("8gaussians", 10, 500, 0), cfg, floor=False)
    # N(0, I) left in place lies far from a ring of radius 4: (almost) every point an outlier
    assert res["mode_outliers"] > 0.95
    res = evaluate_translation(Identity(), Normalizer.identity(), src,
                               load_domain("gaussian:std=2", 10, 500, 0), cfg, floor=False)
    assert "mode_outliers" not in res


def test_vector_metrics_add_mode_outliers_only_with_modes():
    pts, centres, std = _eight_gaussians(200)
    x = _rng(16).normal(size=pts.shape)
    res = vector_metrics(x, pts, pts, modes=(centres, std))
    assert res["mode_outliers"] == mode_outlier_share(pts, centres, std)
    assert "mode_outliers" not in vector_metrics(x, pts, pts)

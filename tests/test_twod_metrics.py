"""Measures that see what the eye sees on the 2-D built-ins, the stable W2 estimate, and the
built-ins' fresh draws each batch."""

from __future__ import annotations

import json
import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from scipy.stats import multivariate_normal

from rdmd import evaluation, metrics
from rdmd.config import DistillConfig, TeacherConfig, config_from_saved
from rdmd.data import Normalizer, load_domain
from rdmd.data.vectors import builtin, fresh_batches
from rdmd.metrics.density import (
    gaussian_log_density,
    mixture_log_density,
    moons_curve,
    swissroll_curve,
)


def test_mixture_log_density_matches_scipy() -> None:
    dom = builtin("8gaussians", 10, 10, 0)
    c, s = np.asarray(dom.info["centres"]), dom.info["std"]
    pts = np.array([[4.0, 0.0], [0.0, 0.0], [2.8, 2.8], [10.0, -3.0]])
    want = np.log(np.mean([multivariate_normal(m, s**2 * np.eye(2)).pdf(pts) for m in c], 0))
    np.testing.assert_allclose(mixture_log_density(pts, c, s), want, rtol=1e-9)
    # far out the plain sum underflows; the log-sum-exp form stays finite
    assert np.isfinite(mixture_log_density(np.array([[80.0, 80.0]]), c, s)).all()


def test_gaussian_log_density_matches_scipy() -> None:
    mean, cov = [1.0, -2.0], [[2.0, 0.5], [0.5, 1.0]]
    pts = np.random.default_rng(0).normal(size=(5, 2))
    np.testing.assert_allclose(gaussian_log_density(pts, mean, cov),
                               multivariate_normal(mean, cov).logpdf(pts), rtol=1e-9)


@pytest.mark.parametrize("name", ["swissroll", "moons"])
def test_noiseless_samples_lie_on_the_curve(name: str) -> None:
    """The curve is the sampler's own: with zero noise every sample is on it."""
    dom = builtin(f"{name}:noise=0", 10, 10, 0)
    pts = dom.sampler(2000, np.random.default_rng(0))
    res = metrics.known_measures(pts, dom.info)
    assert res["curve_distance"] < 2e-3  # (off_curve needs noise > 0: its unit)


def test_curve_distance_of_an_offset_point() -> None:
    # the top of the upper moon, (0, 1) before centring and scaling, moved 0.3 up
    top = (np.array([0.0, 1.0]) - [0.5, 0.25]) * 2.0
    d = metrics.curve_distance(top[None] + [0.0, 0.3], moons_curve(2.0))
    assert d[0] == pytest.approx(0.3, abs=1e-3)
    # the swiss roll's innermost end, (t cos t, t sin t)/3 at t = 1.5 pi, moved outwards
    t = 1.5 * math.pi
    end = np.array([t * math.cos(t), t * math.sin(t)]) / 3
    assert metrics.curve_distance(end[None] * 1.0, swissroll_curve(1 / 3))[0] < 1e-6


@pytest.mark.parametrize("spec,keys", [
    ("8gaussians", {"mode_outliers", "mode_width", "log_density"}),
    ("gaussian", {"log_density"}),
    ("swissroll", {"curve_distance", "off_curve"}),
    ("moons", {"curve_distance", "off_curve"}),
])
def test_true_samples_score_like_the_truth(spec: str, keys: set[str]) -> None:
    """Each measure on true samples sits beside its ``_true`` value within sampling error,
    and a smeared set (everything at the origin) reads far off."""
    dom = builtin(spec, 10, 10, 0)
    pts = dom.sampler(4000, np.random.default_rng(7))
    res = metrics.known_measures_with_truth(pts, dom.info, dom.sampler, seed=1)
    assert set(res) == keys | {f"{k}_true" for k in keys}
    for k in keys:
        tol = 0.006 if k in ("mode_outliers", "off_curve") else 0.05 * abs(res[k + "_true"])
        assert abs(res[k] - res[k + "_true"]) < tol, k
    bad = metrics.known_measures(np.zeros((100, 2)), dom.info)
    if "mode_outliers" in bad:
        assert bad["mode_outliers"] == 1.0
    if "log_density" in bad and spec != "gaussian":
        assert bad["log_density"] < res["log_density_true"] - 10
    if "off_curve" in bad and spec == "swissroll":
        assert bad["off_curve"] == 1.0


def test_mode_width_sees_modes_drawn_too_narrow() -> None:
    """True samples read the truncated-Gaussian value (0.974); the same modes drawn at 0.7x
    their std read about 0.7, though they put fewer points between the modes."""
    dom = builtin("8gaussians", 10, 10, 0)
    centres, std = np.asarray(dom.info["centres"]), dom.info["std"]
    rng = np.random.default_rng(3)
    true = dom.sampler(20_000, rng)
    exact = math.sqrt(1 - 9 * math.exp(-4.5) / (2 * (1 - math.exp(-4.5))))
    assert abs(metrics.mode_width(true, centres, std) - exact) < 0.01
    narrow = centres[rng.integers(0, 8, 20_000)] + 0.7 * std * rng.standard_normal((20_000, 2))
    assert abs(metrics.mode_width(narrow, centres, std) - 0.7) < 0.02
    assert metrics.mode_outlier_share(narrow, centres, std) < 0.001
    assert math.isnan(metrics.mode_width(np.zeros((3, 2)), centres, std))


def test_stable_measures_read_the_truth_within_their_standard_error() -> None:
    """On 20000 fresh points the off-mode share of true samples lies within a few standard
    errors of its true value, which is a tenth of a point: fine enough for a 1.5% target."""
    dom = builtin("8gaussians", 10, 10, 0)
    res = evaluation.stable_measures(dom.sampler(20_000, np.random.default_rng(4)), dom)
    p_exact = math.exp(-4.5)  # P(|z| > 3) for a 2-D standard normal
    assert res["density_n"] == 20_000
    assert res["mode_outliers_stable_se"] < 0.001
    assert abs(res["mode_outliers_stable"] - p_exact) < 4 * res["mode_outliers_stable_se"]
    assert abs(res["mode_outliers_stable_true"] - p_exact) < 4 * res["mode_outliers_stable_se"]
    smeared = evaluation.stable_measures(0.5 * dom.sampler(2000, np.random.default_rng(5)),
                                         dom)
    assert smeared["mode_outliers_stable"] > 0.9
    file_like = SimpleNamespace(sampler=None, info={"file": "x.npy"})
    assert evaluation.stable_measures(np.zeros((5, 2)), file_like) == {}  # type: ignore[arg-type]


def test_files_and_unknown_targets_have_no_known_measures() -> None:
    assert metrics.known_measures(np.zeros((5, 2)), {"file": "x.npy"}) == {}
    assert metrics.known_measures_with_truth(np.zeros((5, 2)), {}, None) == {}


def test_w2_stable_reads_one_for_the_truth_and_more_for_a_shifted_set() -> None:
    dom = builtin("8gaussians", 10, 10, 0)
    rng = np.random.default_rng(0)
    n, k = 300, 8

    def sets() -> list[np.ndarray]:
        return [dom.sampler(n, rng) for _ in range(k)]

    floor = list(zip(sets(), sets(), strict=True))
    good = metrics.w2_stable(sets(), floor)
    assert abs(good["w2_over_floor_stable"] - 1) < 4 * good["w2_over_floor_stable_se"]
    assert 0 < good["w2_over_floor_stable_se"] < 0.5
    shifted = metrics.w2_stable([s + 0.5 for s in sets()], floor)
    assert shifted["w2_over_floor_stable"] > 1.5
    assert shifted["w2_stable_pairs"] == k and shifted["w2_stable_n"] == n
    with pytest.raises(ValueError):
        metrics.w2_stable(sets()[:2], floor)


def test_fresh_batches_are_new_every_step_and_replay_from_the_generator_state() -> None:
    dom = builtin("8gaussians", 10, 10, 0)
    rng = torch.Generator().manual_seed(3)
    it = fresh_batches(dom.sampler, lambda t: t, 64, rng)
    a = next(it)
    state = rng.get_state()
    b, c = next(it), next(it)
    assert a.shape == (64, 2) and not torch.equal(a, b)
    rng.set_state(state)  # a resumed run restores the generator: the same batches follow
    it2 = fresh_batches(dom.sampler, lambda t: t, 64, rng)
    assert torch.equal(next(it2), b) and torch.equal(next(it2), c)
    # ranks keep disjoint slices of one global batch
    r0 = next(fresh_batches(dom.sampler, lambda t: t, 64,
                            torch.Generator().manual_seed(5), rank=0, world=2))
    r1 = next(fresh_batches(dom.sampler, lambda t: t, 64,
                            torch.Generator().manual_seed(5), rank=1, world=2))
    full = next(fresh_batches(dom.sampler, lambda t: t, 64, torch.Generator().manual_seed(5)))
    assert torch.equal(torch.cat([r0, r1]), full)


def test_old_saved_configs_keep_training_on_their_finite_set() -> None:
    assert config_from_saved(TeacherConfig, {"steps": 5}, "old").fresh_data is False
    assert config_from_saved(DistillConfig, {"steps": 5}, "old").fresh_data is False
    assert TeacherConfig().fresh_data is True and DistillConfig().fresh_data is True


def test_teacher_trains_on_fresh_draws_and_reports_the_measures(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch
                                                                ) -> None:
    from rdmd.training import runtime, train_teacher

    monkeypatch.setattr(evaluation, "STABLE_N", 100)
    monkeypatch.setattr(evaluation, "STABLE_PAIRS", 3)
    seen = []
    orig = runtime.data_batches

    def spy(dom, norm, data, cfg, rng, d, device):  # type: ignore[no-untyped-def]
        it = orig(dom, norm, data, cfg, rng, d, device)
        seen.append(type(it).__name__)
        return it

    monkeypatch.setattr("rdmd.training.teacher.data_batches", spy)
    out = train_teacher("8gaussians", tmp_path / "t", {"steps": 3, "batch_size": 32,
                                                       "n_test": 200, "sample_steps": 4},
                        progress=False)
    res = json.loads((out / "metrics.json").read_text())
    for k in ("mode_outliers", "mode_outliers_true", "log_density", "log_density_true",
              "w2_over_floor_stable", "w2_over_floor_stable_se", "mode_outliers_stable",
              "mode_outliers_stable_true", "mode_outliers_stable_se", "log_density_stable"):
        assert isinstance(res[k], float), k
    assert res["density_n"] == 300
    assert json.loads((out / "config.json").read_text())["config"]["fresh_data"] is True
    assert seen == ["generator"]


def test_translation_evaluation_reports_curve_measures_and_stable_w2(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(evaluation, "STABLE_N", 100)
    monkeypatch.setattr(evaluation, "STABLE_PAIRS", 3)

    class Identity(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.p = torch.nn.Parameter(torch.zeros(1))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x

    src, tgt = load_domain("moons", 10, 300, 1), load_domain("moons", 10, 300, 0)
    res = evaluation.evaluate_translation(Identity(), Normalizer.identity(), src, tgt,
                                          SimpleNamespace(floor_pairs=2))
    assert res["off_curve"] < 0.02 and res["off_curve_true"] < 0.02
    assert res["off_curve_stable"] < 0.02 and res["density_n"] == 300  # 3 sets of 100
    assert res["w2_stable_n"] == 100 and res["w2_stable_pairs"] == 3
    assert abs(res["w2_over_floor_stable"] - 1) < 5 * res["w2_over_floor_stable_se"]

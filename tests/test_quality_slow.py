"""Long quality runs (minutes each): ``python -m pytest -m slow``.

Not part of the default suite; they reproduce headline figures of docs/results.md at full
length, so a regression in the method shows up as a failed threshold.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from rdmd.config import DistillConfig, TeacherConfig
from rdmd.training import distill, train_teacher

sys.path.insert(0, str(Path(__file__).parents[1] / "experiments"))

pytestmark = pytest.mark.slow

#: what the eleventh and twelfth sessions changed in the 2-D defaults, pinned back so these
#: runs reproduce the figures they were written for (the new defaults are measured in
#: docs/twod.md; the steps these tests set stand in for the step defaults)
BEFORE_OT_START = {"ot_start": 0, "batch_size": 512}
TEACHER_BEFORE = {"p_mean": -1.2, "guide_at": 0.0, "sample_churn": 0.0}


def test_gaussian_to_anisotropic_gaussian_d2_reaches_ot_map(tmp_path: Path) -> None:
    """Theorem 3.1: at a small lambda the generator is within 5% of the closed-form OT map."""
    from thm31_gaussian_ot import target_spec

    t = train_teacher(target_spec(2), tmp_path / "t",
                      TeacherConfig(steps=10_000, **TEACHER_BEFORE), progress=False)
    r = distill("gaussian:d=2", t, tmp_path / "r",
                DistillConfig(lam=0.01, steps=10_000, ema_decay=0.0, **BEFORE_OT_START),
                progress=False)
    m = json.loads((r / "metrics.json").read_text())
    assert m["gaussian_ot_gap"] <= 0.05, m


def test_eight_gaussians_fit_within_floor_budget(tmp_path: Path) -> None:
    """Gaussian -> 8 Gaussians at the recommended lambda: W2^2 at most 2.5x the noise floor."""
    t = train_teacher("8gaussians", tmp_path / "t",
                      TeacherConfig(steps=10_000, **TEACHER_BEFORE), progress=False)
    r = distill("gaussian", t, tmp_path / "r",
                DistillConfig(lam=0.05, steps=10_000, floor_pairs=10, ema_decay=0.0,
                              **BEFORE_OT_START),
                progress=False)
    m = json.loads((r / "metrics.json").read_text())
    assert m["w2_over_floor"] <= 2.5, m


def test_eight_gaussians_fewer_crossings_than_plain_dmd(tmp_path: Path) -> None:
    """Issue 5's 8-Gaussians target (docs/results.md, `--n-train 50000` subsection): at
    lambda = 0.1, W2^2 at most 2.5x the floor and at most a third of lambda = 0's crossings.

    50k training samples: with the default 5000 the teacher alone sits near the bound."""
    n = 50_000
    t = train_teacher("8gaussians", tmp_path / "t", TeacherConfig(steps=10_000, n_train=n,
                                                               **TEACHER_BEFORE),
                      progress=False)
    res = {}
    for lam in (0.0, 0.1):
        r = distill("gaussian", t, tmp_path / f"r{lam:g}", DistillConfig(
            lam=lam, steps=20_000, sigma_g=10.0, lr_generator=1e-4, ema_decay=0.999,
            floor_pairs=10, n_train=n, **BEFORE_OT_START), progress=False)
        res[lam] = json.loads((r / "metrics.json").read_text())
    assert res[0.1]["w2_over_floor"] <= 2.5, res[0.1]
    assert res[0.1]["crossings"] <= res[0.0]["crossings"] / 3, res


def test_twod_defaults_reach_issue_15_figures(tmp_path: Path) -> None:
    """Issue 15 with no key set (docs/twod.md, "A guided teacher"; about 3 minutes): the
    guided teacher at most 1.5% off the 8 Gaussians' modes with the modes at their width and
    W2 at most 1.2x the floor; RDMD from N(0, I) at most 4% off the modes and 1.4x."""
    t = train_teacher("8gaussians", tmp_path / "t", TeacherConfig(), progress=False)
    r = distill("gaussian", t, tmp_path / "r", DistillConfig(), progress=False)
    mt = json.loads((t / "metrics.json").read_text())
    mr = json.loads((r / "metrics.json").read_text())
    assert mt["mode_outliers_stable"] <= 0.015, mt
    assert abs(mt["mode_width_stable"] / mt["mode_width_stable_true"] - 1) <= 0.03, mt
    assert mt["w2_over_floor_stable"] <= 1.2, mt
    assert mr["mode_outliers_stable"] <= 0.04, mr
    assert mr["w2_over_floor_stable"] <= 1.4, mr


def test_thm31_d8_potential_within_two_percent_of_the_ot_map(tmp_path: Path) -> None:
    """Theorem 3.1 in d = 8 with the defaults and one key (docs/twod.md, "Theorem 3.1 with
    one key"; about 15 minutes on one core): the gradient-field generator, at its own rate
    defaults, ends within 2% of the closed-form OT map at lambda 0.01."""
    from thm31_gaussian_ot import target_spec

    t = train_teacher(target_spec(8), tmp_path / "t", TeacherConfig(), progress=False)
    r = distill("gaussian:d=8", t, tmp_path / "r",
                DistillConfig(lam=0.01, generator="potential"), progress=False)
    m = json.loads((r / "metrics.json").read_text())
    assert m["gaussian_ot_gap"] <= 0.02, m


def test_thm31_d2_potential_within_one_percent_of_the_ot_map(tmp_path: Path) -> None:
    """Theorem 3.1 in d = 2 with the 2-D defaults and one key, the gradient-field generator
    (which 2-D data start at the OT map too): within 1% of the closed-form map at lambda
    0.005 (about 3 minutes)."""
    from thm31_gaussian_ot import target_spec

    t = train_teacher(target_spec(2), tmp_path / "t", TeacherConfig(), progress=False)
    r = distill("gaussian:d=2", t, tmp_path / "r",
                DistillConfig(lam=0.005, generator="potential"), progress=False)
    m = json.loads((r / "metrics.json").read_text())
    assert m["gaussian_ot_gap"] <= 0.01, m

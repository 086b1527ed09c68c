"""The Frechet distance's split (experiments/fd_anatomy.py) is exact, its offset cosine reads
a shift towards the sources, and the detail measure sees a blur."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

EXPERIMENTS = Path(__file__).resolve().parents[1] / "experiments"
sys.path.insert(0, str(EXPERIMENTS))
import fd_anatomy  # noqa: E402

from rdmd.metrics.image import frechet_distance  # noqa: E402


def test_split_sums_to_the_frechet_distance_and_finds_the_shift() -> None:
    rng = np.random.default_rng(0)
    ref = rng.normal(size=(400, 6))
    ref -= ref.mean(0)  # so the shifted sets' offsets are exactly their shifts
    sources = rng.normal(size=(400, 6)) + np.array([3.0, 0, 0, 0, 0, 0])
    toward = ref * 0.8 + np.array([0.5, 0, 0, 0, 0, 0])  # narrower, shifted towards sources
    away = ref + np.array([0, 0.5, 0, 0, 0, 0])  # shifted across
    s = fd_anatomy.split_fd(toward, ref, sources)
    assert s["fd"] == pytest.approx(frechet_distance(toward, ref))
    assert s["mean_term"] + s["cov_term"] == pytest.approx(s["fd"])
    assert s["mean_term"] == pytest.approx(0.25, rel=1e-9)
    assert s["trace"] == pytest.approx(0.64 * s["trace_ref"], rel=1e-9)
    assert s["offset_cos_to_sources"] > 0.9
    assert s["mean_term_along_sources"] == pytest.approx(
        s["offset_cos_to_sources"] ** 2 * s["mean_term"])
    assert abs(fd_anatomy.split_fd(away, ref, sources)["offset_cos_to_sources"]) < 0.2


def test_detail_falls_under_a_blur() -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.rand(8, 1, 16, 16, generator=g) * 2 - 1
    k = torch.full((1, 1, 3, 3), 1 / 9)
    blurred = torch.nn.functional.conv2d(x, k, padding=1)
    assert fd_anatomy.detail(blurred) < 0.3 * fd_anatomy.detail(x)
    assert fd_anatomy.detail(torch.zeros(2, 3, 8, 8)) == 0.0


def test_plot_runs_draws_each_run(tmp_path: Path) -> None:
    def row(name: str, fd: float) -> dict:
        return {"set": name, "fd": fd, "mean_term": fd / 2, "cov_term": fd / 2, "trace": 1.0,
                "trace_ref": 1.2, "detail": 0.01 * fd}

    rows = [row("real (floor set)", 0.2), row("teacher (18 Heun steps)", 0.4),
            row("sources (held out)", 70.0), row("run_a @ 100", 4.0), row("run_a @ 200", 3.0)]
    out = tmp_path / "fig.png"
    fd_anatomy.plot_runs(rows, out, "fd_test")
    assert out.stat().st_size > 1000
    json.dumps(rows)  # the rows as the script writes them

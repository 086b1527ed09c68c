"""The image ablation's bookkeeping: equal-compute ratios and the merged summary."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "experiments"))
import image_ablation  # noqa: E402


def test_a_cost_variant_trains_as_many_iterations_as_the_updates_it_copies(
        tmp_path: Path) -> None:
    bench = tmp_path / "bench.json"
    bench.write_text(json.dumps({"cpu_ratio_fake5": 2.7}))
    ratios = image_ablation.cost_ratios(["fake5", "fake5_chroma", "fake5_ot_chroma", "base"],
                                        bench)
    assert ratios == {"fake5": 2.7, "fake5_chroma": 2.7, "fake5_ot_chroma": 2.7, "base": 1.0}


def _result(results: Path, seed: int, tag: str, rows: list[tuple[str, float]]) -> None:
    keys = {"steps": 133, "real_target_accuracy": 0.9, "fd_floor": 3.0, "l2": 8.0,
            "hue_degrees": 5.0, "target_accuracy": 0.9}
    (results / f"cmnist_ablation_lam0.1_s{seed}{tag}.json").write_text(json.dumps(
        {"rows": [{"variant": v, "fd": fd, **keys} for v, fd in rows]}))


def test_summary_merges_tags_and_counts_a_reused_run_once(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    results = tmp_path / "experiments" / "results"
    results.mkdir(parents=True)
    monkeypatch.setattr(image_ablation, "ROOT", tmp_path)
    for seed, base in ((0, 30.0), (1, 20.0)):
        _result(results, seed, "_a", [("fake5", base), ("fake5_chroma", base - 10)])
        _result(results, seed, "_b", [("fake5_ot", base + 1), ("fake5", 999.0)])
    image_ablation.summarize("cmnist", 0.1, [0, 1], "_a,_b")
    table = (results / "cmnist_ablation_lam0.1_a_b.md").read_text()
    rows = {line.split(" | ")[0].strip("| "): line for line in table.splitlines()
            if line.startswith("| fake5")}
    assert set(rows) == {"fake5", "fake5_chroma", "fake5_ot"}
    assert "| 2 |" in rows["fake5"] and "25 (20-30)" in rows["fake5"]  # not 999: seen once
    assert "15 (10-20)" in rows["fake5_chroma"]

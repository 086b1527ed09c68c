"""The demo writes a report a person can open: tables, figures, and the shipped models' part."""

from __future__ import annotations

from pathlib import Path

import pytest

from rdmd import demo


def test_quick_demo_writes_report(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(demo, "QUICK", {"teacher_steps": 60, "rdmd_steps": 20,
                                          "n_test": 300})
    monkeypatch.setattr(demo, "section_cmnist", lambda out: None)  # tested below
    report = demo.run_demo(tmp_path, quick=True, progress=False)
    html = report.read_text()
    assert "Gaussian" in html and "<table" in html and "maps.png" in html
    assert (tmp_path / "maps.png").stat().st_size > 1000
    md = (tmp_path / "report.md").read_text()
    assert "| 0.05 |" in md and "![maps.png](maps.png)" in md
    # A second run reuses the finished runs instead of refusing the existing folders.
    assert demo.run_demo(tmp_path, quick=True, progress=False) == report


@pytest.mark.skipif(not list(demo.pretrained_dir("cmnist").glob("rdmd_lam*/model.json")),
                    reason="no shipped colored-MNIST generators in this checkout")
def test_shipped_cmnist_generators_translate_2s_into_3s(tmp_path: Path) -> None:
    sec = demo.section_cmnist(tmp_path)
    assert sec is not None and len(sec.rows) >= 3
    for row in sec.rows:
        assert 0.0 <= row["target_accuracy"] <= 1.0
        assert row["l2"] > 0
    assert all((tmp_path / name).is_file() for name in sec.images)
    rows = sorted(sec.rows, key=lambda r: r["lam"])
    # The figures: at the recommended (smallest) lambda at least 90% of outputs are
    # 3s for the classifier; the trade-off is monotone: FD falls and L2 rises as lambda falls.
    assert rows[0]["target_accuracy"] >= 0.9
    fds = [r["fd_cnn_cmnist"] for r in rows]
    l2s = [r["l2"] for r in rows]
    assert fds == sorted(fds) and l2s == sorted(l2s, reverse=True)

"""experiments/eval_curves.py reads the evaluation rows of a run's log.csv and refuses a run
without them in one line (issue 14: is a longer run better, or only a new draw?)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

EXPERIMENTS = Path(__file__).resolve().parents[1] / "experiments"
sys.path.insert(0, str(EXPERIMENTS))
import eval_curves  # noqa: E402

from rdmd.errors import RdmdError  # noqa: E402

LOG = """step,loss_dm,time_s,l2,fd_cnn_cmnist
20,0.4,1.0,,
40,0.3,2.0,8.0,20.0
60,0.3,3.0,,
80,0.2,4.0,7.0,10.0
"""


def test_curve_and_summary(tmp_path: Path) -> None:
    (tmp_path / "log.csv").write_text(LOG)
    pts = eval_curves.read_curve(tmp_path, ["fd_cnn_cmnist", "l2"])
    assert [p["step"] for p in pts] == [40, 80]
    s = eval_curves.summary(pts, ["fd_cnn_cmnist"])["fd_cnn_cmnist"]
    assert s["mean"] == 15.0 and s["min"] == 10.0 and s["max"] == 20.0 and s["n"] == 2


def test_conditioned_keys_resolve_per_run(tmp_path: Path) -> None:
    """``@lo``/``@mid``/``@hi`` read each run's own report lambdas (sorted as numbers, not
    as text: 0.2 < 2); a fixed run's log has none, which is said in one line."""
    (tmp_path / "log.csv").write_text("step,l2@2,l2@0.02,l2@0.2,val_l2@fall\n"
                                      "20,,,,\n40,4.0,8.0,6.0,0.5\n")
    pts = eval_curves.read_curve(tmp_path, ["l2@lo", "l2@mid", "l2@hi", "val_l2@fall"])
    assert pts == [{"step": 40, "l2@lo": 8.0, "l2@mid": 6.0, "l2@hi": 4.0,
                    "val_l2@fall": 0.5}]
    (tmp_path / "log.csv").write_text(LOG)
    with pytest.raises(RdmdError, match="three l2@<lambda> columns; this log has 0"):
        eval_curves.read_curve(tmp_path, ["l2@hi"])
    assert eval_curves.chosen_step(tmp_path) is None
    (tmp_path / "model.json").write_text('{"selected": {"rule": "best_val", "step": 80}}')
    assert eval_curves.chosen_step(tmp_path) == 80


def test_runs_without_evaluations_are_refused(tmp_path: Path) -> None:
    with pytest.raises(RdmdError, match="no log.csv"):
        eval_curves.read_curve(tmp_path, ["l2"])
    (tmp_path / "log.csv").write_text("step,loss_dm\n20,0.4\n")
    with pytest.raises(RdmdError, match="eval_every"):
        eval_curves.read_curve(tmp_path, ["l2"])
    (tmp_path / "log.csv").write_text("step,l2\n20,\n")
    with pytest.raises(RdmdError, match="no evaluation rows"):
        eval_curves.read_curve(tmp_path, ["l2"])


def test_script_draws_and_refuses(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    (run / "log.csv").write_text(LOG)
    fig, res = tmp_path / "c.png", tmp_path / "c.json"
    cmd = [sys.executable, str(EXPERIMENTS / "eval_curves.py"), "--keys", "fd_cnn_cmnist,l2",
           "--figure", str(fig), "--results", str(res)]
    ok = subprocess.run([*cmd, "--runs", f"a={run}"], capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    assert fig.stat().st_size > 0 and '"mean": 15.0' in res.read_text()
    bad = subprocess.run([*cmd, "--runs", str(run)], capture_output=True, text=True)
    assert bad.returncode != 0 and "LABEL=RUN_DIR" in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1


def test_val_selection_reports_the_validation_choice(tmp_path: Path) -> None:
    """experiments/val_selection.py: the chosen evaluation is the validation minimum (here
    not the test's), set beside the last and the test's own best, with the rank agreement."""
    import val_selection

    (tmp_path / "log.csv").write_text(
        "step,fd_cnn_cmnist,val_fd_cnn_cmnist\n20,12.0,9.0\n40,10.0,7.0\n60,9.0,8.0\n"
        "80,14.0,10.0\n")
    pts = eval_curves.read_curve(tmp_path, ["fd_cnn_cmnist", "val_fd_cnn_cmnist"])
    sel = val_selection.selection(pts, "fd_cnn_cmnist", "val_fd_cnn_cmnist")
    assert (sel["chosen_step"], sel["chosen_test"]) == (40, 10.0)
    assert (sel["last_step"], sel["last_test"]) == (80, 14.0)
    assert (sel["oracle_step"], sel["oracle_test"]) == (60, 9.0)
    assert sel["spearman_val_test"] == pytest.approx(0.8)
    assert sel["evaluations"] == 4

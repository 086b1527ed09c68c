"""Experiment runs are reused only when they are the requested run, and results say how the
runs they used were produced (issue 11, defects 5 and 6).

Before: a finished run was reused whatever the request (``--teacher-steps`` ignored), saved
configs were read with ``Config(**json)`` (a traceback, or nothing read at all), and a result
recorded the current command, not how its runs were trained.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

EXPERIMENTS = Path(__file__).resolve().parents[1] / "experiments"
sys.path.insert(0, str(EXPERIMENTS))
import common  # noqa: E402

from rdmd.errors import RdmdError  # noqa: E402

torch.set_num_threads(1)

TEACHER = {"steps": 3, "batch_size": 64, "n_train": 200, "n_test": 100, "sample_steps": 4,
           "device": "cpu"}
RDMD = {"steps": 2, "lam": 0.1, "batch_size": 64, "n_train": 200, "n_test": 100,
        "floor_pairs": 1, "device": "cpu"}


@pytest.fixture(scope="module")
def teacher(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return common.ensure_teacher("8gaussians", tmp_path_factory.mktemp("t") / "teacher", False,
                                 **TEACHER)


def _stamp(run: Path) -> int:
    return (run / "model.safetensors").stat().st_mtime_ns


def test_teacher_reused_when_the_config_matches(teacher: Path) -> None:
    before = _stamp(teacher)
    assert common.ensure_teacher("8gaussians", teacher, False, **TEACHER) == teacher
    assert _stamp(teacher) == before
    # the same run requested with a default spelled out is the same run
    common.ensure_teacher("8gaussians", teacher, False, **TEACHER, lr_schedule="cosine")
    assert _stamp(teacher) == before


@pytest.mark.parametrize(("change", "key"), [({"steps": 5}, "steps"),
                                             ({"n_train": 300}, "n_train"),
                                             ({"seed": 1}, "seed")])
def test_teacher_not_reused_when_a_key_differs(teacher: Path, change: dict, key: str) -> None:
    before = _stamp(teacher)
    with pytest.raises(RdmdError, match=f"{key}=") as e:
        common.ensure_teacher("8gaussians", teacher, False, **{**TEACHER, **change})
    assert "\n" not in str(e.value) and "--runs" in str(e.value)
    assert _stamp(teacher) == before


def test_teacher_not_reused_for_another_target(teacher: Path) -> None:
    with pytest.raises(RdmdError, match="target="):
        common.ensure_teacher("swissroll", teacher, False, **TEACHER)


def test_rdmd_reused_or_refused_and_result_records_the_run(teacher: Path,
                                                           tmp_path: Path) -> None:
    run = tmp_path / "lam0.1"
    torch.set_num_threads(2)
    try:
        res = common.ensure_rdmd("gaussian", teacher, run, False, **RDMD)
    finally:
        torch.set_num_threads(1)
    rec = res["run"]
    assert rec["job"] == "distill" and rec["source"] == "gaussian"
    assert rec["teacher"] == str(teacher.resolve()) and rec["target"] == "8gaussians"
    assert rec["config"] == json.loads((run / "config.json").read_text())["config"]
    assert rec["config"]["lam"] == 0.1 and rec["config"]["steps"] == 2
    (session,) = rec["provenance"]["sessions"]
    assert session["torch_threads"] == 2 and session["resumed"] is False
    assert session["command"] == " ".join(sys.argv)
    assert session["wall_s"] is not None and res["wall_s"] == session["wall_s"]
    # reused when the request matches: the record still says 2 threads, not the current 1
    before = _stamp(run)
    again = common.ensure_rdmd("gaussian", teacher, run, False, **RDMD)
    assert _stamp(run) == before
    assert again["run"]["provenance"]["sessions"][0]["torch_threads"] == 2
    for change, key in (({"lam": 0.2}, "lam"), ({"steps": 4}, "steps"),
                        ({"sigma_g": 0.5}, "sigma_g")):
        with pytest.raises(RdmdError, match=f"{key}="):
            common.ensure_rdmd("gaussian", teacher, run, False, **{**RDMD, **change})
    with pytest.raises(RdmdError, match="source="):
        common.ensure_rdmd("gaussian:d=2;std=2", teacher, run, False, **RDMD)
    assert _stamp(run) == before


def test_interrupted_run_resumed_only_with_its_config(teacher: Path, tmp_path: Path) -> None:
    run = tmp_path / "r"
    common.ensure_rdmd("gaussian", teacher, run, False, **RDMD)
    (run / "model.json").unlink()  # as if killed after the last checkpoint
    (run / "metrics.json").unlink()
    with pytest.raises(RdmdError, match="lam="):
        common.ensure_rdmd("gaussian", teacher, run, False, **{**RDMD, "lam": 0.3})
    assert not (run / "model.json").exists()
    res = common.ensure_rdmd("gaussian", teacher, run, False, **RDMD)
    sessions = res["run"]["provenance"]["sessions"]
    assert [s["resumed"] for s in sessions] == [False, True]
    assert res["wall_s"] == round(sum(s["wall_s"] for s in sessions), 1)


def test_saved_config_is_validated(teacher: Path, tmp_path: Path) -> None:
    """A hand-edited config.json is a one-line error, not a traceback or silent reuse."""
    import shutil

    copy = tmp_path / "teacher"
    shutil.copytree(teacher, copy)
    saved = json.loads((copy / "config.json").read_text())
    saved["config"]["stepz"] = 3
    (copy / "config.json").write_text(json.dumps(saved))
    with pytest.raises(RdmdError, match="unknown config key 'stepz'") as e:
        common.ensure_teacher("8gaussians", copy, False, **TEACHER)
    assert "\n" not in str(e.value)


def test_refusal_is_one_line_from_the_script(teacher: Path, tmp_path: Path) -> None:
    """The experiment scripts print the refusal as one line and exit 2."""
    code = (f"import sys; sys.path.insert(0, {str(EXPERIMENTS)!r}); import common, pathlib; "
            f"common.run_main(lambda: common.ensure_teacher('8gaussians', "
            f"pathlib.Path({str(teacher)!r}), False, **{ {**TEACHER, 'steps': 9}!r}))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       timeout=300)
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2 and len(lines) == 1 and "steps=3" in lines[0], r.stderr

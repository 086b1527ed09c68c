"""A run's description is resolved once, and ``--resume`` may change only ``steps``
(and not even those under a cosine schedule): unit tests of :func:`prepare_run` on saved run
folders, plus the CLI paths where a falsy flag was once ignored."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rdmd.cli import main
from rdmd.config import DistillConfig, TeacherConfig, resolve_config, to_dict
from rdmd.errors import RdmdError
from rdmd.training.rundir import CONFIG_FILE, prepare_run


def _saved_teacher(folder: Path, **keys: object) -> Path:
    """A run folder as train-teacher leaves it (its config.json), without training."""
    cfg = resolve_config(TeacherConfig, [keys], "vector")
    folder.mkdir(parents=True)
    (folder / CONFIG_FILE).write_text(json.dumps(
        {"job": "teacher", "target": "8gaussians", "config": to_dict(cfg)}))
    return folder


def _saved_distill(folder: Path, **keys: object) -> Path:
    cfg = resolve_config(DistillConfig, [keys], "vector")
    folder.mkdir(parents=True)
    (folder / CONFIG_FILE).write_text(json.dumps(
        {"job": "distill", "source": "gaussian", "teacher": "/nowhere", "target": None,
         "config": to_dict(cfg)}))
    return folder


def _vector(_: dict) -> str:
    return "vector"


def test_resume_without_changes_keeps_the_saved_config(tmp_path: Path) -> None:
    run = _saved_distill(tmp_path / "r", steps=3, lam=0.5, seed=4)
    _, cfg = prepare_run(run, "distill", DistillConfig, {"source": None, "teacher": None},
                         [{}], _vector, resume=True)
    assert (cfg.steps, cfg.lam, cfg.seed, cfg.batch_size) == (3, 0.5, 4, 1024)


@pytest.mark.parametrize("key,value", [("seed", 0), ("lam", 0.0), ("ema_decay", 0.0),
                                       ("cost", "l1")])
def test_resume_refuses_any_change_but_steps(tmp_path: Path, key: str, value: object) -> None:
    """Falsy values (seed 0, lambda 0) are changes too: once ignored by a truthiness test."""
    run = _saved_distill(tmp_path / "r", seed=3, lam=0.02)
    with pytest.raises(RdmdError, match=f"only steps and decay_steps may change.*{key}="):
        prepare_run(run, "distill", DistillConfig, {}, [{key: value}], _vector, resume=True)


def test_resume_accepts_a_key_given_with_its_saved_value(tmp_path: Path) -> None:
    run = _saved_distill(tmp_path / "r", seed=0, lam=0.0)
    _, cfg = prepare_run(run, "distill", DistillConfig, {}, [{"seed": 0, "lam": 0.0,
                                                              "steps": 20}], _vector, True)
    assert (cfg.seed, cfg.lam, cfg.steps) == (0, 0.0, 20)


def test_resume_refuses_other_data(tmp_path: Path) -> None:
    run = _saved_distill(tmp_path / "r")
    with pytest.raises(RdmdError, match="saved data; its source is 'gaussian'"):
        prepare_run(run, "distill", DistillConfig, {"source": "moons"}, [{}], _vector, True)


def test_cosine_schedule_steps_cannot_change(tmp_path: Path) -> None:
    """Extending a finished cosine run would restart the rate near half its peak: refused
    with the way forward; a constant-rate run may extend."""
    run = _saved_teacher(tmp_path / "t", steps=100, lr_schedule="cosine")
    with pytest.raises(RdmdError, match="cosine learning-rate schedule decays over its 100"):
        prepare_run(run, "teacher", TeacherConfig, {}, [{"steps": 200}], _vector, True)
    _, cfg = prepare_run(run, "teacher", TeacherConfig, {}, [{"steps": 100}], _vector, True)
    assert cfg.steps == 100
    flat = _saved_teacher(tmp_path / "c", steps=100, lr_schedule="constant")
    _, cfg = prepare_run(flat, "teacher", TeacherConfig, {}, [{"steps": 200}], _vector, True)
    assert cfg.steps == 200
    _, cfg = prepare_run(flat, "teacher", TeacherConfig, {}, [{"steps": 200, "decay_steps": 50}],
                         _vector, True)
    assert (cfg.steps, cfg.decay_steps) == (200, 50)
    with pytest.raises(RdmdError, match="decay_steps' is for lr_schedule 'constant'"):
        prepare_run(run, "teacher", TeacherConfig, {}, [{"decay_steps": 50}], _vector, True)


def test_saved_config_is_validated(tmp_path: Path) -> None:
    run = _saved_distill(tmp_path / "r")
    saved = json.loads((run / CONFIG_FILE).read_text())
    saved["config"]["fake_sigma"] = "uniform"
    (run / CONFIG_FILE).write_text(json.dumps(saved))
    with pytest.raises(RdmdError, match="config.json: config key 'fake_sigma' must be one of"):
        prepare_run(run, "distill", DistillConfig, {}, [{}], _vector, True)


def test_configs_of_earlier_versions_read_with_what_they_used(tmp_path: Path) -> None:
    """Keys added since (method, fake_sigma, schedule) take the values those runs trained
    with, not today's defaults."""
    run = _saved_distill(tmp_path / "r")
    saved = json.loads((run / CONFIG_FILE).read_text())
    for k in ("method", "fake_sigma", "lr_schedule", "warmup_steps", "ema_decay"):
        saved["config"].pop(k)
    (run / CONFIG_FILE).write_text(json.dumps(saved))
    _, cfg = prepare_run(run, "distill", DistillConfig, {}, [{}], _vector, True)
    assert (cfg.method, cfg.fake_sigma, cfg.lr_schedule, cfg.ema_decay) == (
        "rdmd", "lognormal", "constant", 0.0)


@pytest.mark.parametrize("flags", [["--seed", "0"], ["--set", "lam=0"], ["--lam", "0"]])
def test_cli_resume_refuses_falsy_changes(tmp_path: Path, capsys: pytest.CaptureFixture,
                                          flags: list[str]) -> None:
    run = _saved_distill(tmp_path / "r", seed=3, lam=0.02)
    before = (run / CONFIG_FILE).read_bytes()
    assert main(["distill", "--out", str(run), "--resume", *flags]) == 2
    err = capsys.readouterr().err
    assert "only steps and decay_steps may change" in err and len(err.strip().splitlines()) == 1
    assert (run / CONFIG_FILE).read_bytes() == before

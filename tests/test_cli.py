"""The ``rdmd`` command line end to end, on ``.npy`` files far from 0/1 in offset and scale.

Every failure a user can cause is one line ``rdmd: error: ...`` on stderr, exit status 2,
and nothing written.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import rdmd
from rdmd.cli import main
from rdmd.data import load_domain

torch.set_num_threads(1)

OFFSET, SCALE = 100.0, 7.0  # 8 Gaussians of radius 28 around (100, 100): std ~20 per axis
TEACHER_ARGS = ["--steps", "300", "--set", "batch_size=128", "--set", "sample_steps=8",
                "--set", "warmup_steps=10", "--device", "cpu", "--no-progress"]
DISTILL_ARGS = ["--steps", "30", "--set", "batch_size=64", "--set", "floor_pairs=2",
                "--set", "ckpt_every=10", "--device", "cpu", "--no-progress",
                "--set", "lr_schedule=constant"]  # resumed with more steps below


def _error_line(capsys: pytest.CaptureFixture, rc: int, *needles: str) -> str:
    """Assert a user error: exit 2 and exactly one ``rdmd: error:`` line on stderr."""
    out, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert rc == 2, f"exit {rc}; stderr: {err!r}"
    assert len(lines) == 1, f"expected one line on stderr, got: {err!r}"
    assert lines[0].startswith("rdmd: error: "), lines[0]
    for n in needles:
        assert n in lines[0], f"{n!r} not in {lines[0]!r}"
    return lines[0]


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("data")
    y = OFFSET + SCALE * load_domain("8gaussians", 600, 10, 0).train.double().numpy()
    x = OFFSET + 15.0 * load_domain("gaussian", 400, 10, 1).train.double().numpy()
    paths = {"target": d / "target.npy", "source": d / "source.npy",
             "source3": d / "source3.npy", "nan": d / "nan.npy", "cube": d / "cube.npy",
             "x_small": d / "x_small.npy"}
    np.save(paths["target"], y)
    np.save(paths["source"], x)
    np.save(paths["source3"], np.random.default_rng(0).normal(size=(50, 3)))
    bad = y.copy()
    bad[13, 0] = np.nan
    np.save(paths["nan"], bad)
    np.save(paths["cube"], np.zeros((10, 2, 2)))
    np.save(paths["x_small"], x[:37])
    return paths


@pytest.fixture(scope="module")
def teacher(files: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("cli") / "teacher"
    rc = main(["train-teacher", "--target", str(files["target"]), "--out", str(out),
               *TEACHER_ARGS])
    assert rc == 0
    return out


@pytest.fixture(scope="module")
def generator(files: dict[str, Path], teacher: Path,
              tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("cli") / "rdmd"
    rc = main(["distill", "--source", str(files["source"]), "--teacher", str(teacher),
               "--lam", "0.02", "--out", str(out), *DISTILL_ARGS])
    assert rc == 0
    return out


# -- the happy path -------------------------------------------------------------------------

def test_teacher_run_and_normalisation(teacher: Path) -> None:
    meta = json.loads((teacher / "model.json").read_text())
    assert meta["role"] == "teacher" and meta["data_shape"] == [2]
    assert (teacher / "model.safetensors").is_file()
    # the normaliser holds the data's own offset and (scalar) scale
    assert np.allclose(meta["normalizer"]["mean"], OFFSET, atol=3.0)
    assert 15.0 < meta["normalizer"]["scale"] < 25.0
    m = json.loads((teacher / "metrics.json").read_text())
    assert m["n_eval"] == 120  # 20% of 600 rows held out
    assert np.isfinite(m["w2_sq"]) and m["w2_sq"] > 0


def test_distill_translate_evaluate(files: dict[str, Path], generator: Path, tmp_path: Path,
                                    capsys: pytest.CaptureFixture) -> None:
    meta = json.loads((generator / "model.json").read_text())
    assert meta["role"] == "generator" and meta["lam"] == 0.02
    assert (generator / "metrics.json").is_file()

    out = tmp_path / "y.npy"
    rc = main(["translate", "--model", str(generator), "--input", str(files["x_small"]),
               "--output", str(out)])
    assert rc == 0 and "37" in capsys.readouterr().out
    x = np.load(files["x_small"])
    y = np.load(out)
    assert y.shape == x.shape and y.dtype == np.float32 and np.isfinite(y).all()
    # outputs are in data units, in the target's range (not in the networks' units near 0)
    assert np.allclose(y.mean(0), OFFSET, atol=10.0), y.mean(0)
    assert 5.0 < y.std() < 50.0
    target = np.load(files["target"])
    assert target.min() - 20 < y.min() and y.max() < target.max() + 20
    np.testing.assert_allclose(y, rdmd.translate(generator, x.astype(np.float32)), rtol=1e-6)

    # evaluate --model uses the run's held-out splits: the same numbers as its report
    mj = tmp_path / "m.json"
    rc = main(["evaluate", "--model", str(generator), "--json", str(mj)])
    assert rc == 0 and "w2_sq" in capsys.readouterr().out
    got = json.loads(mj.read_text())
    rep = json.loads((generator / "metrics.json").read_text())
    for k in ("w2_sq", "transport_cost", "ot_gap", "w2_floor_mean"):
        assert got[k] == pytest.approx(rep[k], rel=1e-6), k

    # evaluate on given arrays
    mj2 = tmp_path / "m2.json"
    rc = main(["evaluate", "--input", str(files["x_small"]), "--translated", str(out),
               "--target", str(files["target"]), "--json", str(mj2)])
    assert rc == 0
    capsys.readouterr()
    got2 = json.loads(mj2.read_text())
    assert {"w2_sq", "transport_cost", "ot_gap", "crossings"} <= set(got2)
    tc = float(((y.astype(np.float64) - x) ** 2).sum(1).mean())
    assert got2["transport_cost"] == pytest.approx(tc, rel=1e-5)


def test_console_script_entry_point(files: dict[str, Path], generator: Path,
                                    tmp_path: Path) -> None:
    exe = Path(sys.executable).parent / "rdmd"
    script = str(exe) if exe.is_file() else shutil.which("rdmd")
    assert script, "the rdmd console script is not installed"
    out = tmp_path / "y.npy"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    p = subprocess.run([script, "translate", "--model", str(generator), "--input",
                        str(files["x_small"]), "--output", str(out)],
                       capture_output=True, text=True, env=env, timeout=120)
    assert p.returncode == 0, p.stderr
    y = np.load(out)
    np.testing.assert_allclose(y, rdmd.translate(generator, np.load(files["x_small"])
                                                 .astype(np.float32)), rtol=1e-5, atol=1e-4)


def test_distill_resume_from_cli(files: dict[str, Path], teacher: Path, tmp_path: Path,
                                 capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "r"
    args = ["distill", "--source", str(files["source"]), "--teacher", str(teacher),
            "--out", str(out), "--steps", "4", "--set", "batch_size=32", "--set",
            "floor_pairs=1", "--set", "ckpt_every=2", "--set", "log_every=1", "--device",
            "cpu", "--no-progress", "--set", "lr_schedule=constant"]  # extended below
    assert main(args) == 0
    # resume with no --steps: the saved run is complete, nothing more to do
    assert main(["distill", "--source", str(files["source"]), "--teacher", str(teacher),
                 "--out", str(out), "--resume", "--no-progress"]) == 0
    assert json.loads((out / "model.json").read_text())["steps"] == 4
    # resume with --steps extends it
    assert main(["distill", "--source", str(files["source"]), "--teacher", str(teacher),
                 "--out", str(out), "--resume", "--steps", "6", "--no-progress"]) == 0
    assert json.loads((out / "model.json").read_text())["steps"] == 6
    steps = [int(r.split(",")[0]) for r in (out / "log.csv").read_text().splitlines()[1:]]
    assert steps == [1, 2, 3, 4, 5, 6]
    capsys.readouterr()
    # any setting other than --steps is refused on resume
    rc = main(["distill", "--source", str(files["source"]), "--teacher", str(teacher),
               "--out", str(out), "--resume", "--lam", "0.5", "--no-progress"])
    _error_line(capsys, rc, "--resume")


# -- translate refusals -----------------------------------------------------------------------

def test_translate_refuses_to_overwrite_input(files: dict[str, Path], generator: Path,
                                              tmp_path: Path,
                                              capsys: pytest.CaptureFixture) -> None:
    inp = tmp_path / "x.npy"
    shutil.copy(files["x_small"], inp)
    before = inp.read_bytes()
    rc = main(["translate", "--model", str(generator), "--input", str(inp), "--output",
               str(inp)])
    _error_line(capsys, rc, "--output")
    assert inp.read_bytes() == before
    # the same file by another spelling
    rc = main(["translate", "--model", str(generator), "--input", str(inp), "--output",
               str(tmp_path / "." / "x.npy")])
    _error_line(capsys, rc)
    assert inp.read_bytes() == before


def test_translate_refuses_non_npy_output(files: dict[str, Path], generator: Path,
                                          tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "y.txt"
    rc = main(["translate", "--model", str(generator), "--input", str(files["x_small"]),
               "--output", str(out)])
    _error_line(capsys, rc, ".npy")
    assert not out.exists()


def test_translate_with_a_teacher(files: dict[str, Path], teacher: Path, tmp_path: Path,
                                  capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "y.npy"
    rc = main(["translate", "--model", str(teacher), "--input", str(files["x_small"]),
               "--output", str(out)])
    _error_line(capsys, rc, "teacher")
    assert not out.exists()


def test_translate_wrong_dimension(files: dict[str, Path], generator: Path, tmp_path: Path,
                                   capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "y.npy"
    rc = main(["translate", "--model", str(generator), "--input", str(files["source3"]),
               "--output", str(out)])
    _error_line(capsys, rc, "shape")
    assert not out.exists()


@pytest.mark.parametrize("which", ["nan", "cube", "missing"])
def test_translate_bad_input(files: dict[str, Path], generator: Path, tmp_path: Path,
                             capsys: pytest.CaptureFixture, which: str) -> None:
    inp = files.get(which, tmp_path / "missing.npy")
    out = tmp_path / "y.npy"
    rc = main(["translate", "--model", str(generator), "--input", str(inp), "--output",
               str(out)])
    _error_line(capsys, rc)
    assert not out.exists()


def test_translate_model_not_a_model(files: dict[str, Path], tmp_path: Path,
                                     capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "y.npy"
    rc = main(["translate", "--model", str(tmp_path), "--input", str(files["x_small"]),
               "--output", str(out)])
    _error_line(capsys, rc, "model")
    assert not out.exists()


# -- evaluate refusals -----------------------------------------------------------------------

def test_evaluate_needs_model_or_arrays(files: dict[str, Path], tmp_path: Path,
                                        capsys: pytest.CaptureFixture) -> None:
    js = tmp_path / "m.json"
    rc = main(["evaluate", "--input", str(files["x_small"]), "--json", str(js)])
    _error_line(capsys, rc, "--model")
    assert not js.exists()


def test_evaluate_shape_mismatch(files: dict[str, Path], tmp_path: Path,
                                 capsys: pytest.CaptureFixture) -> None:
    js = tmp_path / "m.json"
    rc = main(["evaluate", "--input", str(files["x_small"]), "--translated",
               str(files["source"]), "--target", str(files["target"]), "--json", str(js)])
    _error_line(capsys, rc, "shape")
    assert not js.exists()


def test_evaluate_model_with_a_teacher(teacher: Path, tmp_path: Path,
                                       capsys: pytest.CaptureFixture) -> None:
    js = tmp_path / "m.json"
    rc = main(["evaluate", "--model", str(teacher), "--json", str(js)])
    _error_line(capsys, rc)
    assert not js.exists()


# -- training refusals: nothing written -------------------------------------------------------

@pytest.mark.parametrize(("which", "needles"), [
    ("cube", ("N x d",)),
    ("nan", ("row 13",)),
    ("missing", ("not found",)),
])
def test_train_teacher_bad_target(files: dict[str, Path], tmp_path: Path,
                                  capsys: pytest.CaptureFixture, which: str,
                                  needles: tuple[str, ...]) -> None:
    target = files.get(which, tmp_path / "missing.npy")
    out = tmp_path / "t"
    rc = main(["train-teacher", "--target", str(target), "--out", str(out), "--steps", "2",
               "--no-progress"])
    _error_line(capsys, rc, *needles)
    assert not out.exists()


def test_train_teacher_unknown_key_in_config_file(files: dict[str, Path], tmp_path: Path,
                                                  capsys: pytest.CaptureFixture) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text("steps = 2\nlearning_rate = 0.1\n")
    out = tmp_path / "t"
    rc = main(["train-teacher", "--target", str(files["target"]), "--out", str(out),
               "--config", str(cfg), "--no-progress"])
    _error_line(capsys, rc, "'learning_rate'")
    assert not out.exists()


def _distill(files: dict[str, Path], teacher: Path | str, out: Path, *extra: str,
             source: str | None = None) -> int:
    return main(["distill", "--source", source or str(files["source"]), "--teacher",
                 str(teacher), "--out", str(out), "--steps", "2", "--device", "cpu",
                 "--no-progress", *extra])


def test_distill_dimension_mismatch(files: dict[str, Path], teacher: Path, tmp_path: Path,
                                    capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "r"
    rc = _distill(files, teacher, out, source=str(files["source3"]))
    _error_line(capsys, rc, "shape")
    assert not out.exists()


@pytest.mark.parametrize("which", ["nan", "cube", "missing"])
def test_distill_bad_source(files: dict[str, Path], teacher: Path, tmp_path: Path,
                            capsys: pytest.CaptureFixture, which: str) -> None:
    out = tmp_path / "r"
    rc = _distill(files, teacher, out, source=str(files.get(which, tmp_path / "no.npy")))
    _error_line(capsys, rc)
    assert not out.exists()


def test_distill_bad_target(files: dict[str, Path], teacher: Path, tmp_path: Path,
                            capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "r"
    rc = _distill(files, teacher, out, "--target", str(files["source3"]))
    _error_line(capsys, rc, "shape")
    assert not out.exists()


def test_distill_teacher_not_a_model(files: dict[str, Path], tmp_path: Path,
                                     capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "r"
    not_model = tmp_path / "folder"
    not_model.mkdir()
    (not_model / "notes.txt").write_text("hello")
    rc = _distill(files, not_model, out)
    _error_line(capsys, rc, "model")
    assert not out.exists()
    rc = _distill(files, tmp_path / "does-not-exist", out)
    _error_line(capsys, rc)
    assert not out.exists()


def test_distill_teacher_is_a_generator(files: dict[str, Path], generator: Path,
                                        tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "r"
    rc = _distill(files, generator, out)
    _error_line(capsys, rc, "not a teacher")
    assert not out.exists()


@pytest.mark.parametrize(("extra", "needle"), [
    (("--lam", "-1"), "lambda"),
    (("--cost", "bogus"), "bogus"),
    (("--set", "lamda=0.1"), "'lamda'"),
    (("--set", "steps=1.5"), "'steps'"),
])
def test_distill_bad_settings(files: dict[str, Path], teacher: Path, tmp_path: Path,
                              capsys: pytest.CaptureFixture, extra: tuple[str, ...],
                              needle: str) -> None:
    out = tmp_path / "r"
    rc = _distill(files, teacher, out, *extra)
    _error_line(capsys, rc, needle)
    assert not out.exists()


def test_distill_into_existing_run_is_refused(files: dict[str, Path], teacher: Path,
                                              generator: Path,
                                              capsys: pytest.CaptureFixture) -> None:
    before = {p: p.read_bytes() for p in generator.rglob("*") if p.is_file()}
    rc = _distill(files, teacher, generator)
    _error_line(capsys, rc, "already holds a run")
    assert {p: p.read_bytes() for p in generator.rglob("*") if p.is_file()} == before


def test_resume_on_empty_dir(files: dict[str, Path], teacher: Path, tmp_path: Path,
                             capsys: pytest.CaptureFixture) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    rc = main(["train-teacher", "--target", str(files["target"]), "--out", str(empty),
               "--resume", "--no-progress"])
    _error_line(capsys, rc, "holds no run")
    rc = main(["distill", "--source", str(files["source"]), "--teacher", str(teacher),
               "--out", str(empty), "--resume", "--no-progress"])
    _error_line(capsys, rc, "holds no run")
    assert list(empty.iterdir()) == []


def test_resume_from_another_working_directory(files: dict[str, Path], teacher: Path,
                                               tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                               capsys: pytest.CaptureFixture) -> None:
    """A run started with relative paths can be resumed (and evaluated) from elsewhere:
    the run must record where its teacher and data are, not how they were spelled."""
    work = tmp_path / "work"
    work.mkdir()
    shutil.copytree(teacher, work / "teacher")
    shutil.copy(files["source"], work / "source.npy")
    monkeypatch.chdir(work)
    assert main(["distill", "--source", "source.npy", "--teacher", "teacher", "--out", "run",
                 "--steps", "2", "--set", "batch_size=32", "--set", "floor_pairs=1",
                 "--set", "lr_schedule=constant", "--device", "cpu", "--no-progress"]) == 0
    monkeypatch.chdir(tmp_path)
    capsys.readouterr()
    rc = main(["distill", "--source", str(work / "source.npy"), "--teacher",
               str(work / "teacher"), "--out", str(work / "run"), "--resume", "--steps", "3",
               "--no-progress"])
    _, err = capsys.readouterr()
    assert rc == 0, err
    rc = main(["evaluate", "--model", str(work / "run")])
    _, err = capsys.readouterr()
    assert rc == 0, err


def test_python_dash_m_runs_the_command() -> None:
    """`python -m rdmd` is the rdmd command (experiments run it with their interpreter)."""
    out = subprocess.run([sys.executable, "-m", "rdmd", "distill", "--help"],
                         capture_output=True, text=True, check=True).stdout
    assert "--lam" in out
    bad = subprocess.run([sys.executable, "-m", "rdmd", "distill", "--source", "gaussian",
                          "--teacher", "/nowhere", "--out", "/tmp/rdmd-never-written"],
                         capture_output=True, text=True)
    assert bad.returncode == 2 and bad.stderr.startswith("rdmd: error:")

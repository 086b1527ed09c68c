"""Crash safety with real processes: ``rdmd`` killed by SIGKILL, then ``--resume``.

* killed at a random step (chosen anew on every run; printed on failure): the resumed run ends
  with the parameters, optimiser states, generator state and log of an uninterrupted run, bit
  for bit;
* killed inside a checkpoint write (``RDMD_TEST_PAUSE_IN_SAVE`` holds the save open after the
  tensors are written, before the rename): the previous checkpoint is the latest, it loads, and
  the resumed run is again bit-identical.

Timing (2 CPU cores): ~4 s per ``rdmd`` process (mostly importing torch), ~25 s in all.
"""

from __future__ import annotations

import csv
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from rdmd_subprocess import child_env, wait_for

import rdmd
from rdmd import checkpoint as ckpt
from rdmd.cli import main

torch.set_num_threads(1)

STEPS, CKPT_EVERY = 150, 7
COMMON = ["--steps", str(STEPS), "--set", "batch_size=32", "--set", "n_train=200",
          "--set", "n_test=100", "--set", f"ckpt_every={CKPT_EVERY}", "--set", "log_every=1",
          "--set", "keep_checkpoints=2", "--device", "cpu", "--no-progress"]
JOBS = {
    "distill": ["distill", "--source", "gaussian", "--set", "floor_pairs=1", *COMMON],
    "teacher": ["train-teacher", "--target", "8gaussians", "--set", "sample_steps=2",
                "--set", "warmup_steps=5", *COMMON],
}


@pytest.fixture(scope="module")
def teacher(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("crash") / "teacher"
    return rdmd.train_teacher("8gaussians", out, steps=40, batch_size=64, n_train=200,
                              n_test=100, sample_steps=2, device="cpu", progress=False)


def _args(job: str, teacher: Path, out: Path) -> list[str]:
    extra = ["--teacher", str(teacher)] if job == "distill" else []
    return [*JOBS[job], *extra, "--out", str(out)]


def _start(args: list[str], **env: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "rdmd.cli", *args], env=child_env(**env),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def _kill(proc: subprocess.Popen) -> None:
    os.kill(proc.pid, signal.SIGKILL)
    assert proc.wait(timeout=60) == -signal.SIGKILL


def _logged_steps(run: Path) -> int:
    try:
        return max(0, len((run / "log.csv").read_text().splitlines()) - 1)
    except FileNotFoundError:
        return 0


def _rows(run: Path) -> list[dict[str, str]]:
    with open(run / "log.csv", newline="") as f:
        return [{k: v for k, v in r.items() if k != "time_s"} for r in csv.DictReader(f)]


def _assert_identical(a: Path, b: Path, note: str) -> None:
    assert (a / "model.safetensors").read_bytes() == (b / "model.safetensors").read_bytes(), \
        f"final weights differ ({note})"
    ta, ma = ckpt.load_checkpoint(ckpt.latest_checkpoint(a / "checkpoints"))
    tb, mb = ckpt.load_checkpoint(ckpt.latest_checkpoint(b / "checkpoints"))
    assert ta.keys() == tb.keys()
    diff = [k for k in ta if not torch.equal(ta[k], tb[k])]
    assert not diff, f"checkpoint tensors differ ({note}): {diff[:5]}"
    assert ma == mb
    ra, rb = _rows(a), _rows(b)
    assert [int(r["step"]) for r in rb] == list(range(1, STEPS + 1)), note
    assert ra == rb, f"logs differ ({note})"


@pytest.fixture(scope="module")
def reference(teacher: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Uninterrupted runs of both jobs."""
    runs = {}
    for job in JOBS:
        out = tmp_path_factory.mktemp("ref") / job
        assert main(_args(job, teacher, out)) == 0
        runs[job] = out
    return runs


@pytest.mark.parametrize("job", ["distill", "teacher"])
def test_sigkill_at_a_random_step_then_resume(job: str, teacher: Path,
                                              reference: dict[str, Path],
                                              tmp_path: Path) -> None:
    kill_after = random.Random(time.time_ns()).randrange(3, STEPS - 30)
    note = f"{job}, kill requested after step {kill_after}"
    run = tmp_path / "run"
    proc = _start(_args(job, teacher, run))
    wait_for(lambda: _logged_steps(run) >= kill_after, proc, f"step {kill_after}", poll=0.002)
    _kill(proc)
    killed_at = _logged_steps(run)
    note += f", log held {killed_at} steps"
    assert not (run / "model.json").exists(), f"the run had finished ({note})"
    last = ckpt.latest_checkpoint(run / "checkpoints")
    assert last is None or int(last.name[5:]) <= killed_at + CKPT_EVERY, note

    assert main([JOBS[job][0], "--out", str(run), "--resume", "--no-progress"]) == 0, note
    _assert_identical(reference[job], run, note)
    assert len(list((run / "checkpoints").iterdir())) == 2  # keep_checkpoints=2


def test_sigkill_inside_a_checkpoint_write(teacher: Path, reference: dict[str, Path],
                                           tmp_path: Path) -> None:
    save_step = CKPT_EVERY * random.Random(time.time_ns()).randrange(2, STEPS // CKPT_EVERY)
    note = f"kill inside the save of step {save_step}"
    run, flag = tmp_path / "run", tmp_path / "in_save.flag"
    proc = _start(_args("distill", teacher, run), RDMD_TEST_PAUSE_IN_SAVE=str(save_step),
                  RDMD_TEST_PAUSE_FLAG=str(flag), RDMD_TEST_PAUSE_S="120")
    wait_for(flag.exists, proc, f"the save of step {save_step}", poll=0.002)
    root = run / "checkpoints"
    half = [p for p in root.iterdir() if p.name.startswith(".tmp_step_")]
    assert half and (half[0] / ckpt.TENSORS).is_file(), note  # the write is under way
    _kill(proc)

    last = ckpt.latest_checkpoint(root)
    assert last is not None and last.name == f"step_{save_step - CKPT_EVERY:08d}", note
    tensors, state = ckpt.load_checkpoint(last)  # the previous checkpoint loads
    assert state["step"] == save_step - CKPT_EVERY
    assert all(torch.isfinite(v).all() for v in tensors.values() if v.is_floating_point())
    assert not (root / f"step_{save_step:08d}").exists()

    assert main(["distill", "--out", str(run), "--resume", "--no-progress"]) == 0, note
    assert not [p for p in root.iterdir() if p.name.startswith(".tmp_")], "temp left behind"
    _assert_identical(reference["distill"], run, note)

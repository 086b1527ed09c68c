"""Runs that cannot collide or be lost (issue 12): the run-folder lock, SIGINT/SIGTERM with a
checkpoint, fresh runs that fail before their first checkpoint, non-finite config values.

Real processes where the point is processes (two of them into one folder, a signal); the
second process runs in this one where it can (it is refused in milliseconds, so no race with
the first). Timing (1 CPU thread, contended): ~5 s per ``rdmd`` subprocess, mostly importing
torch.
"""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from rdmd_subprocess import child_env, wait_for

import rdmd
from rdmd.cli import main
from rdmd.errors import RdmdError
from rdmd.methods import RDMD
from rdmd.training.lock import LOCK_FILE, RunLock
from rdmd.training.rundir import claim_run

torch.set_num_threads(1)

TINY = ["--set", "batch_size=32", "--set", "n_train=200", "--set", "n_test=100",
        "--device", "cpu", "--no-progress"]
DISTILL = ["distill", "--source", "gaussian", "--set", "floor_pairs=1", "--set",
           "lr_schedule=constant", "--set", "ot_start=8",  # constant: resumed with more
           *TINY]  # steps; ot_start pinned: the 2-D default grows with steps
TEACHER = ["train-teacher", "--target", "8gaussians", "--set", "sample_steps=2",
           "--set", "warmup_steps=2", "--set", "lr_schedule=constant", *TINY]


@pytest.fixture(scope="module")
def teacher(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("safety") / "teacher"
    return rdmd.train_teacher("8gaussians", out, steps=40, batch_size=64, n_train=200,
                              n_test=100, sample_steps=2, device="cpu", progress=False)


def _default_sigint() -> None:
    """A child of a background job inherits SIGINT ignored (and rdmd keeps it ignored)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _start(args: list[str], **env: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "rdmd.cli", *args], env=child_env(**env),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=_default_sigint)


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return [{k: v for k, v in r.items() if k != "time_s"} for r in csv.DictReader(f)]


def _cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    rc = main(args)
    out, err = capsys.readouterr()
    return rc, out, err


# -- the lock --------------------------------------------------------------------------------

def test_second_lock_is_refused_naming_the_holder_and_released(tmp_path: Path) -> None:
    out = tmp_path / "runs" / "r"
    first = RunLock(out)
    first.acquire()
    holder = json.loads((out / LOCK_FILE).read_text())
    assert holder["pid"] == os.getpid() and holder["host"] and holder["started"]
    with pytest.raises(RdmdError, match=rf"in use by another rdmd run \(pid {os.getpid()} "):
        RunLock(out).acquire()
    first.release()
    assert not out.exists(), "the folder the lock made (and nothing else used) stays behind"
    second = RunLock(out)
    second.acquire()  # free again
    second.release()


def test_only_rank_zero_locks(tmp_path: Path) -> None:
    with claim_run(tmp_path / "r", "distill", resume=False, main=False):
        assert not (tmp_path / "r").exists()
    with claim_run(tmp_path / "r", "distill", resume=False, main=True):
        assert (tmp_path / "r" / LOCK_FILE).is_file()
        with pytest.raises(RdmdError, match="in use"), \
                claim_run(tmp_path / "r", "distill", resume=True, main=True):
            pass


def test_two_processes_into_one_out(teacher: Path, tmp_path: Path,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    """The issue's scenario: lam 1.0 and lam 0.25 into one --out. The second is refused with
    the holder's pid, fresh or --resume, and the folder is the first run's alone."""
    out = tmp_path / "r"
    flag = tmp_path / "in_save"
    a = _start([*DISTILL, "--teacher", str(teacher), "--lam", "1.0", "--steps", "6",
                "--set", "ckpt_every=2", "--set", "log_every=1", "--out", str(out)],
               RDMD_TEST_PAUSE_IN_SAVE="2", RDMD_TEST_PAUSE_FLAG=str(flag),
               RDMD_TEST_PAUSE_S="2")
    wait_for(flag.exists, a, "the first run's checkpoint at step 2")
    for extra in ([], ["--resume"]):
        rc, _, err = _cli([*DISTILL, "--teacher", str(teacher), "--lam", "0.25", "--steps", "6",
                           "--out", str(out), *extra], capsys)
        assert rc == 2
        assert err.count("\n") == 1, err
        assert f"is in use by another rdmd run (pid {a.pid} on " in err
        assert "rdmd distill" in err and "--lam 1.0" in err, "the holder's command is named"
    _, err_a = a.communicate(timeout=120)
    assert a.returncode == 0, err_a
    assert not (out / LOCK_FILE).exists()
    cfg = json.loads((out / "config.json").read_text())["config"]
    model = json.loads((out / "model.json").read_text())
    metrics = json.loads((out / "metrics.json").read_text())
    assert cfg["lam"] == model["lam"] == metrics["lam"] == 1.0
    assert [int(r["step"]) for r in _rows(out / "log.csv")] == list(range(1, 7))


def test_a_killed_holder_leaves_no_stale_lock(teacher: Path, tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "r"
    flag = tmp_path / "in_save"
    a = _start([*DISTILL, "--teacher", str(teacher), "--steps", "6", "--set", "ckpt_every=2",
                "--set", "log_every=1", "--out", str(out)], RDMD_TEST_PAUSE_IN_SAVE="4",
               RDMD_TEST_PAUSE_FLAG=str(flag), RDMD_TEST_PAUSE_S="60")
    wait_for(flag.exists, a, "the checkpoint at step 4")
    a.send_signal(signal.SIGKILL)
    a.wait(timeout=30)
    assert (out / LOCK_FILE).is_file()  # the file stays; the lock died with its process
    rc, out_text, err = _cli(["distill", "--out", str(out), "--resume", "--no-progress"],
                             capsys)
    assert rc == 0, err
    assert f"resuming {out} at step 2 of 6" in out_text
    assert [int(r["step"]) for r in _rows(out / "log.csv")] == list(range(1, 7))


# -- SIGINT / SIGTERM --------------------------------------------------------------------------

@pytest.mark.parametrize("job,sig", [("distill", signal.SIGINT), ("teacher", signal.SIGTERM)])
def test_signal_writes_a_checkpoint_and_resume_loses_no_step(
        job: str, sig: signal.Signals, teacher: Path, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    """A run signalled mid-way checkpoints the step it was at and says how to go on; resumed,
    it ends bit for bit like a run that was never stopped (constant learning rate, so the
    resumed run may be given a nearer end)."""
    args = DISTILL + ["--teacher", str(teacher)] if job == "distill" else TEACHER
    out = tmp_path / "run"
    common = ["--set", "ckpt_every=100000", "--set", "log_every=1", "--seed", "3"]
    a = _start([*args, *common, "--steps", "100000", "--out", str(out)])
    log = out / "log.csv"
    wait_for(lambda: log.is_file() and log.read_text().count("\n") > 10, a, "10 logged steps")
    a.send_signal(sig)
    _, err = a.communicate(timeout=120)
    assert a.returncode == 128 + sig, err
    last = err.strip().splitlines()[-1]
    m = re.fullmatch(rf"rdmd: interrupted: {sig.name}: stopped after step (\d+) of 100000; "
                     rf"checkpoint (\S+); continue with: rdmd (\S+) --out (\S+) --resume", last)
    assert m, last
    step = int(m.group(1))
    assert step >= 10
    assert Path(m.group(2)) == out / "checkpoints" / f"step_{step:08d}"
    assert Path(m.group(2)).is_dir() and Path(m.group(4)) == out
    assert m.group(3) == ("distill" if job == "distill" else "train-teacher")
    assert [int(r["step"]) for r in _rows(log)][-1] == step  # nothing after the checkpoint

    end = step + 3
    rc, text, err = _cli([m.group(3), "--out", str(out), "--resume", "--steps", str(end),
                          "--no-progress"], capsys)
    assert rc == 0, err
    assert f"resuming {out} at step {step} of {end}" in text
    ref = tmp_path / "ref"
    rc, _, err = _cli([*args, *common, "--steps", str(end), "--out", str(ref)], capsys)
    assert rc == 0, err
    assert _rows(log) == _rows(ref / "log.csv")
    assert [int(r["step"]) for r in _rows(log)] == list(range(1, end + 1))
    assert (out / "model.safetensors").read_bytes() == (ref / "model.safetensors").read_bytes()


def test_sigterm_during_the_ot_start_leaves_nothing(teacher: Path, tmp_path: Path) -> None:
    """SIGTERM before the steps (here RDMD's OT start, minutes on images) used to end the
    process without unwinding and leave a half-made run folder behind; it now ends like
    Ctrl-C there: one line, exit 143, nothing kept, so the same command runs again."""
    out = tmp_path / "run"
    args = [*DISTILL, "--teacher", str(teacher), "--set", "ot_start=10000000", "--steps",
            "3", "--out", str(out)]
    a = _start(args)
    wait_for(lambda: (out / LOCK_FILE).is_file(), a, "the run folder's lock")
    time.sleep(3.0)  # the 2-D data and teacher load in well under this: in the OT start
    a.send_signal(signal.SIGTERM)
    _, err = a.communicate(timeout=120)
    assert a.returncode == 128 + signal.SIGTERM, err
    last = err.strip().splitlines()[-1]
    assert last.startswith("rdmd: interrupted: SIGTERM before the first checkpoint; nothing of "
                           f"this run was kept in {out}"), last
    assert not out.exists() or not any(out.iterdir()), list(out.iterdir())


# -- failing before the first checkpoint -----------------------------------------------------

@pytest.mark.parametrize("flag,value", [("--lam", "nan"), ("--lam", "inf"),
                                        ("--sigma-g", "nan"), ("--set", "lr_fake=Infinity"),
                                        ("--set", "dm_sigma_max=NaN")])
def test_non_finite_values_are_refused_before_any_folder(
        flag: str, value: str, teacher: Path, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "r"
    rc, _, err = _cli([*DISTILL, "--teacher", str(teacher), flag, value, "--steps", "3",
                       "--out", str(out)], capsys)
    assert rc == 2
    assert err.count("\n") == 1 and "must be a finite number" in err, err
    assert not out.exists()


def test_non_finite_values_in_a_config_file(tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    conf = tmp_path / "c.toml"
    conf.write_text("lr = nan\n")
    out = tmp_path / "t"
    rc, _, err = _cli([*TEACHER, "--config", str(conf), "--out", str(out)], capsys)
    assert rc == 2 and "'lr' must be a finite number" in err, err
    assert not out.exists()


def _poison_first_step(monkeypatch: pytest.MonkeyPatch) -> None:
    orig = RDMD.generator_loss

    def poisoned(self, *args, **kwargs):  # noqa: ANN001, ANN202
        loss, y, parts = orig(self, *args, **kwargs)
        return loss * float("nan"), y, parts

    monkeypatch.setattr(RDMD, "generator_loss", poisoned)


def test_nan_at_step_one_leaves_nothing_that_blocks_a_retry(
        teacher: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "r"
    args = [*DISTILL, "--teacher", str(teacher), "--steps", "3", "--out", str(out)]
    _poison_first_step(monkeypatch)
    rc, _, err = _cli(args, capsys)
    assert rc == 2 and err.count("\n") == 1, err
    assert "non-finite loss at step 1" in err and "so the same command can be run again" in err
    assert "checkpoints" not in err  # no folder that does not exist is named
    assert not out.exists()
    monkeypatch.undo()
    handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    rc, _, err = _cli(args, capsys)  # the same command, retried
    assert rc == 0, err
    assert {s: signal.getsignal(s) for s in handlers} == handlers  # a run leaves them as found


def test_nan_after_a_checkpoint_names_a_checkpoint_that_exists(
        teacher: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    orig = RDMD.generator_loss
    calls = {"n": 0}

    def poisoned(self, *args, **kwargs):  # noqa: ANN001, ANN202
        loss, y, parts = orig(self, *args, **kwargs)
        calls["n"] += 1
        return (loss * float("nan") if calls["n"] == 4 else loss), y, parts

    monkeypatch.setattr(RDMD, "generator_loss", poisoned)
    out = tmp_path / "r"
    rc, _, err = _cli([*DISTILL, "--teacher", str(teacher), "--steps", "6", "--set",
                       "ckpt_every=2", "--out", str(out)], capsys)
    assert rc == 2
    m = re.search(r"the last good checkpoint is (\S+)$", err.strip())
    assert m, err
    assert Path(m.group(1)).is_dir() and Path(m.group(1)).name == "step_00000002"
    assert (out / "config.json").is_file()  # a run with a checkpoint is kept for --resume


def test_ctrl_c_while_loading_a_fresh_run_leaves_nothing(
        teacher: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    mod = sys.modules["rdmd.training.distill"]  # the package exports a function of that name
    def interrupted(*a: object, **k: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(mod, "setup_dist", interrupted)
    out = tmp_path / "r"
    rc, _, err = _cli([*DISTILL, "--teacher", str(teacher), "--steps", "3", "--out", str(out)],
                      capsys)
    assert rc == 130
    assert err.strip() == (f"rdmd: interrupted: SIGINT before the first checkpoint; nothing "
                           f"of this run was kept in {out}, run the same command again")
    assert not out.exists()


def test_a_run_killed_before_its_first_checkpoint_says_what_to_do(
        teacher: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """What SIGKILL leaves before the first checkpoint (config.json, no checkpoint): a fresh
    run into it says exactly how to go on, and --resume starts it again."""
    out = tmp_path / "r"
    args = [*DISTILL, "--teacher", str(teacher), "--steps", "3", "--out", str(out)]
    assert _cli(args, capsys)[0] == 0
    for f in out.iterdir():  # all but config.json, as a kill before step 1 leaves it
        if f.is_dir():
            shutil.rmtree(f)
        elif f.name != "config.json":
            f.unlink()
    rc, _, err = _cli(args, capsys)
    assert rc == 2
    assert "stopped before its first checkpoint; pass --resume" in err
    assert f"or delete {out} to start afresh" in err
    rc, text, err = _cli(["distill", "--out", str(out), "--resume", "--no-progress"], capsys)
    assert rc == 0, err
    assert "at step 0 of 3 (it has no checkpoint yet)" in text


# -- the teacher's EMA warms up ----------------------------------------------------------------

def _flat(tensors: dict[str, torch.Tensor], head: str) -> torch.Tensor:
    return torch.cat([v.flatten().float() for k, v in sorted(tensors.items())
                      if k.startswith(head) and v.is_floating_point()])


def test_a_short_teachers_ema_is_not_its_initialisation(tmp_path: Path) -> None:
    """300 steps at decay 0.999: without a warm-up the EMA keeps 0.999^300 = 74% of the
    random initial weights (measured: it moves 0.22 of the way the trained net moved from
    the initialisation); with it, 0.998 of the way."""
    from rdmd.checkpoint import load_checkpoint, load_tensors
    from rdmd.models import build_denoiser, load_model

    run = rdmd.train_teacher("8gaussians", tmp_path / "t", steps=300, ckpt_every=300,
                             batch_size=16, n_train=200, n_test=100, sample_steps=2,
                             warmup_steps=2, device="cpu", progress=False, ema_decay=0.999)
    meta = load_model(run).meta
    inits = []
    for seed in (0, 1):  # the run's seed (0) builds its initial weights; seed 1 another
        torch.manual_seed(seed)
        inits.append(_flat(build_denoiser(meta["backbone"], meta["sigma_data"]).state_dict(),
                           ""))
    w0, other = inits
    tensors, _ = load_checkpoint(run / "checkpoints" / "step_00000300")
    net, ema = _flat(tensors, "module.net."), _flat(tensors, "module.ema.")
    assert torch.equal(_flat(load_tensors(run / "model.safetensors"), ""), ema)
    # w0 is this run's initialisation: training moved the net far less than another seed is
    assert float((net - w0).norm() / (other - w0).norm()) < 0.5
    moved = float((ema - w0).norm() / (net - w0).norm())
    assert moved > 0.8, f"the EMA moved {moved:.2f} of the way from its initialisation"


def test_saved_teacher_runs_keep_their_ema_without_warm_up(tmp_path: Path) -> None:
    """A run saved before the warm-up existed resumes as it was trained."""
    from rdmd.config import TeacherConfig, config_from_saved, fill_kind_defaults, to_dict

    saved = to_dict(fill_kind_defaults(TeacherConfig(), "vector"))  # as a run saves it
    del saved["ema_warmup"]
    assert config_from_saved(TeacherConfig, saved, "old").ema_warmup is False
    assert TeacherConfig().ema_warmup is True


def test_stop_signals_restore_the_handlers_they_replaced() -> None:
    from rdmd.training.stop import StopSignals

    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    stop = StopSignals(announce=False)
    with stop:
        assert signal.getsignal(signal.SIGTERM) == stop._handle
        os.kill(os.getpid(), signal.SIGTERM)  # noted, not fatal
        time.sleep(0.05)
        assert stop.signum == signal.SIGTERM
    assert {s: signal.getsignal(s) for s in before} == before

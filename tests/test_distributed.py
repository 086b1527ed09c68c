"""Data-parallel training: 2 processes over gloo on CPU (``torchrun --standalone
--nproc_per_node 2``) give the result of one process with the same global batch and seed.

Tolerance: max |difference| of every parameter (and Adam state) < 1e-5 after the run. Measured:
3e-8 (distillation, 5 steps) and 3e-8 (teacher, 6 steps) on 2-D data in fp32; the difference is
the order of the floating-point sums (DDP averages two half-batch gradients).

Evaluation (during training with ``eval_every`` and at the end) is split over the ranks and
gathered; its metrics match one process's to 1e-4.

Timing (2 CPU cores): each torchrun launch ~7-12 s (two interpreters importing torch).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import rdmd
from rdmd import checkpoint as ckpt
from rdmd.distributed import Dist, ShardedDraws
from rdmd.methods import RDMD
from rdmd.models import load_model
from rdmd.training.runtime import batches as _batches
from rdmd.training.runtime import hold_in_bf16

torch.set_num_threads(1)

TOL = 1e-5
TORCHRUN = Path(sys.executable).parent / "torchrun"
TEACHER = ["--target", "8gaussians", "--steps", "6", "--set", "batch_size=64",
           "--set", "n_train=200", "--set", "n_test=100", "--set", "sample_steps=4",
           "--set", "warmup_steps=2", "--set", "log_every=1", "--set", "ckpt_every=3",
           "--seed", "3", "--device", "cpu", "--no-progress"]
DISTILL = ["--source", "gaussian", "--steps", "5", "--set", "batch_size=64", "--set",
           "lr_schedule=constant", "--set",
           "n_train=200", "--set", "n_test=100", "--set", "floor_pairs=1", "--set",
           "log_every=1", "--set", "ckpt_every=2", "--set", "grad_clip=1.0", "--set",
           "eval_every=5", "--seed", "3", "--device", "cpu", "--no-progress"]


def _env() -> dict[str, str]:
    src = str(Path(rdmd.__file__).resolve().parents[1])
    return {**os.environ, "OMP_NUM_THREADS": "1",
            "PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")])}


def _torchrun(args: list[str], nproc: int = 2) -> subprocess.CompletedProcess:
    if not TORCHRUN.is_file():
        pytest.skip(f"torchrun not found next to {sys.executable}")
    r = subprocess.run([str(TORCHRUN), "--standalone", "--nproc_per_node", str(nproc),
                        "-m", "rdmd.cli", *args], capture_output=True, text=True,
                       env=_env(), timeout=300)
    assert r.returncode == 0, f"torchrun failed ({r.returncode}):\n{r.stdout}\n{r.stderr}"
    return r


def _single(args: list[str]) -> None:
    """The same command in one process (in this interpreter)."""
    from rdmd.cli import main

    assert main(args) == 0


def _max_diff(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], prefixes: tuple[str, ...]
              ) -> float:
    keys = [k for k in a if k.startswith(prefixes) and a[k].is_floating_point()]
    assert keys and {k for k in b if k.startswith(prefixes)} == set(
        k for k in a if k.startswith(prefixes))
    return max(float((a[k].double() - b[k].double()).abs().max()) for k in keys)


def _log(run: Path) -> list[dict[str, str]]:
    import csv

    with open(run / "log.csv", newline="") as f:
        return [{k: v for k, v in r.items() if k != "time_s"} for r in csv.DictReader(f)]


def test_two_gloo_processes_match_one_process(tmp_path: Path) -> None:
    """Teacher, then RDMD, each trained by 2 processes and by 1: same parameters."""
    one_t, two_t = tmp_path / "teacher1", tmp_path / "teacher2"
    _single(["train-teacher", "--out", str(one_t), *TEACHER])
    r = _torchrun(["train-teacher", "--out", str(two_t), *TEACHER])
    assert r.stdout.count("teacher written to") == 1  # rank 0 alone reports
    diff_t = _max_diff(load_file(str(one_t / "model.safetensors")),
                       load_file(str(two_t / "model.safetensors")), ("",))
    assert diff_t < TOL, f"teacher: 2 processes differ from 1 by {diff_t:.3g}"
    # the evaluation's sampling was split over both ranks and gathered
    mt1 = json.loads((one_t / "metrics.json").read_text())
    mt2 = json.loads((two_t / "metrics.json").read_text())
    assert mt2["w2_sq"] == pytest.approx(mt1["w2_sq"], rel=1e-4)
    assert (two_t / "plots" / "teacher_samples.png").is_file()

    one, two = tmp_path / "rdmd1", tmp_path / "rdmd2"
    _single(["distill", "--teacher", str(one_t), "--out", str(one), *DISTILL])
    r = _torchrun(["distill", "--teacher", str(one_t), "--out", str(two), *DISTILL])
    assert r.stdout.count("generator written to") == 1
    a = ckpt.load_checkpoint(ckpt.latest_checkpoint(one / "checkpoints"))
    b = ckpt.load_checkpoint(ckpt.latest_checkpoint(two / "checkpoints"))
    diff = _max_diff(a[0], b[0], ("module.generator.", "module.fake.", "opt."))
    assert diff < TOL, f"RDMD: 2 processes differ from 1 by {diff:.3g}"
    # the run generator (batches, noise: the data position) advanced identically
    assert torch.equal(a[0]["rng.run"], b[0]["rng.run"])
    # every rank's generator state is in the checkpoint, written once, by rank 0
    assert "rng.rank1.torch" in b[0] and b[1]["world_size"] == 2 and a[1]["world_size"] == 1
    assert sorted(p.name for p in (two / "checkpoints").iterdir()) == [
        "step_00000002", "step_00000004", "step_00000005"]
    # one log, each step once, the losses averaged over ranks = the global-batch losses
    la, lb = _log(one), _log(two)
    assert [r["step"] for r in lb] == ["1", "2", "3", "4", "5"]
    for ra, rb in zip(la, lb, strict=True):
        assert ra.keys() == rb.keys()
        for k in ra:
            if ra[k] == "" or rb[k] == "":  # metrics only at eval_every
                assert ra[k] == rb[k], (k, ra, rb)
            else:
                assert float(ra[k]) == pytest.approx(float(rb[k]), rel=1e-4, abs=1e-7,
                                                     nan_ok=True), (k, ra, rb)
    ma = json.loads((one / "metrics.json").read_text())
    mb = json.loads((two / "metrics.json").read_text())
    assert mb["w2_sq"] == pytest.approx(ma["w2_sq"], rel=1e-4)
    assert float(lb[-1]["w2_sq"]) == pytest.approx(float(la[-1]["w2_sq"]), rel=1e-4)


def test_resume_under_two_processes_continues_exactly(tmp_path: Path) -> None:
    """A run started by one process and resumed by two ends where one process ends: the run
    does not depend on the number of ranks (global batches, global noise)."""
    teacher = rdmd.train_teacher("8gaussians", tmp_path / "t", steps=30, batch_size=64,
                                 n_train=200, n_test=100, sample_steps=2, device="cpu",
                                 progress=False)
    full, part = tmp_path / "full", tmp_path / "part"
    kw = {"batch_size": 64, "n_train": 200, "n_test": 100, "floor_pairs": 1, "log_every": 1,
          "ckpt_every": 2, "grad_clip": 1.0, "seed": 3, "device": "cpu",
          "lr_schedule": "constant",  # constant: the part run is resumed with more steps
          "ot_start": 8}  # pinned: the 2-D default (4 x steps) differs between the two runs
    rdmd.distill("gaussian", teacher, full, steps=6, progress=False, **kw)
    rdmd.distill("gaussian", teacher, part, steps=4, progress=False, **kw)
    _torchrun(["distill", "--out", str(part), "--resume", "--steps", "6", "--no-progress"])
    diff = _max_diff(load_file(str(full / "model.safetensors")),
                     load_file(str(part / "model.safetensors")), ("",))
    assert diff < TOL
    assert [r["step"] for r in _log(part)] == [str(i) for i in range(1, 7)]


def test_sharded_draws_are_slices_of_the_global_draws() -> None:
    """What each rank draws inside a step is its slice of what one process draws."""
    def draws(rank: int, world: int) -> list[torch.Tensor]:
        g = torch.Generator().manual_seed(7)
        data = torch.arange(40.0)[:, None]
        b = 12 // world
        with ShardedDraws(g, Dist(rank, world), b):
            x = next(_batches(data, 12, g, Dist(rank, world)))
            out = [x, torch.rand(b, generator=g), torch.randn((b, 3), generator=g),
                   torch.randn(torch.Size([b, 2]), generator=g),
                   torch.randn(5, generator=g)]  # not per-sample: the same on every rank
        return [*out, g.get_state()]

    one = draws(0, 1)
    parts = [draws(r, 3) for r in range(3)]
    for i in range(4):
        assert torch.equal(torch.cat([p[i] for p in parts]), one[i])
    assert all(torch.equal(p[4], one[4]) for p in parts)
    assert all(torch.equal(p[5], one[5]) for p in parts)  # generators stay in step


def test_frozen_teacher_has_no_gradients_and_no_optimiser_state(tmp_path: Path) -> None:
    teacher = rdmd.train_teacher("8gaussians", tmp_path / "t", steps=3, batch_size=32,
                                 n_train=100, n_test=50, sample_steps=2, device="cpu",
                                 progress=False)
    den = load_model(teacher).denoiser
    for dtype in ("fp32", "bf16"):
        m = RDMD.from_teacher(den, 0.02)
        if dtype == "bf16":
            hold_in_bf16(m.teacher)
            assert {p.dtype for p in m.teacher.parameters()} == {torch.bfloat16}
            assert {p.dtype for p in m.generator.parameters()} == {torch.float32}
        m.with_optimizers(1e-4, 1e-4)
        opt_g, opt_f = m.optimizers["generator"], m.optimizers["fake"]
        m.train_step(torch.randn(16, 2), torch.Generator().manual_seed(0))
        held = {id(p) for o in (opt_g, opt_f) for g in o.param_groups for p in g["params"]}
        assert all(not p.requires_grad and p.grad is None for p in m.teacher.parameters())
        assert not held & {id(p) for p in m.teacher.parameters()}
        state_ids = {id(p) for o in (opt_g, opt_f) for p in o.state}
        assert not state_ids & {id(p) for p in m.teacher.parameters()}
        with torch.no_grad():
            y = torch.randn(8, 2)
            out = m.teacher(y, torch.full((8,), 0.5))
        assert out.dtype == torch.float32 and torch.isfinite(out).all()


def test_bf16_teacher_run(tmp_path: Path) -> None:
    """``teacher_dtype = "bf16"``: a run trains, its generator and checkpoint stay float32."""
    teacher = rdmd.train_teacher("8gaussians", tmp_path / "t", steps=3, batch_size=32,
                                 n_train=100, n_test=50, sample_steps=2, device="cpu",
                                 progress=False)
    run = rdmd.distill("gaussian", teacher, tmp_path / "r", steps=3, batch_size=32,
                       n_train=100, n_test=50, floor_pairs=1, teacher_dtype="bf16",
                       device="cpu", progress=False)
    w = load_file(str(run / "model.safetensors"))
    assert all(v.dtype == torch.float32 and torch.isfinite(v).all() for v in w.values())
    t = ckpt.load_checkpoint(ckpt.latest_checkpoint(run / "checkpoints"))[0]
    assert not [k for k in t if k.startswith("module.teacher")]  # the teacher is not saved


def test_batch_must_split_over_ranks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from rdmd import distributed
    from rdmd.errors import RdmdError

    monkeypatch.setattr(distributed, "setup", lambda device: Dist(0, 2))
    with pytest.raises(RdmdError, match=r"batch_size 63 \(the global batch\) does not split "
                                        r"over 2 processes"):
        rdmd.train_teacher("8gaussians", tmp_path / "t", steps=2, batch_size=63, n_train=100,
                           n_test=50, device="cpu", progress=False)
    assert not (tmp_path / "t").exists()


def test_sharded_draws_refuse_an_unknown_draw() -> None:
    g = torch.Generator().manual_seed(0)
    with ShardedDraws(g, Dist(0, 2), 4), pytest.raises(RuntimeError, match="unhandled draw"):
        torch.empty(4).normal_(generator=g)


POISON = '''
import os, sys
from rdmd.methods import RDMD
orig = RDMD.generator_loss
def poisoned(self, x, *a, **k):
    loss, y, parts = orig(self, x, *a, **k)
    if os.environ["RANK"] == "1":
        loss = loss * float("nan")
    return loss, y, parts
RDMD.generator_loss = poisoned
from rdmd.cli import main
sys.exit(main(sys.argv[1:]))
'''


def test_non_finite_loss_on_one_rank_stops_every_rank(tmp_path: Path) -> None:
    """A NaN on rank 1 alone: both ranks stop at the same step with the one-line error, none
    with a traceback from inside the gradient all-reduce (which a rank-local check gave)."""
    if not TORCHRUN.is_file():
        pytest.skip(f"torchrun not found next to {sys.executable}")
    teacher = tmp_path / "t"
    _single(["train-teacher", "--out", str(teacher), *TEACHER])
    script = tmp_path / "poison.py"
    script.write_text(POISON)
    r = subprocess.run([str(TORCHRUN), "--standalone", "--nproc_per_node", "2", str(script),
                        "distill", "--teacher", str(teacher), "--out", str(tmp_path / "r"),
                        *DISTILL], capture_output=True, text=True, env=_env(), timeout=300)
    assert r.returncode != 0
    for rank in (0, 1):
        assert r.stderr.count(f"rdmd: error: [rank {rank}] non-finite loss at step 1:") == 1, \
            r.stderr
    # torchrun reports the failed children with its own traceback; none comes from rdmd
    assert not re.search(r'File ".*rdmd/', r.stderr) and "backward" not in r.stderr, \
        r.stderr[-3000:]

"""Training runs: a short 2-D run really translates, resume is exact, failures are clean.

Timing budget (1 CPU thread): a shared 2000-step 8-Gaussians teacher (~7 s) and a 600-step
distillation (~5 s) for the quality check; every other run is a few steps on small batches.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

import rdmd
from rdmd import checkpoint as ckpt
from rdmd import metrics
from rdmd.data import load_domain
from rdmd.edm import EDMLoss
from rdmd.errors import RdmdError
from rdmd.methods import RDMD
from rdmd.models import load_model

torch.set_num_threads(1)

# Small settings for everything but the quality check.
# constant rate: the resume tests extend runs (a cosine run's steps are fixed)
TINY = {"batch_size": 64, "n_train": 200, "n_test": 100, "floor_pairs": 1, "device": "cpu",
        "lr_schedule": "constant",
        "ot_start": 8}  # pinned: the 2-D default (4 x steps) differs between a run and its halves
TINY_TEACHER = {"batch_size": 64, "n_train": 200, "n_test": 100, "sample_steps": 4,
                "warmup_steps": 2, "device": "cpu"}


@pytest.fixture(scope="module")
def teacher(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A teacher good enough for distillation to visibly work (W2^2 ~ 2x floor)."""
    out = tmp_path_factory.mktemp("teacher") / "t"
    return rdmd.train_teacher("8gaussians", out, steps=2000, batch_size=256, n_train=500,
                              n_test=300, warmup_steps=20, device="cpu", progress=False)


def _rows(path: Path, drop: tuple[str, ...] = ("time_s",)) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return [{k: v for k, v in r.items() if k not in drop} for r in csv.DictReader(f)]


def _last_ckpt(run: Path) -> dict[str, torch.Tensor]:
    last = ckpt.latest_checkpoint(run / "checkpoints")
    assert last is not None, f"no checkpoint in {run}"
    return ckpt.load_checkpoint(last)[0]


def _assert_same_tensors(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor],
                         prefixes: tuple[str, ...]) -> None:
    keys = [k for k in a if k.startswith(prefixes)]
    assert keys, f"no tensors under {prefixes}"
    assert set(keys) == {k for k in b if k.startswith(prefixes)}
    diff = [k for k in keys if not torch.equal(a[k], b[k])]
    assert not diff, f"tensors differ after resume: {diff[:5]}"


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file()}


# -- quality: a short run translates -------------------------------------------------------

def test_short_2d_run_lowers_w2(teacher: Path, tmp_path: Path) -> None:
    common = {"lam": 0.02, "batch_size": 256, "n_train": 500, "n_test": 300, "floor_pairs": 2,
              "device": "cpu", "progress": False}
    src = load_domain("gaussian", 500, 300, 0)
    tgt = load_domain("8gaussians", 300, 300, 0)
    x, y = src.test.numpy(), tgt.test.numpy()
    w2_input = metrics.w2_squared(x, y)

    # steps=0: the generator as initialised, G(x) = D_teacher(x; sigma_g)
    init = rdmd.distill("gaussian", teacher, tmp_path / "init", steps=0, **common)
    g0 = load_model(init)
    t = load_model(teacher)
    t_sd, g_sd = t.denoiser.state_dict(), g0.denoiser.state_dict()
    assert all(torch.equal(t_sd[k], g_sd[k]) for k in t_sd), "G is not a copy of the teacher"
    w2_init = metrics.w2_squared(rdmd.translate(g0, x), y)

    # generator lr 2.5x the default so that 600 steps suffice; measured over seeds 0-3:
    # W2^2 = 1.8-2.5 against ~7.9 untranslated and ~8.4 at initialisation
    run = rdmd.distill("gaussian", teacher, tmp_path / "rdmd", steps=600,
                       lr_generator=5e-5, **common)
    gx = rdmd.translate(run, x)
    assert isinstance(gx, np.ndarray) and gx.shape == x.shape
    w2 = metrics.w2_squared(gx, y)
    assert w2 < 0.5 * w2_input, (w2, w2_input)
    assert w2 < 0.5 * w2_init, (w2, w2_init)

    # the run's own report uses the same held-out protocol
    rep = json.loads((run / "metrics.json").read_text())
    assert rep["n_eval"] == 300 and rep["lam"] == 0.02
    assert rep["w2_sq_test"] == pytest.approx(w2, rel=1e-6)  # W2^2 to the held-out set
    assert rep["transport_cost"] == pytest.approx(
        float(((gx.astype(np.float64) - x) ** 2).sum(1).mean()), rel=1e-5)
    assert rep["w2_floor_mean"] > 0 and rep["w2_over_floor"] == pytest.approx(
        rep["w2_sq"] / rep["w2_floor_mean"])


def test_translate_accepts_tensors(teacher: Path, tmp_path: Path) -> None:
    run = rdmd.distill("gaussian", teacher, tmp_path / "r", steps=0, progress=False, **TINY)
    x = torch.randn(17, 2)
    y = rdmd.translate(run, x)
    assert isinstance(y, torch.Tensor) and y.shape == (17, 2)
    assert np.allclose(rdmd.translate(run, x.numpy()), y.numpy())


# -- resume ---------------------------------------------------------------------------------

def test_distill_resume_is_exact(teacher: Path, tmp_path: Path) -> None:
    kw = {**TINY, "lam": 0.02, "ckpt_every": 5, "log_every": 1, "progress": False}
    full = rdmd.distill("gaussian", teacher, tmp_path / "full", steps=10, **kw)
    half = rdmd.distill("gaussian", teacher, tmp_path / "half", steps=5, **kw)
    half = rdmd.distill("gaussian", teacher, half, steps=10, resume=True, progress=False)
    a, b = _last_ckpt(full), _last_ckpt(half)
    _assert_same_tensors(a, b, ("module.generator.", "module.fake.", "opt."))
    assert torch.equal(a["rng.run"], b["rng.run"])
    assert (full / "model.safetensors").read_bytes() == (half / "model.safetensors").read_bytes()
    ra, rb = _rows(full / "log.csv"), _rows(half / "log.csv")
    assert [int(r["step"]) for r in ra] == list(range(1, 11))
    assert ra == rb
    saved = json.loads((half / "config.json").read_text())
    assert saved["config"]["steps"] == 10


def _crash_at_call(monkeypatch: pytest.MonkeyPatch, n: int) -> Any:
    """Make RDMD's ``n``-th train step raise; returns the real ``train_step``."""
    orig = RDMD.train_step
    calls = {"n": 0}

    def flaky(self, *args, **kwargs):  # noqa: ANN001, ANN202
        calls["n"] += 1
        if calls["n"] == n:
            raise _Boom("simulated crash")
        return orig(self, *args, **kwargs)

    monkeypatch.setattr(RDMD, "train_step", flaky)
    return orig


def test_lambda_continuation_resumes_exactly(teacher: Path, tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """A run stopped inside the continuation picks it up at the same lambda (the loop tells
    the method its step), and the continuation changes the run."""
    kw = {**TINY, "lam": 0.02, "lam_start": 2.0, "ckpt_every": 4, "log_every": 1,
          "progress": False}
    full = rdmd.distill("gaussian", teacher, tmp_path / "full", steps=8, **kw)
    orig = _crash_at_call(monkeypatch, 6)  # after the checkpoint at step 4
    run = tmp_path / "crash"
    with pytest.raises(_Boom):
        rdmd.distill("gaussian", teacher, run, steps=8, **kw)
    monkeypatch.setattr(RDMD, "train_step", orig)
    rdmd.distill("gaussian", teacher, run, steps=8, resume=True, progress=False)
    assert (full / "model.safetensors").read_bytes() == (run / "model.safetensors").read_bytes()
    rows = _rows(full / "log.csv")
    assert rows == _rows(run / "log.csv")
    lams = [float(r["lam"]) for r in rows]
    assert lams[0] == pytest.approx(2.0) and lams[-1] == pytest.approx(0.02)
    assert all(a > b for a, b in zip(lams[:4], lams[1:5], strict=True))
    plain = {k: v for k, v in kw.items() if k != "lam_start"}
    const = rdmd.distill("gaussian", teacher, tmp_path / "const", steps=8, **plain)
    assert (const / "model.safetensors").read_bytes() != (full / "model.safetensors").read_bytes()


def test_teacher_resume_is_exact(tmp_path: Path) -> None:
    kw = {**TINY_TEACHER, "ckpt_every": 4, "log_every": 1, "lr_schedule": "constant",
          "progress": False}
    full = rdmd.train_teacher("8gaussians", tmp_path / "full", steps=8, **kw)
    half = rdmd.train_teacher("8gaussians", tmp_path / "half", steps=4, **kw)
    half = rdmd.train_teacher("8gaussians", half, steps=8, resume=True, progress=False)
    _assert_same_tensors(_last_ckpt(full), _last_ckpt(half), ("module.ema.", "module.net.",
                                                              "opt."))
    assert (full / "model.safetensors").read_bytes() == (half / "model.safetensors").read_bytes()
    assert _rows(full / "log.csv") == _rows(half / "log.csv")


def test_constant_run_extends_with_a_final_decay(tmp_path: Path) -> None:
    """A finished constant-rate run resumed with more steps and a decay ends like the same
    schedule run in one go, with the rate falling linearly to 0 over the decay."""
    kw = {**TINY_TEACHER, "ckpt_every": 4, "log_every": 1, "lr_schedule": "constant",
          "progress": False}
    full = rdmd.train_teacher("8gaussians", tmp_path / "full", steps=10, decay_steps=6, **kw)
    half = rdmd.train_teacher("8gaussians", tmp_path / "half", steps=4, **kw)
    half = rdmd.train_teacher("8gaussians", half, steps=10, decay_steps=6, resume=True,
                              progress=False)
    assert (full / "model.safetensors").read_bytes() == (half / "model.safetensors").read_bytes()
    rows = _rows(half / "log.csv")
    assert rows == _rows(full / "log.csv")
    lr = [float(r["lr"]) for r in rows]
    base = lr[3]
    assert lr[4:] == pytest.approx([base * k / 6 for k in range(6, 0, -1)], rel=1e-5)


def test_decay_that_began_before_the_checkpoint_is_refused(tmp_path: Path) -> None:
    kw = {**TINY_TEACHER, "ckpt_every": 4, "log_every": 1, "lr_schedule": "constant",
          "progress": False}
    run = rdmd.train_teacher("8gaussians", tmp_path / "r", steps=4, **kw)
    before = _snapshot(run)
    with pytest.raises(RdmdError, match=r"steps - decay_steps >= 4"):
        rdmd.train_teacher("8gaussians", run, steps=8, decay_steps=6, resume=True,
                           progress=False)
    assert _snapshot(run) == before
    with pytest.raises(RdmdError, match="decay_steps' is for lr_schedule 'constant'"):
        rdmd.train_teacher("8gaussians", tmp_path / "c", steps=8, decay_steps=2,
                           **{**kw, "lr_schedule": "cosine"})


class _Boom(RuntimeError):
    pass


def test_distill_crash_mid_step_then_resume(teacher: Path, tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    kw = {**TINY, "lam": 0.02, "ckpt_every": 3, "log_every": 1, "progress": False}
    full = rdmd.distill("gaussian", teacher, tmp_path / "full", steps=10, **kw)

    orig = _crash_at_call(monkeypatch, 8)  # step 8: after the checkpoint at 6, a logged 7
    run = tmp_path / "crash"
    with pytest.raises(_Boom):
        rdmd.distill("gaussian", teacher, run, steps=10, **kw)
    assert not (run / "model.json").exists()
    assert [int(r["step"]) for r in _rows(run / "log.csv")] == list(range(1, 8))
    assert ckpt.latest_checkpoint(run / "checkpoints").name == "step_00000006"
    monkeypatch.setattr(RDMD, "train_step", orig)

    rdmd.distill("gaussian", teacher, run, steps=10, resume=True, progress=False)
    _assert_same_tensors(_last_ckpt(full), _last_ckpt(run),
                         ("module.generator.", "module.fake.", "opt."))
    rows = _rows(run / "log.csv")
    steps = [int(r["step"]) for r in rows]
    assert steps == list(range(1, 11)), f"duplicate or missing steps: {steps}"
    assert rows == _rows(full / "log.csv")


def test_teacher_crash_mid_step_then_resume(tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    kw = {**TINY_TEACHER, "ckpt_every": 3, "log_every": 1, "progress": False}  # cosine lr
    full = rdmd.train_teacher("8gaussians", tmp_path / "full", steps=8, **kw)
    orig = EDMLoss.__call__
    calls = {"n": 0}

    def flaky(self, *args, **kwargs):  # noqa: ANN001, ANN202
        calls["n"] += 1
        if calls["n"] == 5:
            raise _Boom("simulated crash")
        return orig(self, *args, **kwargs)

    monkeypatch.setattr(EDMLoss, "__call__", flaky)
    run = tmp_path / "crash"
    with pytest.raises(_Boom):
        rdmd.train_teacher("8gaussians", run, steps=8, **kw)
    monkeypatch.setattr(EDMLoss, "__call__", orig)
    rdmd.train_teacher("8gaussians", run, steps=8, resume=True, progress=False)
    _assert_same_tensors(_last_ckpt(full), _last_ckpt(run), ("module.ema.", "module.net.",
                                                             "opt."))
    assert (full / "model.safetensors").read_bytes() == (run / "model.safetensors").read_bytes()
    rows = _rows(run / "log.csv")
    assert [int(r["step"]) for r in rows] == list(range(1, 9))
    assert rows == _rows(full / "log.csv")


# -- failures -------------------------------------------------------------------------------

def test_non_finite_loss_from_huge_inputs(teacher: Path, tmp_path: Path) -> None:
    a = np.full((50, 2), 1e30, dtype=np.float32)
    a[:, 1] *= -1
    a += np.arange(50, dtype=np.float32)[:, None] * 1e28
    src = tmp_path / "huge.npy"
    np.save(src, a)
    with pytest.raises(RdmdError, match=r"non-finite.*step 1\b") as e:
        rdmd.distill(str(src), teacher, tmp_path / "r", steps=5, progress=False, **TINY)
    assert "\n" not in str(e.value)
    assert not (tmp_path / "r" / "model.json").exists()


def test_non_finite_loss_keeps_last_checkpoint(teacher: Path, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    orig = RDMD.generator_loss
    calls = {"n": 0}

    def poisoned(self, *args, **kwargs):  # noqa: ANN001, ANN202
        loss, y, parts = orig(self, *args, **kwargs)
        calls["n"] += 1
        if calls["n"] == 5:
            loss = loss * float("nan")
        return loss, y, parts

    monkeypatch.setattr(RDMD, "generator_loss", poisoned)
    run = tmp_path / "r"
    kw = {**TINY, "ckpt_every": 2, "log_every": 1, "progress": False}
    with pytest.raises(RdmdError, match=r"non-finite.*step 5\b"):
        rdmd.distill("gaussian", teacher, run, steps=6, **kw)
    last = ckpt.latest_checkpoint(run / "checkpoints")
    assert last is not None and last.name == "step_00000004"
    tensors, state = ckpt.load_checkpoint(last)
    assert state["step"] == 4
    assert all(torch.isfinite(v).all() for k, v in tensors.items() if v.is_floating_point())
    assert not (run / "model.json").exists()

    monkeypatch.setattr(RDMD, "generator_loss", orig)
    rdmd.distill("gaussian", teacher, run, steps=6, resume=True, progress=False)
    m = load_model(run)
    assert m.role == "generator"
    assert [int(r["step"]) for r in _rows(run / "log.csv")] == list(range(1, 7))


def test_lam_zero_is_a_supported_setting(teacher: Path, tmp_path: Path) -> None:
    """lambda = 0 (plain DMD) trains and is recorded; that it adds no cost gradient is
    tests/test_methods.py::test_lambda_adds_exactly_lambda_times_the_cost_gradient."""
    run = rdmd.distill("gaussian", teacher, tmp_path / "r", steps=3, lam=0.0, log_every=1,
                       progress=False, **TINY)
    assert load_model(run).meta["lam"] == 0.0
    assert len(_rows(run / "log.csv")) == 3


def test_negative_lam_is_refused(teacher: Path, tmp_path: Path) -> None:
    out = tmp_path / "r"
    with pytest.raises(RdmdError, match="lambda"):
        rdmd.distill("gaussian", teacher, out, steps=3, lam=-1.0, progress=False, **TINY)
    assert not out.exists()


def test_fresh_run_into_existing_dir_is_refused(teacher: Path, tmp_path: Path) -> None:
    run = rdmd.distill("gaussian", teacher, tmp_path / "r", steps=2, progress=False, **TINY)
    before = _snapshot(run)
    with pytest.raises(RdmdError, match="already holds a run"):
        rdmd.distill("gaussian", teacher, run, steps=2, progress=False, **TINY)
    assert _snapshot(run) == before
    # a teacher run into the same folder: refused too, nothing touched
    with pytest.raises(RdmdError, match="already holds a run"):
        rdmd.train_teacher("8gaussians", run, steps=2, progress=False, **TINY_TEACHER)
    assert _snapshot(run) == before
    tbefore = _snapshot(teacher)
    with pytest.raises(RdmdError, match="already holds a run"):
        rdmd.train_teacher("8gaussians", teacher, steps=2, progress=False, **TINY_TEACHER)
    assert _snapshot(teacher) == tbefore


def test_resume_without_a_run_is_refused(teacher: Path, tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(RdmdError, match="holds no run"):
        rdmd.distill("gaussian", teacher, empty, steps=2, resume=True, progress=False)
    with pytest.raises(RdmdError, match="holds no run"):
        rdmd.train_teacher("8gaussians", empty, steps=2, resume=True, progress=False)
    assert list(empty.iterdir()) == []
    missing = tmp_path / "missing"
    with pytest.raises(RdmdError, match="holds no run"):
        rdmd.distill("gaussian", teacher, missing, resume=True, progress=False)
    assert not missing.exists()


def test_steps_may_extend_a_finished_run(teacher: Path, tmp_path: Path) -> None:
    run = rdmd.distill("gaussian", teacher, tmp_path / "r", steps=2, log_every=1,
                       progress=False, **TINY)
    rdmd.distill("gaussian", teacher, run, steps=4, resume=True, progress=False)
    assert [int(r["step"]) for r in _rows(run / "log.csv")] == [1, 2, 3, 4]
    assert load_model(run).meta["steps"] == 4


# -- variants -------------------------------------------------------------------------------

def test_fake_steps_two(teacher: Path, tmp_path: Path) -> None:
    kw = {**TINY, "log_every": 1, "progress": False}
    one = rdmd.distill("gaussian", teacher, tmp_path / "k1", steps=2, **kw)
    two = rdmd.distill("gaussian", teacher, tmp_path / "k2", steps=2, fake_steps=2, **kw)
    a, b = _last_ckpt(one), _last_ckpt(two)
    fake = [k for k in a if k.startswith("module.fake.")]
    assert any(not torch.equal(a[k], b[k]) for k in fake), "fake_steps=2 changed nothing"
    # Adam counted two fake updates per generator update
    steps_f = [v for k, v in b.items() if k.startswith("opt.fake.") and k.endswith(".step")]
    steps_g = [v for k, v in b.items() if k.startswith("opt.generator.") and k.endswith(".step")]
    assert steps_f and steps_g
    assert float(steps_f[0]) == 4 and float(steps_g[0]) == 2
    assert all(np.isfinite(float(r["loss_fake"])) for r in _rows(two / "log.csv"))


def test_cost_l1(teacher: Path, tmp_path: Path) -> None:
    kw = {**TINY, "log_every": 1, "progress": False, "ot_start": 0}  # G0: the teacher
    # the finite training set, so that the first batch can be rebuilt below
    run = rdmd.distill("gaussian", teacher, tmp_path / "l1", steps=2, cost="l1",
                       fresh_data=False, **kw)
    m = load_model(run)
    assert m.meta["cost"] == "l1"
    # the first logged cost is mean |x - G0(x)| over the first batch, in normalised units
    t = load_model(teacher)
    norm = t.normalizer
    x_train = norm.encode(load_domain("gaussian", TINY["n_train"], TINY["n_test"], 0).train)
    rng = torch.Generator().manual_seed(0)
    idx = torch.randint(0, x_train.shape[0], (TINY["batch_size"],), generator=rng)
    xb = x_train[idx]
    with torch.no_grad():
        g0 = t.denoiser(xb, 1.0)
    first = float(_rows(run / "log.csv")[0]["loss_cost"])
    assert first == pytest.approx(float((xb - g0).abs().mean()), rel=1e-4)
    assert first != pytest.approx(float(((xb - g0) ** 2).mean()), rel=1e-2)


# -- log ------------------------------------------------------------------------------------

def test_eval_metrics_reach_the_log(teacher: Path, tmp_path: Path) -> None:
    """With ``eval_every`` the held-out metrics must appear in log.csv at those steps, even
    when the first logged row comes before the first evaluation."""
    run = rdmd.distill("gaussian", teacher, tmp_path / "r", steps=2, log_every=1, eval_every=2,
                       progress=False, **TINY)
    with open(run / "log.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["step"]) for r in rows] == [1, 2]
    assert "w2_sq" in rows[1] and rows[1]["w2_sq"] not in ("", None)
    assert float(rows[1]["w2_sq"]) > 0


# -- generator EMA --------------------------------------------------------------------------

def test_generator_ema_follows_the_recurrence(teacher: Path, tmp_path: Path) -> None:
    """The saved generator is the EMA: ``e_t = d_t e_{t-1} + (1 - d_t) g_t`` from the
    teacher's weights, with the warmed-up ``d_t = min(decay, (1 + t) / (10 + t))``."""
    from rdmd.ema import warmup_decay

    decay = 0.5  # below the warm-up for the first steps: d_t = 0.1, 0.18, 0.25, then 0.5
    # no generator features and no OT start: the EMA then starts from exactly the teacher's
    kw = {**TINY, "lam": 0.02, "ckpt_every": 1, "keep_checkpoints": 10, "progress": False,
          "generator_fourier": [], "ot_start": 0}
    run = rdmd.distill("gaussian", teacher, tmp_path / "r", steps=5, ema_decay=decay, **kw)
    raw = {}
    for step in range(1, 6):
        t, _ = ckpt.load_checkpoint(run / "checkpoints" / f"step_{step:08d}")
        raw[step] = t
    head_g, head_e = "module.generator.", "module.generator_ema."
    e = {k: v.clone() for k, v in load_model(teacher).denoiser.state_dict().items()}
    for step in range(1, 6):
        d = warmup_decay(decay, step - 1)
        g = {k[len(head_g) + len("denoiser."):]: v for k, v in raw[step].items()
             if k.startswith(head_g)}
        e = {k: d * e[k] + (1 - d) * g[k] for k in e}
        got = {k[len(head_e) + len("denoiser."):]: v for k, v in raw[step].items()
               if k.startswith(head_e)}
        assert set(got) == set(e)
        for k in e:
            assert torch.allclose(got[k], e[k], rtol=1e-5, atol=1e-7), (step, k)
        assert any(not torch.equal(got[k], g[k]) for k in got), "EMA equals the raw weights"
    saved = load_model(run).denoiser.state_dict()
    assert all(torch.equal(saved[k], got[k]) for k in saved), "saved model is not the EMA"
    assert load_model(run).meta["ema_decay"] == decay


def test_distill_resume_is_exact_with_ema(teacher: Path, tmp_path: Path) -> None:
    kw = {**TINY, "lam": 0.02, "ckpt_every": 5, "log_every": 1, "ema_decay": 0.9,
          "progress": False}
    full = rdmd.distill("gaussian", teacher, tmp_path / "full", steps=10, **kw)
    half = rdmd.distill("gaussian", teacher, tmp_path / "half", steps=5, **kw)
    half = rdmd.distill("gaussian", teacher, half, steps=10, resume=True, progress=False)
    a, b = _last_ckpt(full), _last_ckpt(half)
    _assert_same_tensors(a, b, ("module.generator_ema.", "module.generator.", "module.fake.",
                                "opt."))
    assert (full / "model.safetensors").read_bytes() == (half / "model.safetensors").read_bytes()
    assert _rows(full / "log.csv") == _rows(half / "log.csv")


def test_ema_off_saves_the_raw_generator(teacher: Path, tmp_path: Path) -> None:
    run = rdmd.distill("gaussian", teacher, tmp_path / "r", steps=3, ema_decay=0.0,
                       progress=False, **TINY)
    t = _last_ckpt(run)
    assert not any(k.startswith("module.generator_ema.") for k in t)
    saved = load_model(run).denoiser.state_dict()
    head = "module.generator.denoiser."
    assert all(torch.equal(saved[k], t[head + k]) for k in saved)


def test_fourier_teacher_distills_and_loads(tmp_path: Path) -> None:
    """``fourier`` reaches the teacher's backbone, the generator copies it, and a saved
    generator loads with it (the random features are in the model file)."""
    t = rdmd.train_teacher("8gaussians", tmp_path / "t", steps=3, fourier=[4, 1.0],
                           progress=False, **TINY_TEACHER)
    spec = json.loads((t / "model.json").read_text())["backbone"]
    assert spec["fourier"] == [4, 1.0]
    g = rdmd.distill("gaussian", t, tmp_path / "g", steps=2, progress=False, **TINY)
    model = load_model(g)
    assert model.net.denoiser.backbone.config["fourier"] == [4, 1.0]
    x = np.random.default_rng(0).normal(size=(8, 2))
    assert np.isfinite(np.asarray(rdmd.translate(g, x))).all()
    # the generator-only branch: recorded in the generator's model, not in the teacher's
    gb = rdmd.distill("gaussian", t, tmp_path / "gb", steps=2, progress=False,
                      generator_fourier=[8, 2.0], **TINY)
    spec = json.loads((gb / "model.json").read_text())["backbone"]
    assert spec["fourier_branch"] == [8, 2.0] and spec["fourier"] == [4, 1.0]
    assert np.isfinite(np.asarray(rdmd.translate(gb, x))).all()
    with pytest.raises(RdmdError, match="'generator_fourier' must be"):
        rdmd.distill("gaussian", t, tmp_path / "gbad", steps=1, progress=False,
                     generator_fourier=[8, -1.0], **TINY)
    with pytest.raises(RdmdError, match="'fourier' must be"):
        rdmd.train_teacher("8gaussians", tmp_path / "bad", steps=1, fourier=[0, 1.0],
                           progress=False, **TINY_TEACHER)


# -- the 2-D defaults ---------------------------------------------------------------------------

def test_two_dimensional_runs_take_the_plane_defaults(tmp_path: Path) -> None:
    """A 2-D target gets PLANE_DEFAULTS and d = 3 the vector ones, with no key given; the
    saved config records what ran, and the generator carries the Fourier branch."""
    from rdmd.config import PLANE_DEFAULTS

    runs = {}
    for name, spec in (("plane", "8gaussians"), ("vector", "gaussian:d=3")):
        t = rdmd.train_teacher(spec, tmp_path / f"t_{name}", **{**TINY_TEACHER, "steps": 2})
        src = "gaussian" if name == "plane" else "gaussian:d=3"
        g = rdmd.distill(src, t, tmp_path / f"g_{name}", **{**TINY, "steps": 2,
                                                             "lr_schedule": None},
                         progress=False)
        runs[name] = (json.loads((t / "config.json").read_text())["config"],
                      json.loads((g / "config.json").read_text())["config"], g)
    t_cfg, g_cfg, g = runs["plane"]
    assert t_cfg["encoder"] == PLANE_DEFAULTS["TeacherConfig"]["encoder"]
    for key in ("lr_generator", "lr_schedule", "generator_fourier"):
        assert g_cfg[key] == PLANE_DEFAULTS["DistillConfig"][key]
    assert load_model(g).meta["backbone"]["fourier_branch"] == [256, 3.0]
    t_cfg, g_cfg, g = runs["vector"]
    assert t_cfg["encoder"] is None and t_cfg["steps"] == 2
    assert (g_cfg["lr_schedule"], g_cfg["generator_fourier"], g_cfg["batch_size"]) == (
        "constant", None, TINY["batch_size"])
    assert "fourier_branch" not in load_model(g).meta["backbone"]

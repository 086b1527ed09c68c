"""Warm start (config key ``init_from``): a new distillation run starts from another run's
networks and optimiser moments, with its own rates and schedule from step 0; a module the
checkpoint lacks (the GAN head) stays fresh; a checkpoint of another kind is refused in one
line and leaves no run folder behind."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import rdmd
from rdmd import checkpoint as ckpt
from rdmd.backbones import MLPBackbone
from rdmd.cli import main
from rdmd.edm import EDMDenoiser
from rdmd.errors import RdmdError
from rdmd.methods import RDMD, RDMDGAN
from rdmd.models import load_model
from rdmd.training.state import RunState, warm_start

torch.set_num_threads(1)
TINY_T = {"steps": 3, "batch_size": 32, "n_train": 100, "n_test": 50, "sample_steps": 2,
          "device": "cpu", "progress": False}
TINY = {"batch_size": 32, "n_train": 100, "n_test": 50, "floor_pairs": 1, "device": "cpu",
        "progress": False, "lr_schedule": "constant", "ema_decay": 0.0, "ot_start": 0}
SIG = {"job": "distill", "backbone": {"name": "mlp"}, "data_shape": [2]}


@pytest.fixture(scope="module")
def teacher(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return rdmd.train_teacher("8gaussians", tmp_path_factory.mktemp("t") / "t", **TINY_T)


def _trained(lr: float = 1e-3, gan: bool = False) -> RDMD:
    torch.manual_seed(0)
    den = EDMDenoiser(MLPBackbone(2), 1.0)
    m = (RDMDGAN if gan else RDMD).from_teacher(den, 0.1).with_optimizers(lr, lr)
    if gan:
        m.add_gan(0.1, 0.1, "teacher", lr=lr)
    return m


def _step_adam(m: RDMD) -> None:
    """Move every trained network and give its optimiser moments (a stand-in for training)."""
    for name, opt in m.optimizers.items():
        net = m.modules[name]
        loss = sum((p.float() ** 2).sum() for p in net.parameters() if p.requires_grad)
        opt.zero_grad()
        loss.backward()
        opt.step()


def _save(m: RDMD, root: Path, step: int, sig: dict = SIG) -> Path:
    tensors, meta = RunState(m.modules, m.optimizers, torch.Generator(), signature=sig
                             ).to_checkpoint()
    ckpt.save_checkpoint(root, step, tensors, meta, 3)
    return ckpt.latest_checkpoint(root)


def test_networks_and_moments_come_over_rates_stay_and_extra_modules_stay_fresh(
        tmp_path: Path) -> None:
    old = _trained(lr=1e-3)
    _step_adam(old)
    path = _save(old, tmp_path / "checkpoints", 7)
    new = _trained(lr=5e-5, gan=True)
    disc_before = {k: v.clone() for k, v in new.modules["disc"].state_dict().items()}
    info = warm_start(new.modules, new.optimizers, tmp_path, SIG)  # a run folder: latest
    assert info["step"] == 7 and info["path"] == str(path)
    assert set(info["modules"]) == {"generator", "fake"} and info["fresh"] == ["disc"]
    for name in ("generator", "fake"):
        for (k, a), b in zip(old.modules[name].state_dict().items(),
                             new.modules[name].state_dict().values(), strict=True):
            assert torch.equal(a, b), (name, k)
        o, n = old.optimizers[name], new.optimizers[name]
        assert n.param_groups[0]["lr"] == 5e-5  # this run's rate, not the checkpoint's
        so, sn = o.state_dict()["state"], n.state_dict()["state"]
        assert so.keys() == sn.keys() and len(sn) > 0
        for i in so:
            assert torch.equal(so[i]["exp_avg"], sn[i]["exp_avg"])
    for k, v in new.modules["disc"].state_dict().items():
        assert torch.equal(v, disc_before[k])


def test_a_checkpoint_of_another_kind_or_nothing_is_refused(tmp_path: Path) -> None:
    m = _trained()
    with pytest.raises(RdmdError, match="does not exist"):
        warm_start(m.modules, m.optimizers, tmp_path / "nowhere", SIG)
    (tmp_path / "empty").mkdir()
    with pytest.raises(RdmdError, match="neither a checkpoint folder nor a run folder"):
        warm_start(m.modules, m.optimizers, tmp_path / "empty", SIG)
    teacher_sig = {**SIG, "job": "teacher"}
    path = _save(m, tmp_path / "t" / "checkpoints", 3, teacher_sig)
    with pytest.raises(RdmdError, match="another job"):
        warm_start(m.modules, m.optimizers, path, SIG)
    wider = {**SIG, "data_shape": [8]}
    with pytest.raises(RdmdError, match="another data_shape"):
        warm_start(m.modules, m.optimizers, path.parent.parent, {**wider, "job": "teacher"})


def test_run_from_a_finished_run_starts_at_its_weights(teacher: Path, tmp_path: Path) -> None:
    base = rdmd.distill("gaussian", teacher, tmp_path / "base", steps=4, lr_generator=1e-2,
                        **TINY)  # a rate that moves it well away from the teacher
    saved, _ = ckpt.load_checkpoint(ckpt.latest_checkpoint(base / "checkpoints"))
    # rates 1e-12: one step moves nothing visibly, so the saved generator is its start
    warm = rdmd.distill("gaussian", teacher, tmp_path / "warm", steps=1, lr_generator=1e-12,
                        lr_fake=1e-12, init_from=str(base), **TINY)
    model = load_model(warm)
    head = "module.generator."
    ours = model.net.state_dict()
    theirs = {k[len(head):]: v for k, v in saved.items() if k.startswith(head)}
    assert ours.keys() == theirs.keys()
    fresh = rdmd.distill("gaussian", teacher, tmp_path / "fresh", steps=1, lr_generator=1e-12,
                         lr_fake=1e-12, **TINY)
    other = load_model(fresh).net.state_dict()
    for k in ours:
        assert torch.allclose(ours[k], theirs[k], rtol=0, atol=1e-8), k
    assert any(not torch.allclose(other[k], theirs[k], atol=1e-3) for k in ours)
    meta = json.loads((warm / "model.json").read_text())
    assert meta["init_from"]["step"] == 4 and "generator" in meta["init_from"]["modules"]
    cfg = json.loads((warm / "config.json").read_text())["config"]
    assert cfg["init_from"] == str(base)


def test_cli_refuses_a_teacher_checkpoint_and_leaves_no_run(
        teacher: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "warm"
    rc = main(["distill", "--source", "gaussian", "--teacher", str(teacher), "--out", str(out),
               "--steps", "1", "--no-progress", "--init-from", str(teacher),
               "--set", "device=cpu"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc != 0 and "init_from" in err[-1] and "another job" in err[-1]
    assert not out.exists()


def test_a_start_that_trained_on_this_runs_validation_sources_is_refused(
        teacher: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Validation would flatter weights that saw its sources: another seed's split, or no
    split at all, is refused in one line before a run folder exists; the same split runs."""
    held = {**TINY, "val_size": 20, "eval_every": 1, "select": "best_val"}
    base = rdmd.distill("gaussian", teacher, tmp_path / "base", steps=1, **held)
    whole = rdmd.distill("gaussian", teacher, tmp_path / "whole", steps=1, **TINY)
    for start, seed, what in ((base, 1, "its seed is 0"), (whole, 0, "its val_size is 0")):
        out = tmp_path / f"warm_{seed}"
        rc = main(["distill", "--source", "gaussian", "--teacher", str(teacher), "--out",
                   str(out), "--steps", "1", "--no-progress", "--init-from", str(start),
                   "--set", "device=cpu", "--set", "val_size=20", "--set", f"seed={seed}",
                   "--set", "eval_every=1", "--set", "select=best_val"])
        err = capsys.readouterr().err.strip().splitlines()
        assert rc != 0 and what in err[-1] and "validation sources" in err[-1], err[-1:]
        assert not out.exists()
    ok = rdmd.distill("gaussian", teacher, tmp_path / "same", steps=1,
                      init_from=str(ckpt.latest_checkpoint(base / "checkpoints")), **held)
    assert json.loads((ok / "model.json").read_text())["init_from"]["step"] == 1

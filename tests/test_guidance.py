"""Autoguidance (rdmd.guidance): the guided denoiser, the guide a teacher run keeps, and how
evaluation and distillation use it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import rdmd
from rdmd.errors import RdmdError
from rdmd.guidance import GUIDE_WEIGHTS, AutoGuided, guide_step
from rdmd.models import load_model

TINY_TEACHER = {"batch_size": 64, "n_train": 200, "n_test": 100, "sample_steps": 4,
                "warmup_steps": 0, "device": "cpu", "lr_schedule": "constant",
                "progress": False}


class _Const(torch.nn.Module):
    def __init__(self, value: float) -> None:
        super().__init__()
        self.value = value
        self.sigma_data = 0.5

    def forward(self, x: torch.Tensor, sigma: object, cond: object = None) -> torch.Tensor:
        return torch.full_like(x, self.value)


def test_autoguided_extrapolates_from_the_guide() -> None:
    x = torch.zeros(3, 2)
    assert torch.equal(AutoGuided(_Const(2.0), _Const(1.0), 1.0)(x, 1.0), torch.full((3, 2), 2.0))
    assert torch.allclose(AutoGuided(_Const(2.0), _Const(1.0), 3.0)(x, 1.0),
                          torch.full((3, 2), 4.0))  # 1 + 3 * (2 - 1)
    assert torch.allclose(AutoGuided(_Const(2.0), _Const(2.0), 3.0)(x, 1.0),
                          torch.full((3, 2), 2.0))  # a guide that agrees changes nothing
    assert AutoGuided(_Const(0.0), _Const(0.0), 2.0).sigma_data == 0.5
    with pytest.raises(ValueError):
        AutoGuided(_Const(0.0), _Const(0.0), 0.0)
    with pytest.raises(ValueError):
        AutoGuided(_Const(0.0), _Const(0.0), 2.0, sigma_max=0.0)


def test_guidance_interval() -> None:
    """Above ``sigma_max`` the plain teacher; per-sample levels are split per sample."""
    g = AutoGuided(_Const(2.0), _Const(1.0), 3.0, sigma_max=0.5)
    x = torch.zeros(4, 2)
    assert torch.equal(g(x, 1.0), torch.full((4, 2), 2.0))
    assert torch.allclose(g(x, 0.5), torch.full((4, 2), 4.0))
    out = g(x, torch.tensor([0.1, 1.0, 0.5, 80.0]))
    assert torch.allclose(out[:, 0], torch.tensor([4.0, 2.0, 4.0, 2.0]))


def test_guide_step() -> None:
    assert guide_step(0.0, 100) is None
    assert guide_step(0.5, 4000) == 2000
    assert guide_step(0.01, 10) == 1 and guide_step(0.99, 10) == 9  # inside the run


def test_guide_is_the_ema_at_its_step(tmp_path: Path) -> None:
    """The guide of a 40-step run is the 20-step run's model (a constant rate: the first 20
    steps of both are the same), and the model file names it."""
    full = rdmd.train_teacher("8gaussians", tmp_path / "full", steps=40, guide_at=0.5,
                              **TINY_TEACHER)
    short = rdmd.train_teacher("8gaussians", tmp_path / "short", steps=20, guide_at=0.0,
                               **TINY_TEACHER)
    meta = json.loads((full / "model.json").read_text())
    assert meta["guide_step"] == 20 and meta["guidance"] == 3.0
    assert not (short / GUIDE_WEIGHTS).exists()
    assert "guide_step" not in json.loads((short / "model.json").read_text())
    guided, plain = load_model(full), load_model(short)
    assert guided.guide is not None and plain.guide is None
    for k, v in plain.denoiser.state_dict().items():
        assert torch.equal(guided.guide.state_dict()[k], v), k
    assert not torch.equal(guided.denoiser.state_dict()["backbone.dec.0.weight"],
                           guided.guide.state_dict()["backbone.dec.0.weight"])
    assert isinstance(guided.score(), AutoGuided) and guided.score().weight == 3.0
    assert guided.score(1.0) is guided.denoiser and plain.score() is plain.denoiser
    assert guided.score().sigma_max == 0.5
    assert guided.churn is not None and guided.churn.s_churn == 20.0
    assert guided.churn.s_tmax == 0.25 and plain.churn is not None  # 2-D: both churn
    m = json.loads((full / "metrics.json").read_text())
    assert m["guidance"] == 3.0 and m["sample_churn"] == 20.0
    assert m["nfe"] == 2 * (2 * 4 - 1)  # two networks per evaluation (at most)


def test_guide_survives_resume(tmp_path: Path) -> None:
    """Stopped before the guide step, a run resumed to the same length keeps the same guide
    as the run made in one go."""
    full = rdmd.train_teacher("8gaussians", tmp_path / "full", steps=12, ckpt_every=4,
                              guide_at=0.5, **TINY_TEACHER)
    half = rdmd.train_teacher("8gaussians", tmp_path / "half", steps=4, ckpt_every=4,
                              guide_at=0.5, **TINY_TEACHER)
    half = rdmd.train_teacher("8gaussians", half, steps=12, resume=True, progress=False)
    assert (full / GUIDE_WEIGHTS).read_bytes() == (half / GUIDE_WEIGHTS).read_bytes()
    assert (full / "model.safetensors").read_bytes() == \
        (half / "model.safetensors").read_bytes()


def test_missing_guide_file_is_one_clear_error(tmp_path: Path) -> None:
    run = rdmd.train_teacher("8gaussians", tmp_path / "t", steps=8, guide_at=0.5,
                             **TINY_TEACHER)
    (run / GUIDE_WEIGHTS).unlink()
    with pytest.raises(RdmdError, match="guide.safetensors is missing"):
        load_model(run)


def test_guide_keys_are_checked(tmp_path: Path) -> None:
    with pytest.raises(RdmdError, match="guide_at"):
        rdmd.train_teacher("8gaussians", tmp_path / "a", steps=8,
                           **{**TINY_TEACHER, "guide_at": 1.0})
    with pytest.raises(RdmdError, match="guidance"):
        rdmd.train_teacher("8gaussians", tmp_path / "b", steps=8,
                           **{**TINY_TEACHER, "guidance": 0.0})
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_defaults_guide_plane_data_only() -> None:
    from rdmd.config import TeacherConfig, fill_kind_defaults

    plane = fill_kind_defaults(TeacherConfig(), "plane")
    vec = fill_kind_defaults(TeacherConfig(), "vector")
    assert (plane.guide_at, plane.guidance, plane.guidance_sigma_max, plane.sample_churn,
            plane.churn_sigma_max) == (0.5, 3.0, 0.5, 20.0, 0.25)
    assert (vec.guide_at, vec.guidance, vec.sample_churn) == (0.0, 1.0, 0.0)


def test_distillation_samples_the_guided_teacher(tmp_path: Path) -> None:
    """The OT start's atoms come from the guided sampler; the real score is the bare network
    unless teacher_guidance says otherwise."""
    from rdmd.methods import RDMD

    t = rdmd.train_teacher("8gaussians", tmp_path / "t", steps=8, guide_at=0.5,
                           **TINY_TEACHER)
    model = load_model(t)
    m = RDMD.from_teacher(model.denoiser, 0.02)
    m.use_teacher(model.score(), model.churn, model.score(1.0))
    assert isinstance(m.sampled, AutoGuided) and m.real is m.teacher
    assert m.sample_churn == model.churn
    m.use_teacher(model.score(), None, model.score(2.0))
    assert isinstance(m.real, AutoGuided) and m.real.weight == 2.0
    kw = {"batch_size": 32, "n_train": 100, "n_test": 50, "floor_pairs": 1, "device": "cpu",
          "ot_start": 4, "progress": False}
    a = rdmd.distill("gaussian", t, tmp_path / "a", steps=2, **kw)
    b = rdmd.distill("gaussian", t, tmp_path / "b", steps=2, teacher_guidance=2.0, **kw)
    assert (a / "model.safetensors").read_bytes() != (b / "model.safetensors").read_bytes()


def test_guidance_without_a_guide_is_refused_before_anything_is_written(
        tmp_path: Path) -> None:
    """``teacher_guidance`` on a teacher that kept no guide used to distil the bare network in
    silence; now it is one clear error and no run folder."""
    t = rdmd.train_teacher("8gaussians", tmp_path / "t", steps=4, guide_at=0.0, **TINY_TEACHER)
    model = load_model(t)
    assert model.score(1.0) is model.denoiser
    with pytest.raises(RdmdError, match="keeps no guide"):
        model.score(2.0)
    with pytest.raises(RdmdError, match="keeps no guide"):
        rdmd.distill("gaussian", t, tmp_path / "d", steps=2, teacher_guidance=2.0,
                     batch_size=32, n_train=100, n_test=50, device="cpu", progress=False)
    assert not (tmp_path / "d").exists()


def test_attach_guide_makes_a_guided_copy(tmp_path: Path) -> None:
    """A teacher trained without a guide gets another teacher of the same network as its
    guide: the copy samples guide + w (teacher - guide); the original is untouched."""
    from rdmd.guidance import attach_guide

    cfg = {**TINY_TEACHER, "guide_at": 0.0}
    long = rdmd.train_teacher("8gaussians", tmp_path / "long", steps=16, **cfg)
    short = rdmd.train_teacher("8gaussians", tmp_path / "short", steps=6, **cfg)
    before = (long / "model.json").read_bytes()
    out = attach_guide(long, short, tmp_path / "guided", 2.5, sigma_max=0.7)
    assert (long / "model.json").read_bytes() == before
    guided, a, b = load_model(out), load_model(long), load_model(short)
    for k, v in b.denoiser.state_dict().items():
        assert torch.equal(guided.guide.state_dict()[k], v), k
    for k, v in a.denoiser.state_dict().items():
        assert torch.equal(guided.denoiser.state_dict()[k], v), k
    meta = json.loads((out / "model.json").read_text())
    assert meta["guide_from"]["steps"] == 6 and meta["guidance_sigma_max"] == 0.7
    x, s = torch.randn(5, 2), torch.full((5,), 0.3)
    want = b.denoiser(x, s) + 2.5 * (a.denoiser(x, s) - b.denoiser(x, s))
    torch.testing.assert_close(guided.score()(x, s), want, rtol=1e-5, atol=1e-5)
    assert "guidance_sigma_max" not in json.loads(
        (attach_guide(long, short, tmp_path / "g2", 2.0) / "model.json").read_text())


def test_attach_guide_refuses_what_cannot_guide(tmp_path: Path) -> None:
    from rdmd.guidance import attach_guide

    cfg = {**TINY_TEACHER, "guide_at": 0.0}
    t = rdmd.train_teacher("8gaussians", tmp_path / "t", steps=4, **cfg)
    other = rdmd.train_teacher("swissroll", tmp_path / "o", steps=4, **cfg)
    with pytest.raises(RdmdError, match="differs from the teacher"):
        attach_guide(t, other, tmp_path / "x", 2.0)
    with pytest.raises(RdmdError, match="weight > 0"):
        attach_guide(t, t, tmp_path / "y", 0.0)
    with pytest.raises(RdmdError, match="not a model directory"):
        attach_guide(t, tmp_path / "nowhere", tmp_path / "z", 2.0)
    with pytest.raises(RdmdError, match="not empty"):
        attach_guide(t, t, other, 2.0)
    assert not any((tmp_path / n).exists() for n in ("x", "y", "z"))


def test_attach_guide_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from rdmd.cli import main

    cfg = {**TINY_TEACHER, "guide_at": 0.0}
    t = rdmd.train_teacher("8gaussians", tmp_path / "t", steps=6, **cfg)
    g = rdmd.train_teacher("8gaussians", tmp_path / "g", steps=3, **cfg)
    assert main(["attach-guide", "--teacher", str(t), "--guide", str(g), "--guidance", "2",
                 "--out", str(tmp_path / "tg")]) == 0
    assert load_model(tmp_path / "tg").guidance == 2.0
    capsys.readouterr()
    assert main(["attach-guide", "--teacher", str(t), "--guide", str(g), "--guidance", "-1",
                 "--out", str(tmp_path / "bad")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("rdmd: error:") and err.count("\n") == 1
    assert not (tmp_path / "bad").exists()

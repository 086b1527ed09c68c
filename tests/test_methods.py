"""The method interface: a new method plugs into the generic loop with one registry entry;
RDMD's generator loss adds exactly ``lambda`` times the cost's gradient; conditioned
backbones start as their parents; only the user's mistakes become one-line errors."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import torch

import rdmd
from rdmd import checkpoint as ckpt
from rdmd.backbones import MLPBackbone, build_backbone
from rdmd.backbones.unet import UNetBackbone
from rdmd.costs import COSTS, squared_l2
from rdmd.edm import EDMDenoiser
from rdmd.errors import RdmdError
from rdmd.methods import METHODS, RDMD, Method, OneStepGenerator
from rdmd.models import load_model

torch.set_num_threads(1)
TINY_T = {"steps": 3, "batch_size": 32, "n_train": 100, "n_test": 50, "sample_steps": 2,
          "device": "cpu", "progress": False}
TINY = {"batch_size": 32, "n_train": 100, "n_test": 50, "floor_pairs": 1, "device": "cpu",
        "progress": False, "lr_schedule": "constant",  # constant: resumed with more steps
        "ot_start": 8}  # pinned: the 2-D default (4 x steps) differs between a run and its halves


@pytest.fixture(scope="module")
def teacher(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return rdmd.train_teacher("8gaussians", tmp_path_factory.mktemp("t") / "t", **TINY_T)


class Regress(Method):
    """A toy method, the closing note's example: the generator regresses onto its input."""

    name, ema_of = "regress", "generator"

    def __init__(self, teacher: EDMDenoiser, cfg: Any, cost: Any) -> None:
        super().__init__()
        gen = OneStepGenerator(copy.deepcopy(teacher).requires_grad_(True), cfg.sigma_g)
        self.declare("generator", gen, lr=cfg.lr_generator)

    def train_step(self, x: torch.Tensor, rng: torch.Generator) -> dict[str, float]:
        loss = ((self.nets["generator"](x) - x) ** 2).mean()
        self.check_finite("regress", loss.item())
        self.update("generator", loss)
        return {"loss": loss.item()}


def test_a_new_method_plugs_in(teacher: Path, tmp_path: Path,
                               monkeypatch: pytest.MonkeyPatch) -> None:
    """One registry entry: the loop trains, logs, checkpoints (with its EMA) and resumes it."""
    monkeypatch.setitem(METHODS, "regress", Regress)
    kw = {**TINY, "method": "regress", "log_every": 1, "ckpt_every": 2, "ema_decay": 0.9,
          "lr_generator": 1e-2}
    run = rdmd.distill("gaussian", teacher, tmp_path / "r", steps=2, **kw)
    rdmd.distill("gaussian", teacher, run, steps=4, resume=True, progress=False)
    rows = (run / "log.csv").read_text().splitlines()
    assert rows[0].startswith("step,loss,") and len(rows) == 5
    t, meta = ckpt.load_checkpoint(ckpt.latest_checkpoint(run / "checkpoints"))
    assert {k.split(".")[1] for k in t if k.startswith("module.")} == {"generator",
                                                                        "generator_ema"}
    assert meta["step"] == 4 and set(meta["optimizers"]) == {"generator"}
    m = load_model(run)
    assert m.meta["method"] == "regress" and m.role == "generator"
    saved = m.denoiser.state_dict()
    raw = {k[len("module.generator.denoiser."):]: v for k, v in t.items()
           if k.startswith("module.generator.denoiser.")}
    start = load_model(teacher).denoiser.state_dict()
    moved = [k for k in saved if not torch.equal(raw[k], start[k])]
    assert moved and any(not torch.equal(saved[k], raw[k]) for k in moved)  # the EMA is saved


def test_unknown_method_is_refused(teacher: Path, tmp_path: Path) -> None:
    with pytest.raises(RdmdError, match="'method' must be one of rdmd"):
        rdmd.distill("gaussian", teacher, tmp_path / "r", steps=2, method="dmd9", **TINY)
    assert not (tmp_path / "r").exists()


def test_lambda_adds_exactly_lambda_times_the_cost_gradient() -> None:
    """Same noise, lambda 0 vs 0.3: the generator gradients differ by 0.3 * d mean c(x, G(x))."""
    torch.manual_seed(0)
    teacher = EDMDenoiser(MLPBackbone(2), 1.0)
    lam = 0.3
    x = torch.randn(64, 2)
    sigma, eps = torch.rand(64) * 5 + 0.1, torch.randn(64, 2)

    def grads(lam_: float) -> list[torch.Tensor]:
        torch.manual_seed(1)
        m = RDMD.from_teacher(copy.deepcopy(teacher), lam_)
        for p in m.fake.parameters():  # a fake score unlike the teacher: a non-zero DM term
            p.data.add_(0.05 * torch.randn_like(p))
        loss, _, _ = m.generator_loss(x, sigma=sigma, eps=eps)
        return list(torch.autograd.grad(loss, list(m.generator.parameters())))

    g0, gl = grads(0.0), grads(lam)
    gen = OneStepGenerator(copy.deepcopy(teacher).requires_grad_(True))
    cost = squared_l2(x, gen(x)).mean()
    gc = torch.autograd.grad(cost, list(gen.parameters()))
    assert max(float(a.abs().max()) for a in g0) > 1e-4  # the DM term is really there
    for a, b, c in zip(g0, gl, gc, strict=True):
        torch.testing.assert_close(b - a, lam * c, rtol=1e-4, atol=1e-7)


@pytest.mark.parametrize("kind", ["mlp", "unet"])
def test_conditioned_backbone_starts_as_its_parent(kind: str) -> None:
    torch.manual_seed(0)
    if kind == "mlp":
        parent, child = MLPBackbone(3), MLPBackbone(3, cond_dim=1)
        x, t = torch.randn(16, 3), torch.randn(16)
    else:
        parent, child = UNetBackbone(3, 8, "tiny8"), UNetBackbone(3, 8, "tiny8", cond_dim=1)
        x, t = torch.randn(4, 3, 8, 8), torch.randn(4)
    res = child.load_state_dict(parent.state_dict(), strict=False)
    assert not res.unexpected_keys and all(k.startswith("c_enc.") for k in res.missing_keys)
    cond = torch.linspace(-5, 0, x.shape[0])[:, None]
    with torch.no_grad():
        torch.testing.assert_close(child(x, t, cond=cond), parent(x, t), rtol=0, atol=0)
        child.c_enc.net[-1].weight.normal_()  # once trained, the input matters
        assert not torch.allclose(child(x, t, cond=cond), child(x, t, cond=cond.flip(0)))
    with pytest.raises(ValueError, match="conditioned"):
        child(x, t)
    assert build_backbone({"name": kind, **child.config}).state_dict().keys() == \
        child.state_dict().keys()


def test_backbone_description_errors_are_the_users_only(monkeypatch: pytest.MonkeyPatch
                                                        ) -> None:
    with pytest.raises(RdmdError, match="unknown key"):
        build_backbone({"name": "mlp", "dim": 2, "widths": [3]})
    with pytest.raises(RdmdError, match="missing key"):
        build_backbone({"name": "mlp"})
    with pytest.raises(RdmdError, match="UNet2DModel takes no argument"):
        build_backbone({"name": "unet", "channels": 3, "size": 8, "preset": "tiny8",
                        "nonsense": 1})
    import diffusers

    def broken(self, *a, **k):  # noqa: ANN001, ANN002, ANN003, ANN202
        raise TypeError("a bug inside diffusers")

    monkeypatch.setattr(diffusers.UNet2DModel, "__init__", broken)
    with pytest.raises(TypeError, match="a bug inside diffusers"):  # not "bad description"
        build_backbone({"name": "unet", "channels": 3, "size": 8, "preset": "tiny8"})


def test_a_bug_inside_a_cost_is_not_called_the_users(teacher: Path, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    def buggy(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        raise RuntimeError("a bug in the cost")

    monkeypatch.setitem(COSTS, "buggy", buggy)
    with pytest.raises(RuntimeError, match="a bug in the cost"):
        rdmd.distill("gaussian", teacher, tmp_path / "r", steps=2, cost="buggy", **TINY)
    with pytest.raises(RdmdError, match="lowpass cost needs images"):
        rdmd.distill("gaussian", teacher, tmp_path / "l", steps=2, cost="lowpass:2", **TINY)
    with pytest.raises(RdmdError, match="chroma cost needs RGB images; this data is vectors"):
        rdmd.distill("gaussian", teacher, tmp_path / "c", steps=2, cost="l2+chroma", **TINY)
    assert not (tmp_path / "c").exists()  # refused before the run folder is made


def test_lambda_continuation_is_geometric_then_constant() -> None:
    """``lam_start`` 1 -> ``lam`` 0.01 over half the steps: the midpoint is the geometric
    mean, the second half is ``lam``; the loss really uses the step's lambda."""
    torch.manual_seed(0)
    teacher = EDMDenoiser(MLPBackbone(2), 1.0)
    m = RDMD.from_teacher(teacher, 0.01, lam_start=1.0, lam_anneal=0.5)
    assert m.lam_at(0, 100) == pytest.approx(1.0)
    assert m.lam_at(25, 100) == pytest.approx(0.1)
    assert m.lam_at(50, 100) == pytest.approx(0.01)
    assert m.lam_at(99, 100) == pytest.approx(0.01)
    assert RDMD.from_teacher(teacher, 0.01).lam_at(0, 100) == 0.01  # no continuation
    x, sigma, eps = torch.randn(16, 2), torch.rand(16) + 0.1, torch.randn(16, 2)
    losses = []
    for step in (0, 50):
        m.begin_step(step, 100)
        loss, _, parts = m.generator_loss(x, sigma=sigma, eps=eps)
        losses.append(float((loss - parts["loss_dm"]).detach() / parts["loss_cost"]))
    assert losses == pytest.approx([1.0, 0.01], rel=1e-4)
    with pytest.raises(RdmdError, match="lam_start must exceed"):
        RDMD.from_teacher(teacher, 0.0, lam_start=1.0)

"""The potential generator (``generator = "potential"``): a gradient field by construction,
the identity at step 0, usable without autograd around it, saved and loaded as itself."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import rdmd
from rdmd.backbones.mlp import MLPBackbone
from rdmd.edm import EDMDenoiser
from rdmd.errors import RdmdError
from rdmd.methods import RDMD
from rdmd.methods.potential import PotentialGenerator
from rdmd.models import load_model

torch.set_num_threads(1)


def _trained_like(g: PotentialGenerator) -> PotentialGenerator:
    """Random last layer: a generator that is no longer the identity."""
    torch.manual_seed(1)
    torch.nn.init.normal_(g.net[-1].weight, std=0.5)
    return g


@pytest.mark.parametrize("fourier", [None, [16, 1.0]])
def test_jacobian_is_symmetric(fourier: list[float] | None) -> None:
    """A gradient field's Jacobian is a Hessian: symmetric, so the map cannot rotate."""
    g = _trained_like(PotentialGenerator(4, (32, 32), fourier))
    for x in torch.randn(3, 4):
        hess = torch.autograd.functional.jacobian(lambda v: g(v[None])[0], x) - torch.eye(4)
        assert hess.abs().max() > 1e-2  # the map is not the identity
        assert (hess - hess.T).abs().max() < 1e-4 * hess.abs().max()


def test_starts_as_the_identity_and_trains() -> None:
    g = PotentialGenerator(3, (16, 16))
    x = torch.randn(8, 3)
    assert torch.equal(g(x), x)
    g(x).pow(2).sum().backward()
    assert g.net[-1].weight.grad is not None and g.net[-1].weight.grad.abs().sum() > 0


def test_runs_without_autograd_around_it() -> None:
    """Translation runs under no_grad and inference_mode (rdmd serve): the gradient of the
    potential is taken inside, and nothing it returns carries a graph."""
    g = _trained_like(PotentialGenerator(2, (16, 16)))
    x = torch.randn(5, 2)
    ref = g(x).detach()
    with torch.no_grad():
        out = g(x)
    assert not out.requires_grad and torch.allclose(out, ref)
    with torch.inference_mode():
        xi = x.clone()
        out = g(xi)
    assert torch.allclose(out, ref)


def test_method_builds_it_for_vectors_only() -> None:
    teacher = EDMDenoiser(MLPBackbone(2), 0.5)
    m = RDMD.from_teacher(teacher, 0.01, generator="potential",
                          generator_extras={"fourier_branch": [8, 2.0]}, generator_widths=[24])
    assert isinstance(m.generator, PotentialGenerator)
    assert m.model_meta() == {"backbone": {"name": "potential", "dim": 2, "widths": [24],
                                           "fourier": [8, 2.0]}, "sigma_g": None}

    class Conv(torch.nn.Module):
        pass

    img = EDMDenoiser(Conv(), 0.5)  # type: ignore[arg-type]
    with pytest.raises(RdmdError, match="generator = 'potential' is for vector data"):
        RDMD.from_teacher(img, 0.01, generator="potential")


def test_conditioned_method_refuses_it(tmp_path: Path) -> None:
    with pytest.raises(RdmdError, match="generator = 'potential' is for a fixed lambda"):
        rdmd.distill("gaussian", tmp_path / "t", tmp_path / "g", lam_range=[0.0, 1.0],
                     generator="potential")


def test_distill_saves_and_loads_it(tmp_path: Path) -> None:
    teacher = rdmd.train_teacher("gaussian", tmp_path / "t", steps=20, batch_size=64,
                                 n_train=200, n_test=100, sample_steps=4, device="cpu",
                                 progress=False)
    run = rdmd.distill("gaussian", teacher, tmp_path / "g", steps=10, batch_size=64,
                       n_train=200, n_test=100, floor_pairs=1, lr_generator=1e-2,
                       generator="potential", generator_widths=[16, 16], device="cpu",
                       progress=False)
    model = load_model(run)
    assert isinstance(model.net, PotentialGenerator)
    assert "sigma_g" not in model.meta
    x = torch.randn(6, 2)
    y = rdmd.translate(model, x)
    assert y.shape == x.shape and not torch.allclose(y, x)  # it trained away from identity
    with pytest.raises(RdmdError, match="has no denoiser"):
        _ = model.denoiser

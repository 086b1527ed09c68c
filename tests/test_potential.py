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
from rdmd.methods.potential import ConvexGenerator, PotentialGenerator
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


# --- the convex piecewise-quadratic potential (generator = "convex") ---


def _convex_trained_like(dim: int = 3, pieces: int = 5) -> ConvexGenerator:
    torch.manual_seed(2)
    g = ConvexGenerator(dim, pieces)
    with torch.no_grad():
        g.L.add_(0.5 * torch.randn_like(g.L))
        g.b.normal_(std=1.0)
        g.c.normal_(std=1.0)
    return g


def test_convex_map_is_the_gradient_of_a_convex_potential() -> None:
    """The closed form equals autograd's gradient of tau * logsumexp(q / tau), and the map is
    monotone: <G(x) - G(y), x - y> >= 0 for every pair."""
    g = _convex_trained_like()
    x = torch.randn(64, 3, requires_grad=True)
    p, lx = g.weights(x)
    q = 0.5 * lx.square().sum(-1) + x @ g.b.T + g.c
    tau = g.log_tau.exp()
    (grad,) = torch.autograd.grad((tau * torch.logsumexp(q / tau, 1)).sum(), x)
    assert torch.allclose(g(x), grad, atol=1e-5)
    y = g(x).detach()
    i, j = torch.triu_indices(64, 64, 1)
    assert ((y[i] - y[j]) * (x[i] - x[j]).detach()).sum(-1).min() >= -1e-5
    assert p.max(1).values.min() < 1  # the pieces blend somewhere: not a trivial map


def test_convex_map_starts_near_the_identity() -> None:
    torch.manual_seed(0)
    g = ConvexGenerator(2, 16, spread=0.1)
    x = torch.randn(256, 2)
    assert (g(x) - x).abs().max() < 0.5  # x plus a softmax blend of the b_k (spread 0.1)
    with torch.no_grad():
        g.b.zero_()
    assert torch.allclose(g(x), x)
    smooth = ConvexGenerator(2, 16, widths=[8, 8])  # the smooth term starts at zero
    smooth.load_state_dict(g.state_dict(), strict=False)
    assert torch.allclose(smooth(x), x, atol=1e-6)


def test_convex_generator_through_the_pipeline(tmp_path: Path) -> None:
    """Built by the method (vectors only), distilled, saved, loaded and translated; its keys
    refused where they do not apply."""
    teacher = EDMDenoiser(MLPBackbone(2), 0.5)
    m = RDMD.from_teacher(teacher, 0.01, generator="convex", generator_pieces=7)
    assert isinstance(m.generator, ConvexGenerator)
    # it starts at the semi-discrete OT map onto 7 teacher samples: equal cells of N(0, I)
    cells = m.generator.weights(torch.randn(20000, 2))[0].argmax(1)
    mass = torch.bincount(cells, minlength=7).float() / 20000
    assert (mass - 1 / 7).abs().max() < 0.03, mass
    assert m.model_meta() == {"backbone": {"name": "convex", "dim": 2, "pieces": 7},
                              "sigma_g": None}
    with pytest.raises(RdmdError, match="generator_pieces is for generator = 'convex'"):
        rdmd.distill("gaussian", tmp_path / "t", tmp_path / "x", generator_pieces=4)
    with pytest.raises(RdmdError, match="'convex' takes no generator_fourier"):
        rdmd.distill("gaussian", tmp_path / "t", tmp_path / "x", generator="convex",
                     generator_fourier=[8, 1.0])
    teacher_dir = rdmd.train_teacher("gaussian", tmp_path / "t", steps=20, batch_size=64,
                                     n_train=200, n_test=100, sample_steps=4, device="cpu",
                                     progress=False)
    run = rdmd.distill("gaussian", teacher_dir, tmp_path / "g", steps=10, batch_size=64,
                       n_train=200, n_test=100, floor_pairs=1, lr_generator=1e-2,
                       generator="convex", generator_pieces=4, generator_widths=[8],
                       device="cpu", progress=False)
    model = load_model(run)
    assert isinstance(model.net, ConvexGenerator) and model.net.pieces == 4
    assert model.net.smooth is not None  # the smooth term came back with its weights
    x = torch.randn(6, 2)
    with torch.inference_mode():
        y = rdmd.translate(model, x)
    assert y.shape == x.shape and torch.isfinite(y).all()
    with pytest.raises(RdmdError, match="has no denoiser"):
        _ = model.denoiser

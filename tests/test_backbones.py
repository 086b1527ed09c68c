"""Backbones: the paper's MLP size, and the shared-noise-level path of the one-step generator.

At a fixed sigma the denoiser hands the backbone one ``c_noise`` for the whole batch (the MLP
then embeds it once); values and parameter gradients must equal the per-sample path's.
"""

from __future__ import annotations

import pytest
import torch

from rdmd.backbones import MLPBackbone
from rdmd.backbones.unet import UNetBackbone
from rdmd.edm import EDMDenoiser


def test_mlp_has_the_papers_size_at_d2() -> None:
    n = sum(p.numel() for p in MLPBackbone(2).parameters())
    assert 80_000 <= n <= 95_000, n


def _outputs_and_grads(den: EDMDenoiser, y: torch.Tensor, sigma: float | torch.Tensor
                       ) -> tuple[torch.Tensor, list[torch.Tensor]]:
    den.zero_grad(set_to_none=True)
    out = den(y, sigma)
    (out * torch.linspace(-1, 1, out.numel()).reshape(out.shape)).sum().backward()
    return out.detach(), [p.grad.clone() for p in den.parameters() if p.grad is not None]


@pytest.mark.parametrize("kind", ["mlp", "unet"])
def test_fixed_sigma_shares_one_noise_embedding(kind: str) -> None:
    torch.manual_seed(0)
    if kind == "mlp":
        den, y = EDMDenoiser(MLPBackbone(3), 1.3), torch.randn(64, 3)
    else:
        den, y = EDMDenoiser(UNetBackbone(3, 8, "tiny8"), 0.5), torch.randn(4, 3, 8, 8)
    seen: list[tuple[int, ...]] = []
    den.backbone.register_forward_pre_hook(lambda _m, a: seen.append(tuple(a[1].shape)))
    shared, g_shared = _outputs_and_grads(den, y, 0.7)
    per_sample, g_per = _outputs_and_grads(den, y, torch.full((y.shape[0],), 0.7))
    assert seen == [(1,), (y.shape[0],)]
    torch.testing.assert_close(shared, per_sample, rtol=1e-5, atol=1e-6)
    assert len(g_shared) == len(g_per) == len(list(den.parameters()))
    for a, b in zip(g_shared, g_per, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)  # summation order


def test_mlp_per_sample_noise_levels_differ() -> None:
    """The shared path must not leak into per-sample calls: distinct sigmas, distinct rows."""
    torch.manual_seed(1)
    bb = MLPBackbone(2)
    x = torch.randn(1, 2).expand(5, 2)
    out = bb(x, torch.linspace(-1, 1, 5))
    assert torch.cdist(out, out).add(torch.eye(5)).min() > 0


def test_fourier_features_rebuild_from_the_description() -> None:
    """The random matrix is part of the network: the same description gives the same B, and
    a state_dict saved with it loads into a fresh build (a model file alone suffices)."""
    from rdmd.backbones import backbone_spec, build_backbone

    spec = backbone_spec("mlp", "vector", (2,), fourier=[8, 1.5])
    a, b = build_backbone(spec), build_backbone(spec)
    assert a.config["fourier"] == [8, 1.5] and torch.equal(a.fourier.b, b.fourier.b)
    assert a.fourier.b.shape == (2, 8)
    b.load_state_dict(a.state_dict())
    x, t = torch.randn(16, 2), torch.zeros(16)
    assert torch.equal(a(x, t), b(x, t))
    # without the option the paper's network and state_dict are unchanged
    plain = build_backbone(backbone_spec("mlp", "vector", (2,)))
    assert plain.fourier is None and not any("fourier" in k for k in plain.state_dict())


def test_decoder_widths_from_the_description() -> None:
    """``decoder`` is recorded only when set, so the paper's network keeps its description,
    and a generator copied from such a teacher has the teacher's decoder."""
    from rdmd.backbones import backbone_spec, build_backbone
    from rdmd.methods import RDMD

    assert "decoder" not in backbone_spec("mlp", "vector", (2,))
    spec = backbone_spec("mlp", "vector", (2,), decoder=[64, 32])
    net = build_backbone(spec)
    widths = [m.out_features for m in net.dec if isinstance(m, torch.nn.Linear)]
    assert spec["decoder"] == [64, 32] and widths == [64, 32, 2]
    teacher = EDMDenoiser(net, 1.0)
    for extras in (None, {"fourier_branch": [4, 1.0]}):
        gen = RDMD.from_teacher(teacher, 0.1, generator_extras=extras).modules["generator"]
        assert [m.out_features for m in gen.denoiser.backbone.dec
                if isinstance(m, torch.nn.Linear)] == [64, 32, 2]


@pytest.mark.parametrize("bad", [[0, 1.0], [4, 0.0], [2.5, 1.0]])
def test_fourier_features_bad_values(bad: list[float]) -> None:
    with pytest.raises(ValueError, match="fourier"):
        MLPBackbone(2, fourier=bad)


def test_generator_fourier_branch_starts_as_the_teacher() -> None:
    """The branch's last layer is zero: the extended copy computes the teacher's function
    (and its new parameters get gradients, so it can learn)."""
    from rdmd.errors import RdmdError
    from rdmd.methods.copies import extended_copy

    torch.manual_seed(0)
    teacher = EDMDenoiser(MLPBackbone(2), 1.0)
    for p in teacher.parameters():  # non-trivial weights
        p.data.add_(0.1 * torch.randn_like(p))
    gen, spec = extended_copy(teacher, fourier_branch=[16, 3.0])
    assert spec["fourier_branch"] == [16, 3.0] and "fourier_branch" not in teacher.backbone.config
    y, s = torch.randn(32, 2), torch.full((32,), 0.7)
    assert torch.equal(gen(y, s), teacher(y, s))
    gen(y, s).pow(2).sum().backward()
    last = gen.backbone.ff_branch[1][-1]
    assert last.weight.grad is not None and last.weight.grad.abs().sum() > 0
    unet = EDMDenoiser(UNetBackbone(3, 8, "tiny8"), 0.5)
    with pytest.raises(RdmdError, match="generator_fourier needs the MLP backbone"):
        extended_copy(unet, fourier_branch=[16, 3.0])

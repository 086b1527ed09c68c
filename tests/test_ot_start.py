"""The OT start (``ot_start``): the generator fitted to the semi-discrete OT map onto teacher
samples before RDMD's first step; cells that split the source evenly, a fit that lands on
them, the same start every time, and no start on resume."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import rdmd
from rdmd.backbones.mlp import MLPBackbone
from rdmd.edm import EDMDenoiser
from rdmd.errors import RdmdError
from rdmd.methods import RDMD, RDMDLam
from rdmd.methods.ot_start import cell_of, cell_potentials, fit_to_ot_map
from rdmd.methods.rdmd_lam import LamCode

torch.set_num_threads(1)


def test_cells_are_the_quantiles_in_one_dimension() -> None:
    """In 1-D the OT map is monotone: the cell of x is the atom of x's quantile."""
    g = torch.Generator().manual_seed(0)
    atoms = torch.linspace(-3, 3, 20)[:, None]
    v = cell_potentials(torch.randn(4000, 1, generator=g), atoms)
    x = torch.randn(50_000, 1, generator=g)
    cells = cell_of(x, atoms, v)
    mass = torch.bincount(cells, minlength=20).float() / len(x)
    assert (mass - 1 / 20).abs().max() < 0.01, mass
    order = torch.argsort(x[:, 0])
    assert (cells[order].diff() >= 0).all()  # monotone: larger inputs, larger atoms


def _draw(seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    return lambda n: torch.randn(n, 2, generator=g)


def test_fit_lands_on_the_cells_and_is_deterministic() -> None:
    teacher = EDMDenoiser(MLPBackbone(2, encoder=[16, 16], decoder=[32, 32]), 0.5)
    starts = []
    for _ in range(2):
        m = RDMD.from_teacher(teacher, 0.02)
        before = {k: p.clone() for k, p in m.generator.named_parameters()}
        info = fit_to_ot_map(m.generator, teacher, _draw(), steps=300, atoms=16, lr=3e-3)
        starts.append(m.generator)
        assert any(not torch.equal(p, before[k]) for k, p in m.generator.named_parameters())
        assert info["ot_start_empty_cells"] < 0.2
    # the same seed and draws give the same weights
    for p, q in zip(starts[0].parameters(), starts[1].parameters(), strict=True):
        assert torch.equal(p, q)
    # the fit's own targets, rebuilt: its atoms (seed 0) and cells (its first draw)
    from rdmd.sampler import sample

    atoms = sample(teacher, (16, 2), n_steps=32, generator=torch.Generator().manual_seed(0))
    v = cell_potentials(_draw()(4 * 16), atoms)
    x = _draw(5)(2000)
    target = atoms[cell_of(x, atoms, v)]
    fresh = RDMD.from_teacher(teacher, 0.02).generator
    with torch.no_grad():
        err_fit = (starts[0](x) - target).pow(2).mean()
        err_fresh = (fresh(x) - target).pow(2).mean()
    assert err_fit < 0.3 * err_fresh, (err_fit, err_fresh)


def test_conditioned_generator_is_fitted_at_the_smallest_lambda() -> None:
    teacher = EDMDenoiser(MLPBackbone(2, encoder=[16, 16], decoder=[32, 32]), 0.5)
    m = RDMDLam.from_teacher_lam(teacher, LamCode.of_range(0.0, 1.0))
    x = torch.randn(8, 2)
    out = m.generator_call(m.generator, x)
    lo = m.code.code(torch.zeros(8))
    assert torch.equal(out, m.generator(x, lo))


def test_distill_starts_once_and_resumes_without_it(tmp_path: Path, monkeypatch) -> None:
    teacher = rdmd.train_teacher("8gaussians", tmp_path / "t", steps=30, batch_size=64,
                                 n_train=200, n_test=100, sample_steps=4, device="cpu",
                                 progress=False)
    kw = dict(batch_size=64, n_train=200, n_test=100, floor_pairs=1, device="cpu",
              progress=False, ot_start=20, ot_start_atoms=32, ckpt_every=5,
              lr_schedule="constant")
    run = rdmd.distill("gaussian", teacher, tmp_path / "g", steps=5, **kw)
    meta = json.loads((Path(run) / "model.json").read_text())
    assert meta["start"]["ot_start_loss"] >= 0 and "seconds" in meta["start"]
    calls = []
    monkeypatch.setattr(RDMD, "start", lambda self, draw, progress=False: calls.append(1) or {})
    rdmd.distill(None, None, tmp_path / "g", resume=True, steps=10, progress=False)
    assert calls == []  # the checkpoint holds the fitted weights: no second start


def test_images_are_assigned_by_pixel_distance() -> None:
    """Images: the cells are those of the flattened squared distance, and the fit moves the
    generator onto its atoms (here on four source images, each its own cell)."""
    from rdmd.backbones.unet import UNetBackbone

    torch.manual_seed(0)
    teacher = EDMDenoiser(UNetBackbone(3, 8, "tiny8"), 0.5)
    src = torch.randn(4, 3, 8, 8, generator=torch.Generator().manual_seed(3))
    atoms = src.flip(0) + 0.01 * torch.randn(4, 3, 8, 8)  # atom k sits on source 3 - k
    v = cell_potentials(src, atoms)
    assert cell_of(src, atoms, v).tolist() == [3, 2, 1, 0]
    draw = lambda n: src.repeat(n // 4, 1, 1, 1)  # noqa: E731  (each source as often)
    m = RDMD.from_teacher(teacher, 0.1)
    info = fit_to_ot_map(m.generator, teacher, draw, steps=100, atoms=4, lr=3e-3, batch=8)
    assert info["ot_start_loss"] >= 0
    from rdmd.sampler import sample

    y = sample(teacher, (4, 3, 8, 8), n_steps=32, generator=torch.Generator().manual_seed(0))
    target = y[cell_of(src, y, cell_potentials(draw(16), y))]
    fresh = RDMD.from_teacher(teacher, 0.1).generator
    with torch.no_grad():
        err_fit = (m.generator(src) - target).pow(2).mean()
        err_fresh = (fresh(src) - target).pow(2).mean()
    assert err_fit < 0.3 * err_fresh, (err_fit, err_fresh)


def test_checked_and_off_by_default() -> None:
    from rdmd.config import DistillConfig, fill_kind_defaults

    with pytest.raises(RdmdError, match="'ot_start_atoms' must be > 0"):
        fill_kind_defaults(DistillConfig(ot_start_atoms=0), "vector")
    assert fill_kind_defaults(DistillConfig(), "vector").ot_start == 0
    assert fill_kind_defaults(DistillConfig(), "image").ot_start == 0
    assert fill_kind_defaults(DistillConfig(ot_start=10), "image").ot_start == 10


def test_plane_default_scales_with_the_iterations() -> None:
    """2-D data with the denoiser generator fit OT_START_PER_STEP steps per RDMD iteration
    (so a short run's start stays short), at most OT_START_MAX; an explicit value wins;
    other generators and other data get none."""
    from rdmd.config import OT_START_MAX, OT_START_PER_STEP, DistillConfig, fill_kind_defaults

    plane = fill_kind_defaults(DistillConfig(), "plane")
    assert plane.ot_start == OT_START_PER_STEP * plane.steps > 0
    long = fill_kind_defaults(DistillConfig(steps=100_000), "plane")  # the fit stays bounded
    assert long.ot_start == OT_START_MAX
    assert fill_kind_defaults(DistillConfig(steps=10), "plane").ot_start == 10 * OT_START_PER_STEP
    assert fill_kind_defaults(DistillConfig(ot_start=3), "plane").ot_start == 3
    assert fill_kind_defaults(DistillConfig(ot_start=0), "plane").ot_start == 0
    assert fill_kind_defaults(DistillConfig(generator="convex"), "plane").ot_start == 0

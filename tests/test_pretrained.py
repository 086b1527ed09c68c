"""The shipped models: small enough to live in the repository (issue 14: under 30 MB in all),
and every one of them loads."""

from __future__ import annotations

from pathlib import Path

import pytest

import rdmd
from rdmd.models import load_model

PRETRAINED = Path(rdmd.__file__).parent / "pretrained"
LIMIT_MB = 30.0


def test_shipped_model_files_stay_under_the_limit() -> None:
    files = [p for p in PRETRAINED.rglob("*") if p.is_file()]
    total = sum(p.stat().st_size for p in files) / 2**20
    biggest = sorted(files, key=lambda p: p.stat().st_size)[-3:]
    assert total < LIMIT_MB, (f"{total:.1f} MB shipped (limit {LIMIT_MB:g}); largest: "
                              f"{', '.join(str(p.relative_to(PRETRAINED)) for p in biggest)}")


@pytest.mark.parametrize("model_json", sorted(PRETRAINED.rglob("model.json")),
                         ids=lambda p: str(p.parent.relative_to(PRETRAINED)))
def test_every_shipped_model_loads(model_json: Path) -> None:
    model = load_model(model_json.parent)
    assert model.role in ("teacher", "generator")


def test_half_weights_halve_the_file_and_load_as_float32(tmp_path: Path) -> None:
    """Shipped weights are stored in float16 (``store_half``): half the bytes, read back into
    a float32 network whose outputs differ from the original by float16 rounding only."""
    import shutil

    import numpy as np
    import torch

    from rdmd.models import store_half

    src = PRETRAINED / "twod" / "8gaussians_lam0.1"
    dst = tmp_path / "m"
    shutil.copytree(src, dst)
    store_half(dst)
    full, half = load_model(src), load_model(dst)
    size = (dst / "model.safetensors").stat().st_size / (src / "model.safetensors").stat().st_size
    assert 0.45 < size < 0.55
    assert all(p.dtype == torch.float32 for p in half.net.parameters())
    x = np.random.default_rng(0).standard_normal((500, 2)).astype(np.float32)
    a, b = rdmd.translate(full, x), rdmd.translate(half, x)
    assert 0 < np.abs(a - b).max() < 1e-2 * np.abs(a).max()


def test_a_guided_teacher_ships_its_guide_in_float16(tmp_path: Path) -> None:
    """The shipped colored-MNIST teacher is autoguided: its guide travels beside it, halved
    like its weights (``store_half(..., GUIDE_WEIGHTS)``), and the guided denoiser it is
    distilled with moves its outputs away from the plain network's."""
    import torch

    from rdmd.checkpoint import atomic_save_tensors, load_tensors
    from rdmd.guidance import GUIDE_WEIGHTS
    from rdmd.models import store_half

    teacher = load_model(PRETRAINED / "cmnist" / "teacher")
    assert teacher.guide is not None and teacher.guidance > 1
    stored = load_tensors(PRETRAINED / "cmnist" / "teacher" / GUIDE_WEIGHTS)
    assert all(v.dtype == torch.float16 for v in stored.values() if v.is_floating_point())
    x = torch.randn(4, *teacher.meta["data_shape"], generator=torch.Generator().manual_seed(0))
    sigma = torch.full((4,), 1.0)
    with torch.no_grad():
        plain, guided = teacher.score(1.0)(x, sigma), teacher.score()(x, sigma)
    assert torch.isfinite(guided).all() and (guided - plain).abs().max() > 1e-3
    # halving names the file it halves and leaves the others alone
    atomic_save_tensors(tmp_path / GUIDE_WEIGHTS, {"w": torch.ones(3)})
    atomic_save_tensors(tmp_path / "model.safetensors", {"w": torch.ones(3)})
    store_half(tmp_path, GUIDE_WEIGHTS)
    assert load_tensors(tmp_path / GUIDE_WEIGHTS)["w"].dtype == torch.float16
    assert load_tensors(tmp_path / "model.safetensors")["w"].dtype == torch.float32

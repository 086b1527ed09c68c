"""The copy check (experiments/teacher_copies.py) calls copies copies and fresh images fresh."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

EXPERIMENTS = Path(__file__).resolve().parents[1] / "experiments"
sys.path.insert(0, str(EXPERIMENTS))
import teacher_copies  # noqa: E402

from rdmd.errors import RdmdError  # noqa: E402


def test_copies_are_found_and_fresh_draws_are_not() -> None:
    g = torch.Generator().manual_seed(0)
    train = torch.rand(50, 3, 8, 8, generator=g) * 2 - 1
    copies = train[:20] + 0.01 * torch.randn(20, 3, 8, 8, generator=g)
    fresh = torch.rand(20, 3, 8, 8, generator=g) * 2 - 1
    c = teacher_copies.copy_stats(copies, train)
    f = teacher_copies.copy_stats(fresh, train)
    assert c["copy_rate"] == 1.0 and c["d1_median"] < 0.2
    assert f["copy_rate"] == 0.0 and f["ratio_median"] > 0.8
    # half copies, half fresh: the rate says so
    assert teacher_copies.copy_stats(torch.cat([copies[:10], fresh[:10]]),
                                     train)["copy_rate"] == pytest.approx(0.5)


def test_one_training_image_is_refused() -> None:
    with pytest.raises(RdmdError, match="two training images"):
        teacher_copies.copy_stats(torch.zeros(3, 4), torch.zeros(1, 4))

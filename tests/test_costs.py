"""Transport costs: the chroma term sees colour and not shape; sums are exact sums."""

from __future__ import annotations

import math

import pytest
import torch

from rdmd.costs import chroma, get_cost, squared_l2
from rdmd.errors import RdmdError


def _digit(mask: torch.Tensor, rgb: tuple[float, float, float]) -> torch.Tensor:
    """A stroke ``mask`` (H, W) of colour ``rgb`` in [0, 1] on black, in [-1, 1]."""
    u = mask[None].float() * torch.tensor(rgb)[:, None, None]
    return (u * 2 - 1)[None]


def _masks() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    a = torch.rand(16, 16, generator=g) < 0.2
    b = torch.rand(16, 16, generator=g) < 0.3  # another shape, other coverage
    return a, b


def _hue(h: float) -> tuple[float, float, float]:
    import colorsys

    return colorsys.hsv_to_rgb(h % 1.0, 0.9, 0.9)


def test_chroma_sees_a_hue_turn_and_not_a_new_shape() -> None:
    a, b = _masks()
    x = _digit(a, _hue(0.3))
    reshaped = _digit(b, _hue(0.3))
    turns = [chroma(x, _digit(a, _hue(0.3 + d / 360))).item() for d in (5, 15, 30)]
    assert chroma(x, reshaped).item() < 1e-3 * turns[0]  # eps: not exactly 0
    assert turns[0] < turns[1] < turns[2]
    # l2 charges the new shape far more than the turn; chroma the other way round
    turned = _digit(a, _hue(0.3 + 30 / 360))
    assert squared_l2(x, reshaped).item() > 10 * squared_l2(x, turned).item()


def test_chroma_ignores_brightness_and_pulls_the_colour_back() -> None:
    a, _ = _masks()
    x = _digit(a, _hue(0.6))
    dim = _digit(a, tuple(0.5 * c for c in _hue(0.6)))
    assert chroma(x, dim).item() < 1e-3 * chroma(x, _digit(a, _hue(0.7))).item()
    y = _digit(a, _hue(0.7)).requires_grad_(True)
    before = chroma(x, y).sum()
    before.backward()
    assert y.grad is not None and y.grad.abs().sum() > 0
    after = chroma(x, (y - 0.05 * y.grad / y.grad.norm()).detach()).sum()
    assert after < before


def test_a_sum_of_costs_is_the_weighted_sum() -> None:
    g = torch.Generator().manual_seed(1)
    x, y = (torch.rand(4, 3, 8, 8, generator=g) * 2 - 1 for _ in range(2))
    total = get_cost("l2 + 10*chroma + 0.5*lowpass:2", (3, 8, 8))(x, y)
    parts = squared_l2(x, y) + 10 * chroma(x, y) + 0.5 * get_cost("lowpass:2")(x, y)
    torch.testing.assert_close(total, parts)
    assert total.shape == (4,)


@pytest.mark.parametrize("name, shape, match", [
    ("l2+x*chroma", (3, 8, 8), "weight 'x' is not a number"),
    ("l2+", (3, 8, 8), "an empty term"),
    ("l2+-1*chroma", (3, 8, 8), "must be finite and >= 0"),
    (f"l2+{math.inf}*chroma", (3, 8, 8), "must be finite and >= 0"),
    ("l2+chroma", (1, 8, 8), "chroma cost needs RGB images; this data is 1-channel"),
    ("chroma", (2,), "chroma cost needs RGB images; this data is vectors"),
    ("l2+lowpass:3", (3, 8, 8), "factor 3 must be >= 1 and divide"),
    ("l2+hue", (3, 8, 8), "unknown cost 'hue'"),
])
def test_bad_costs_are_one_line_errors(name: str, shape: tuple[int, ...], match: str) -> None:
    with pytest.raises(RdmdError, match=match):
        get_cost(name, shape)

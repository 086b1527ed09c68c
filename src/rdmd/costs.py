"""Transport costs ``c(x, y)``, each returning one value per sample as a mean over elements.

Means over elements (not sums) keep ``lambda`` meaningful across dimensions and resolutions.
Names: ``l2`` (squared Euclidean, the paper's), ``l1``, ``lowpass:<factor>`` (squared L2
after average-pooling both images by ``factor``: EGSDE's faithfulness term, which leaves
fine detail free to change), ``chroma`` (squared L2 between the images' mean colours, each
normalised by its brightness: blind to shape and coverage, it sees only a change of palette)
and ``feature:<classifier dir>`` (squared L2 between the features of a trained rdmd
classifier). Costs add with weights: ``l2+10*chroma`` (the DM term cannot see a hue rotation
that keeps the hue histogram, and ``l2`` weighs a thin stroke's colour lightly).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from rdmd.errors import RdmdError

Cost = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def _per_sample_mean(t: torch.Tensor) -> torch.Tensor:
    return t.reshape(t.shape[0], -1).mean(dim=1)


def squared_l2(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``||x - y||^2 / n_elements``: the paper's cost, the one Theorem 3.1 is about."""
    return _per_sample_mean((x - y) ** 2)


def l1(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``||x - y||_1 / n_elements``: more tolerant of a few large, local changes."""
    return _per_sample_mean((x - y).abs())


def lowpass_l2(factor: int) -> Cost:
    """Squared L2 between ``factor``-times average-pooled images (N, C, H, W)."""
    if factor < 1:
        raise RdmdError(f"lowpass factor must be >= 1, got {factor}")

    def cost(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4:
            raise RdmdError("the lowpass cost needs images (N, C, H, W)")
        return squared_l2(F.avg_pool2d(x, factor), F.avg_pool2d(y, factor))

    return cost


def feature_l2(features: Callable[[torch.Tensor], torch.Tensor]) -> Cost:
    """Squared L2 between features of a frozen network; gradients flow through it to ``y``."""

    def cost(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            fx = features(x)
        return squared_l2(fx.float(), features(y).float())

    return cost


def chroma(x: torch.Tensor, y: torch.Tensor, eps: float = 1e-3) -> torch.Tensor:
    """Squared distance between chromaticities ``m / sum(m)`` of the mean colours ``m`` of
    RGB images in [-1, 1]: a 30-degree hue turn of colored MNIST costs about what ``l2``
    charges for it (0.020), a 2 redrawn as a 3 of the same colour about nothing (1e-6)."""
    if x.ndim != 4 or x.shape[1] != 3:
        raise RdmdError("the chroma cost needs RGB images (N, 3, H, W)")

    def chromaticity(t: torch.Tensor) -> torch.Tensor:
        m = ((t.float() + 1) / 2).mean(dim=(2, 3))
        return m / (m.sum(dim=1, keepdim=True) + eps)

    return ((chromaticity(x) - chromaticity(y)) ** 2).mean(dim=1)


def weighted_sum(terms: list[tuple[float, Cost]]) -> Cost:
    """``sum_i w_i c_i(x, y)``: still a cost, so Eq. 15 and the OT start take it unchanged."""

    def cost(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return sum(w * c(x, y) for w, c in terms)  # type: ignore[return-value]

    return cost


COSTS: dict[str, Cost] = {"l2": squared_l2, "sq_l2": squared_l2, "l1": l1, "chroma": chroma}


def get_cost(name: str, shape: tuple[int, ...] | None = None) -> Cost:
    """A cost by name (see the module docstring); the error lists what exists. With the
    samples' ``shape`` the cost is checked against the data first (a low-pass factor that
    does not divide the image, a feature net of other channels): one line, before any run
    folder exists. Only these mismatches are the user's; an error raised inside a cost
    later is a bug and is not converted."""
    if "+" in name:
        return weighted_sum([_term(t.strip(), name, shape) for t in name.split("+")])
    kind, _, arg = name.partition(":")
    if kind in COSTS and not arg:
        if kind == "chroma" and shape is not None and (len(shape) != 3 or shape[0] != 3):
            raise RdmdError("the chroma cost needs RGB images; this data is "
                            + ("vectors" if len(shape) != 3 else f"{shape[0]}-channel images"))
        return COSTS[kind]
    if kind == "lowpass":
        try:
            factor = int(arg or 4)
        except ValueError:
            raise RdmdError(f"lowpass cost: factor must be an integer, got {arg!r}") from None
        if shape is not None:
            if len(shape) != 3:
                raise RdmdError("the lowpass cost needs images; this data is vectors")
            if factor < 1 or shape[-1] % factor or shape[-2] % factor:
                raise RdmdError(f"lowpass cost: factor {factor} must be >= 1 and divide the "
                                f"image size {shape[-2]}x{shape[-1]}")
        return lowpass_l2(factor)
    if kind == "feature" and arg:
        from rdmd.classifier import load_classifier

        net, _ = load_classifier(arg)
        if shape is not None and (len(shape) != 3 or shape[0] != net.in_channels):
            what = "vectors" if len(shape) != 3 else f"{shape[0]}-channel images"
            raise RdmdError(f"feature cost: the classifier in {arg} takes "
                            f"{net.in_channels}-channel images; this data is {what}")
        net.requires_grad_(False)
        return feature_l2(net.features)
    raise RdmdError(f"unknown cost {name!r}; choose l2, l1, chroma, lowpass:<factor> or "
                    "feature:<classifier dir>, or a weighted sum such as l2+10*chroma")


def _term(term: str, whole: str, shape: tuple[int, ...] | None) -> tuple[float, Cost]:
    """One ``[weight*]name`` term of a sum."""
    weight, star, rest = term.partition("*")
    if not star:
        weight, rest = "1", term
    try:
        w = float(weight)
    except ValueError:
        raise RdmdError(f"cost {whole!r}: weight {weight!r} is not a number") from None
    if not w >= 0 or w == float("inf"):
        raise RdmdError(f"cost {whole!r}: weight {weight!r} must be finite and >= 0")
    if not rest:
        raise RdmdError(f"cost {whole!r}: an empty term")
    return w, get_cost(rest, shape)

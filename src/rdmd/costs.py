"""Transport costs ``c(x, y)``, each returning one value per sample as a mean over elements.

Means over elements (not sums) keep ``lambda`` meaningful across dimensions and resolutions.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

Cost = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def _per_sample_mean(t: torch.Tensor) -> torch.Tensor:
    return t.reshape(t.shape[0], -1).mean(dim=1)


def squared_l2(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``||x - y||^2 / n_elements``: the paper's cost, the one Theorem 3.1 is about."""
    return _per_sample_mean((x - y) ** 2)


def l1(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``||x - y||_1 / n_elements``: more tolerant of a few large, local changes."""
    return _per_sample_mean((x - y).abs())


COSTS: dict[str, Cost] = {"l2": squared_l2, "sq_l2": squared_l2, "l1": l1}


def get_cost(name: str) -> Cost:
    """A cost by name; the error lists what exists."""
    try:
        return COSTS[name]
    except KeyError:
        raise ValueError(f"unknown cost {name!r}; choose one of {sorted(COSTS)}") from None

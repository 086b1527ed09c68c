"""Front analysis: each method's (L2, FD) Pareto front, and the L2 budgets at which RDMD's
front lies below the baselines' (paper Fig. 4's claim, as intervals)."""

from __future__ import annotations

import math
from typing import Any

from rdmd.sweep.config import METHOD_ORDER


def pareto_front(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """The (L2, FD) points no other point beats in both (lower is better in each)."""
    front: list[tuple[float, float]] = []
    for p in sorted(points):
        if not front or p[1] < front[-1][1]:
            front.append(p)
    return front


def best_fd_within(front: list[tuple[float, float]], l2: float) -> float:
    """The lowest FD a method reaches at transport cost at most ``l2`` (inf if none)."""
    return min((f for c, f in front if c <= l2), default=math.inf)


def dominance(rows: list[dict[str, Any]], fd_key: str) -> dict[str, Any]:
    """Where RDMD's front lies below each baseline's, as L2 intervals.

    A front is a staircase: at an L2 budget ``l``, the best FD among a method's configurations
    with L2 <= ``l``. RDMD is below a baseline at ``l`` when its best FD there is strictly
    lower. Budgets run over every L2 value in the table, so each interval starts and ends at
    measured configurations.
    """
    fronts = {m: pareto_front([(r["l2"], r[fd_key]) for r in rows if r["method"] == m])
              for m in METHOD_ORDER}
    fronts = {m: f for m, f in fronts.items() if f}
    if "rdmd" not in fronts:
        return {}
    budgets = sorted({r["l2"] for r in rows})
    out: dict[str, Any] = {"fronts": {m: [list(p) for p in f] for m, f in fronts.items()}}
    others = [m for m in fronts if m != "rdmd"]
    for name, group in [*[(m, [m]) for m in others], ("all_baselines", others)]:
        if not group:
            continue
        below = [b for b in budgets if best_fd_within(fronts["rdmd"], b)
                 < min(best_fd_within(fronts[m], b) for m in group)]
        out[f"rdmd_below_{name}"] = intervals(below, budgets)
    return out


def intervals(hits: list[float], grid: list[float]) -> list[list[float]]:
    """Runs of consecutive grid values that are all in ``hits``, as [first, last] pairs."""
    runs: list[list[float]] = []
    s, inside = set(hits), False
    for v in grid:
        if v in s:
            if inside:
                runs[-1][1] = v
            else:
                runs.append([v, v])
            inside = True
        else:
            inside = False
    return runs

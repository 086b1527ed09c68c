"""The DM term's two score passes (frozen teacher, fake score: one architecture, the same
inputs) as two calls, or as one call over stacked weights (``torch.func`` vmap).

An RDMD iteration on 2-D data is mostly per-operation overhead; one stacked call would issue
half the operations. Measured here it is slower (docs/twod.md, "Where the 2-D time goes"), so
rdmd keeps two calls.

    python bench/stacked_scores.py [--batch 512] [--blocks 3] [--iters 200] [--json FILE]
"""

from __future__ import annotations

import argparse
import copy
import time

import torch
from common import median, report
from torch.func import functional_call, stack_module_state, vmap

from rdmd.backbones import MLPBackbone
from rdmd.config import PLANE_DEFAULTS
from rdmd.edm import EDMDenoiser


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=512)
    ap.add_argument("--blocks", type=int, default=3)
    ap.add_argument("--iters", type=int, default=200)
    ap.add_argument("--json")
    a = ap.parse_args()
    torch.manual_seed(0)
    enc = PLANE_DEFAULTS["TeacherConfig"]["encoder"]
    teacher = EDMDenoiser(MLPBackbone(2, enc), 1.0).eval().requires_grad_(False)
    fake = copy.deepcopy(teacher)
    y = torch.randn(a.batch, 2)
    sigma = torch.rand(a.batch) * 5 + 0.02
    params, buffers = stack_module_state([teacher, fake])
    skeleton = copy.deepcopy(teacher).to("meta")

    def one(p: dict, b: dict, y: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        return functional_call(skeleton, (p, b), (y, s))

    both = vmap(one, in_dims=(0, 0, None, None))

    @torch.no_grad()
    def two_calls() -> tuple[torch.Tensor, torch.Tensor]:
        return teacher(y, sigma), fake(y, sigma)

    @torch.no_grad()
    def stacked() -> torch.Tensor:
        return both(params, buffers, y, sigma)

    ref, out = two_calls(), stacked()
    same = bool(torch.allclose(ref[0], out[0], atol=1e-5) and
                torch.allclose(ref[1], out[1], atol=1e-5))
    times: dict[str, list[float]] = {"two_calls": [], "stacked": []}
    for _ in range(a.blocks):  # alternating blocks: both see the same machine
        for name, fn in (("two_calls", two_calls), ("stacked", stacked)):
            for _ in range(20):
                fn()
            t0 = time.perf_counter()
            for _ in range(a.iters):
                fn()
            times[name].append((time.perf_counter() - t0) / a.iters * 1e3)
    res = {"batch": a.batch, "threads": torch.get_num_threads(), "same_outputs": same,
           "two_calls_ms": median(times["two_calls"]), "stacked_ms": median(times["stacked"])}
    res["stacked_over_two_calls"] = res["stacked_ms"] / res["two_calls_ms"]
    report(res, a.json)


if __name__ == "__main__":
    main()

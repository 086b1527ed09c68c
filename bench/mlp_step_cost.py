"""What a teacher step of the 2-D MLP costs on this CPU, and what does not make it cheaper.

One DSM step (forward, backward, fused Adam) at batch 1024 for the paper's MLP and the 4x-wide
encoder, in fp32, under bf16 autocast, and under ``torch.compile``. The ninth session chose
the 2-D defaults on these numbers (docs/twod.md, "The 2-D defaults"): on 2 AVX2 cores the
paper's step took 9.46 ms, the wide one 15.85 ms in isolation (yet about the same within the
run loop, where per-step overhead dominates), bf16 148.5 ms (no bf16 arithmetic on this
CPU), compiled 9.35 ms after 45 s of compiling (those with PyTorch's default Adam; this
script uses the fused one, as rdmd does). Time it on idle cores only.

    python bench/mlp_step_cost.py [--modes fp32,bf16,compile] [--json FILE]
"""

from __future__ import annotations

import argparse
import time
from contextlib import nullcontext
from typing import Any

import torch
from common import report

from rdmd.backbones.mlp import MLPBackbone
from rdmd.edm import EDMDenoiser, EDMLoss

ENCODERS = {"paper": None, "wide": [64, 128, 128, 128]}


def time_step(mode: str, encoder: list[int] | None, steps: int, batch: int) -> dict[str, Any]:
    torch.manual_seed(0)
    net = EDMDenoiser(MLPBackbone(2, encoder=encoder), 0.5)
    opt = torch.optim.Adam(net.parameters(), 1e-3, fused=True)
    loss_fn, g = EDMLoss(), torch.Generator().manual_seed(0)

    def step(x: torch.Tensor) -> torch.Tensor:
        loss = loss_fn(net, x, generator=g)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return loss

    fn = torch.compile(step) if mode == "compile" else step
    ctx = torch.autocast("cpu", torch.bfloat16) if mode == "bf16" else nullcontext()
    x = torch.randn(batch, 2)
    with ctx:
        t0 = time.perf_counter()
        for _ in range(20):
            fn(x)
        t1 = time.perf_counter()
        for _ in range(steps):
            fn(x)
        t2 = time.perf_counter()
    return {"warm_up_s": round(t1 - t0, 2), "ms_per_step": round(1000 * (t2 - t1) / steps, 3)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--modes", default="fp32,bf16,compile")
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--batch", type=int, default=1024)
    ap.add_argument("--json")
    a = ap.parse_args()
    res: dict[str, Any] = {"threads": torch.get_num_threads(), "batch": a.batch}
    for mode in a.modes.split(","):
        for name, enc in ENCODERS.items():
            res[f"{mode}_{name}"] = time_step(mode, enc, a.steps, a.batch)
    report(res, a.json)


if __name__ == "__main__":
    main()

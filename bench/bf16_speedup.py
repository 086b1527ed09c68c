"""bf16 autocast vs fp32 for one image training step (teacher DSM and RDMD iteration).

The ratio decides rdmd's default precision for images (``rdmd.precision``): about 2x faster
in bf16 on a CPU with bf16 arithmetic, 14x slower on an AVX2-only CPU that emulates it. The
result records the CPU's capability and the default rdmd picks on it.

Same network (UNet ``small32``, 3x32x32), same batch, alternating blocks in one run.

    python bench/bf16_speedup.py [--batch 128] [--threads 2] [--blocks 3] [--iters 3]
"""

from __future__ import annotations

import argparse
import copy
import time

import torch
from common import median, report

from rdmd.backbones.unet import UNetBackbone
from rdmd.edm import EDMDenoiser, EDMLoss
from rdmd.methods import RDMD
from rdmd.methods.base import adam
from rdmd.precision import default_precision, describe


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--blocks", type=int, default=3)
    ap.add_argument("--iters", type=int, default=3)
    ap.add_argument("--json")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    g = torch.Generator().manual_seed(0)
    x = (torch.rand(a.batch, 3, 32, 32, generator=g) * 2 - 1)
    net = EDMDenoiser(UNetBackbone(3, 32, "small32"), 0.5)
    opt = adam(net.parameters(), 1e-4)
    loss_fn = EDMLoss()
    method = RDMD.from_teacher(copy.deepcopy(net), lam=0.1)
    method.with_optimizers(5e-5, 2e-4)

    def dsm() -> None:
        loss = loss_fn(net, x, generator=g)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    def rdmd() -> None:
        method.train_step(x, g)

    def timedian(fn, bf16: bool) -> float:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            fn()  # warm-up of this mode
            t0 = time.perf_counter()
            for _ in range(a.iters):
                fn()
        return (time.perf_counter() - t0) / a.iters

    res: dict[str, float | int | str] = {"batch": a.batch, "threads": a.threads,
                                         "hardware": describe("cpu"),
                                         "default": default_precision(True, "cpu")}
    for name, fn in (("dsm", dsm), ("rdmd", rdmd)):
        f32, b16 = [], []
        for _ in range(a.blocks):
            f32.append(timedian(fn, False))
            b16.append(timedian(fn, True))
        res[f"{name}_fp32_s"] = median(f32)
        res[f"{name}_bf16_s"] = median(b16)
        res[f"{name}_speedup"] = res[f"{name}_fp32_s"] / res[f"{name}_bf16_s"]
    report(res, a.json)


if __name__ == "__main__":
    main()

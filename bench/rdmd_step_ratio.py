"""Cost of one RDMD iteration divided by one teacher (DSM) training step.

Same network (the paper's MLP), same batch, same (fused) Adam, one fake update per generator
update, one run;
the two are timed in alternating blocks so machine noise hits both alike. Ideal ratio is
about 8/3: a DSM step is ~3 forward-equivalents (forward + backward), an RDMD iteration ~8
(generator fwd+bwd 3, teacher and fake forwards 2, fake fwd+bwd 3).

    python bench/rdmd_step_ratio.py [--dim 2] [--batch 1024] [--threads 2] [--blocks 5]
"""

from __future__ import annotations

import argparse
import copy
import os
import time

import torch
from common import median, report

from rdmd.backbones import MLPBackbone
from rdmd.edm import EDMDenoiser, EDMLoss
from rdmd.methods import RDMD
from rdmd.methods.base import adam


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dim", type=int, default=2)
    ap.add_argument("--batch", type=int, default=1024)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--blocks", type=int, default=5)
    ap.add_argument("--iters", type=int, default=200, help="iterations per block")
    ap.add_argument("--json", help="write the result here")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    g = torch.Generator().manual_seed(0)
    data = torch.randn(5000, a.dim)
    net = EDMDenoiser(MLPBackbone(a.dim), 1.0)
    t_opt = adam(net.parameters(), 1e-4)
    loss_fn = EDMLoss()
    method = RDMD.from_teacher(copy.deepcopy(net), lam=0.02, sigma_g=1.0)
    method.with_optimizers(2e-5, 5e-4)

    def batch() -> torch.Tensor:
        return data[torch.randint(0, len(data), (a.batch,), generator=g)]

    def dsm_step() -> None:
        loss = loss_fn(net, batch(), generator=g)
        t_opt.zero_grad(set_to_none=True)
        loss.backward()
        t_opt.step()

    def rdmd_step() -> None:
        method.train_step(batch(), g)

    def timedian(fn) -> tuple[float, float]:
        t0, c0 = time.perf_counter(), time.process_time()
        for _ in range(a.iters):
            fn()
        return ((time.perf_counter() - t0) / a.iters, (time.process_time() - c0) / a.iters)

    for fn in (dsm_step, rdmd_step):  # warm-up
        for _ in range(20):
            fn()
    dsm, rd, dsm_c, rd_c = [], [], [], []
    for _ in range(a.blocks):
        for fn, wall, cpu in ((dsm_step, dsm, dsm_c), (rdmd_step, rd, rd_c)):
            w, c = timedian(fn)
            wall.append(w)
            cpu.append(c)
    dsm_t, rd_t = median(dsm), median(rd)
    # The process's CPU time as well: on a shared machine it is far less disturbed by other
    # jobs than wall time (both are medians over the same alternating blocks).
    res = {"dim": a.dim, "batch": a.batch, "threads": a.threads,
           "dsm_step_ms": 1e3 * dsm_t, "rdmd_iter_ms": 1e3 * rd_t, "ratio": rd_t / dsm_t,
           "ratios_per_block": [r / d for r, d in zip(rd, dsm, strict=True)],
           "cpu_dsm_step_ms": 1e3 * median(dsm_c), "cpu_rdmd_iter_ms": 1e3 * median(rd_c),
           "cpu_ratio": median(rd_c) / median(dsm_c),
           "load_avg_1min": os.getloadavg()[0]}
    report(res, a.json)


if __name__ == "__main__":
    main()

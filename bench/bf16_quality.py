"""Does bf16 autocast hurt training? Same init, same data order, fp32 vs bf16 teacher steps.

Trains two copies of one UNet teacher on colored-MNIST 3s for ``--steps`` steps with
identical batches and noise, one in fp32 and one under bf16 autocast, then measures both on
the held-out 3s with the *same* fixed noise levels and noise, in fp32 (EDM's weighted DSM
loss, lower is better).

    python bench/bf16_quality.py [--steps 300] [--batch 32]
"""

from __future__ import annotations

import argparse
import copy

import torch
from common import report

from rdmd.backbones.unet import UNetBackbone
from rdmd.data import load_domain
from rdmd.edm import EDMDenoiser, EDMLoss
from rdmd.methods.base import adam


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    dom = load_domain("cmnist3")
    base = EDMDenoiser(UNetBackbone(3, 32, "small32"), 0.5)
    loss_fn = EDMLoss()
    results: dict[str, float | int] = {"steps": a.steps, "batch": a.batch}
    for mode in ("fp32", "bf16"):
        net = copy.deepcopy(base)
        opt = adam(net.parameters(), 5e-4)
        g = torch.Generator().manual_seed(1)
        for _ in range(a.steps):
            x = dom.train[torch.randint(0, len(dom.train), (a.batch,), generator=g)]
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=mode == "bf16"):
                loss = loss_fn(net, x, generator=g)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        eg = torch.Generator().manual_seed(2)
        with torch.no_grad():
            held = [loss_fn(net, dom.test, generator=eg).item() for _ in range(8)]
        results[f"heldout_dsm_{mode}"] = sum(held) / len(held)
    results["bf16_over_fp32"] = results["heldout_dsm_bf16"] / results["heldout_dsm_fp32"]
    report(results, a.json)


if __name__ == "__main__":
    main()

"""Cost of one RDMD iteration with DMD2's GAN term, divided by one without it (docs/gan.md).

cMNIST-size UNet (``unet:small32``, 3x32x32), batch 32, one fake-score update, in one run;
RDMD, RDMD with 5 fake-score updates per generator update, ``rdmd_gan`` on the teacher's
features and ``rdmd_gan`` on the fake score's features are timed in alternating blocks so
machine noise hits them alike. Expected: the GAN term adds the
teacher's (or fake score's) encoder half forward and backward to ``y`` for the generator, and
one encoder-half forward on the real and fake batch for the head: about 1.3x.

    python bench/gan_step_cost.py [--threads 1] [--batch 32] [--blocks 3] [--iters 3] [--bf16]
"""

from __future__ import annotations

import argparse
import copy
import time

import torch
from common import median, report

from rdmd.backbones.unet import UNetBackbone
from rdmd.edm import EDMDenoiser
from rdmd.methods import RDMD, RDMDGAN
from rdmd.training.runtime import batches


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--blocks", type=int, default=3)
    ap.add_argument("--iters", type=int, default=3, help="iterations per block")
    ap.add_argument("--bf16", action="store_true", help="bf16 autocast (the image default)")
    ap.add_argument("--json", help="write the result here")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    teacher = EDMDenoiser(UNetBackbone(3, 32, "small32"), 0.5)
    g = torch.Generator().manual_seed(0)
    src = torch.rand(512, 3, 32, 32) * 2 - 1
    tgt = torch.rand(512, 3, 32, 32) * 2 - 1
    methods = {"rdmd": RDMD.from_teacher(copy.deepcopy(teacher), 0.05),
               # DMD2's two-time-scale update, for the image ablation's equal-compute plan
               "fake5": RDMD.from_teacher(copy.deepcopy(teacher), 0.05, fake_steps=5)}
    for feats in ("teacher", "fake"):
        m = RDMDGAN.from_teacher(copy.deepcopy(teacher), 0.05)
        m.add_gan(3e-3, 1e-2, feats, lr=2e-4)
        m.attach_target(batches(tgt, a.batch, g))
        methods[f"gan_{feats}"] = m
    for m in methods.values():
        m.with_optimizers(5e-5, 2e-4)
    src_batches = batches(src, a.batch, g)

    def block(m: RDMD) -> tuple[float, float]:
        t0, c0 = time.perf_counter(), time.process_time()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=a.bf16):
            for _ in range(a.iters):
                m.train_step(next(src_batches), g)
        return ((time.perf_counter() - t0) / a.iters, (time.process_time() - c0) / a.iters)

    for m in methods.values():  # warm-up
        block(m)
    wall: dict[str, list[float]] = {k: [] for k in methods}
    cpu: dict[str, list[float]] = {k: [] for k in methods}
    for _ in range(a.blocks):
        for k, m in methods.items():
            w, c = block(m)
            wall[k].append(w)
            cpu[k].append(c)
    base_w, base_c = median(wall["rdmd"]), median(cpu["rdmd"])
    res = {"backbone": "unet:small32", "shape": [3, 32, 32], "batch": a.batch,
           "threads": a.threads, "precision": "bf16" if a.bf16 else "fp32",
           "blocks": a.blocks, "iters_per_block": a.iters,
           "torch": torch.__version__,
           **{f"{k}_iter_ms": 1e3 * median(v) for k, v in wall.items()},
           **{f"cpu_{k}_iter_ms": 1e3 * median(v) for k, v in cpu.items()},
           **{f"ratio_{k}": median(wall[k]) / base_w for k in methods if k != "rdmd"},
           **{f"cpu_ratio_{k}": median(cpu[k]) / base_c for k in methods if k != "rdmd"},
           "ratios_per_block": {k: [w / b for w, b in zip(wall[k], wall["rdmd"], strict=True)]
                                for k in methods if k != "rdmd"}}
    report(res, a.json)


if __name__ == "__main__":
    main()

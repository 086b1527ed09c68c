"""Translation throughput of the one-step generator vs a bare forward pass of the same network.

``rdmd.translate`` (chunked, with the preconditioning, normaliser and clamping) against
``unet(x, t)`` alone, same batch, same thread count, timed in alternating blocks in one run.

    python bench/translate_throughput.py [--model DIR] [--n 512] [--chunk 128] [--threads 2]

Without ``--model`` a fresh ``small32`` UNet generator (3x32x32) is built: throughput does
not depend on the weights.
"""

from __future__ import annotations

import argparse
import time

import torch
from common import median, report

from rdmd.api import translate
from rdmd.backbones.unet import UNetBackbone
from rdmd.data import Normalizer
from rdmd.edm import EDMDenoiser
from rdmd.methods import OneStepGenerator
from rdmd.models import Model, load_model


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model")
    ap.add_argument("--n", type=int, default=512)
    ap.add_argument("--chunk", type=int, default=128)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--blocks", type=int, default=5)
    ap.add_argument("--bf16", action="store_true", help="autocast both paths to bf16")
    ap.add_argument("--json")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    if a.model:
        model = load_model(a.model)
    else:
        den = EDMDenoiser(UNetBackbone(3, 32, "small32"), 0.5).eval().requires_grad_(False)
        model = Model(OneStepGenerator(den, 1.0), {
            "role": "generator", "data_shape": [3, 32, 32],
            "normalizer": Normalizer.identity().to_dict()})
    shape = tuple(model.meta["data_shape"])
    x = torch.rand(a.n, *shape) * 2 - 1
    unet = model.denoiser.backbone
    c = torch.zeros(a.chunk)

    @torch.no_grad()
    def bare() -> None:
        for part in torch.split(x, a.chunk):
            unet(part, c[: len(part)])

    def rdmd_translate() -> None:
        translate(model, x, chunk=a.chunk, precision="bf16" if a.bf16 else "fp32")

    def timedian(fn) -> float:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=a.bf16):
            t0 = time.perf_counter()
            fn()
            return a.n / (time.perf_counter() - t0)

    timedian(bare), timedian(rdmd_translate)  # warm-up
    b, r = [], []
    for _ in range(a.blocks):
        b.append(timedian(bare))
        r.append(timedian(rdmd_translate))
    res = {"n": a.n, "chunk": a.chunk, "threads": a.threads, "bf16": a.bf16,
           "bare_images_per_s": median(b), "translate_images_per_s": median(r),
           "translate_over_bare": median(r) / median(b)}
    report(res, a.json)


if __name__ == "__main__":
    main()

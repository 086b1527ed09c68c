"""Translating with a lambda-conditioned generator at one lambda vs a bare forward pass.

Three paths on the same inputs, same chunks, same threads, timed in alternating blocks in one
run: ``bare``: the unconditioned backbone alone (``unet(x, t)`` or ``mlp(x, t)``, what a
fixed-lambda generator costs without any wrapper); ``fixed``: ``rdmd.translate`` of a
fixed-lambda generator; ``lam``: ``rdmd.translate(model, x, lam=L)`` of the conditioned one
(the issue's target: within 10% of bare, i.e. ``lam_over_bare >= 0.9``).

    python bench/translate_lam.py --kind unet [--n 512] [--chunk 128] [--threads 2]
    python bench/translate_lam.py --kind mlp --n 65536 --chunk 4096

Fresh networks are built (throughput does not depend on the weights).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import torch
from common import median, report

from rdmd.api import translate
from rdmd.backbones import MLPBackbone
from rdmd.data import Normalizer
from rdmd.edm import EDMDenoiser
from rdmd.methods import OneStepGenerator
from rdmd.models import Model


def build(kind: str, cond_dim: int) -> torch.nn.Module:
    if kind == "unet":
        from rdmd.backbones.unet import UNetBackbone

        return UNetBackbone(3, 32, "small32", cond_dim)
    return MLPBackbone(2, cond_dim=cond_dim)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kind", choices=("unet", "mlp"), default="unet")
    ap.add_argument("--n", type=int, default=512)
    ap.add_argument("--chunk", type=int, default=128)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--blocks", type=int, default=5)
    ap.add_argument("--lam", type=float, default=0.05)
    ap.add_argument("--json")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    shape = [3, 32, 32] if a.kind == "unet" else [2]
    meta = {"role": "generator", "data_shape": shape,
            "normalizer": Normalizer.identity().to_dict()}
    sd = 0.5 if a.kind == "unet" else 1.0
    plain = build(a.kind, 0).eval().requires_grad_(False)
    fixed = Model(OneStepGenerator(EDMDenoiser(plain, sd), 1.0), {**meta, "lam": a.lam})
    cond_bb = build(a.kind, 1).eval().requires_grad_(False)
    cond_bb.load_state_dict(plain.state_dict(), strict=False)
    cond = Model(OneStepGenerator(EDMDenoiser(cond_bb, sd), 1.0),
                 {**meta, "lam_range": [0.01, 0.3], "lam_shift": 0.0})
    x = torch.rand(a.n, *shape) * 2 - 1
    c = torch.zeros(a.chunk)

    @torch.no_grad()
    def bare() -> None:
        for part in torch.split(x, a.chunk):
            plain(part, c[: len(part)])

    paths: dict[str, Callable[[], object]] = {
        "bare": bare,
        # fp32 like the bare call: the wrapper's cost, not bf16's gain (bench/bf16_translate.py)
        "fixed": lambda: translate(fixed, x, chunk=a.chunk, precision="fp32"),
        "lam": lambda: translate(cond, x, chunk=a.chunk, lam=a.lam, precision="fp32"),
    }

    def rate(fn: Callable[[], object]) -> float:
        t0 = time.perf_counter()
        fn()
        return a.n / (time.perf_counter() - t0)

    for fn in paths.values():  # warm-up
        rate(fn)
    runs: dict[str, list[float]] = {k: [] for k in paths}
    for _ in range(a.blocks):
        for k, fn in paths.items():
            runs[k].append(rate(fn))
    res = {"kind": a.kind, "n": a.n, "chunk": a.chunk, "threads": a.threads, "lam": a.lam,
           **{f"{k}_per_s": median(v) for k, v in runs.items()},
           "fixed_over_bare": median(runs["fixed"]) / median(runs["bare"]),
           "lam_over_bare": median(runs["lam"]) / median(runs["bare"]),
           "lam_over_fixed": median(runs["lam"]) / median(runs["fixed"])}
    report(res, a.json)


if __name__ == "__main__":
    main()

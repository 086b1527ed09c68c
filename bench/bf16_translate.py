"""Translation in bf16 autocast (the image default) against fp32: speed and what it changes.

On the shipped colored-MNIST generators: the time of one ``rdmd.translate`` call on 16 and on
256 images at 1 and 2 torch threads, fp32 and bf16 timed in alternating blocks in one run;
the outputs' difference in 8-bit levels (the PNG a user gets); and the metrics
``rdmd evaluate`` reports (Frechet distance over rdmd's classifier features, L2, hue
difference, share classified as 3) of both precisions on the same 500 source images (the 100
held-out 2s and the 400 training 2s: a paired comparison of two precisions, not a held-out
score of the model).

    python bench/bf16_translate.py --json bench/results_bf16_translate.json
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import torch
from common import median, report

import rdmd
from rdmd.data import load_domain
from rdmd.evaluation import image_translation_metrics
from rdmd.models import load_model

SHIP = Path(rdmd.__file__).parent / "pretrained" / "cmnist"
METRICS = ("fd_cnn_cmnist", "fd_cnn_cmnist_floor", "l2", "hue_difference", "target_accuracy")


def levels(a: torch.Tensor, b: torch.Tensor) -> dict[str, float]:
    """How far two outputs' saved PNGs are apart, in 8-bit levels (as ``to_uint8`` rounds)."""
    d = (a.clamp(-1, 1).add(1).mul(127.5).round() - b.clamp(-1, 1).add(1).mul(127.5).round()
         ).abs()
    return {"max_levels": float(d.max()), "mean_levels": float(d.mean()),
            "share_pixels_differing": float((d > 0).float().mean())}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=str(SHIP / "rdmd_cond"))
    ap.add_argument("--lams", default="0.05,0.25,1")
    ap.add_argument("--blocks", type=int, default=7)
    ap.add_argument("--json")
    a = ap.parse_args()
    model = load_model(a.model)
    cond = model.lam_range is not None
    lams = [float(v) for v in a.lams.split(",")] if cond else [float(model.meta["lam"])]
    src, tgt = load_domain("cmnist2"), load_domain("cmnist3")
    x = torch.cat([src.test, src.train])
    clf = str(SHIP / "classifier")

    quality = []
    for lam in lams:
        kw = {"lam": lam} if cond else {}
        out = {p: rdmd.translate(model, x, precision=p, **kw) for p in ("fp32", "bf16")}
        row: dict[str, object] = {"lam": lam, **levels(out["fp32"], out["bf16"])}
        for p, gx in out.items():
            m = image_translation_metrics(x, gx, tgt, clf, 3)
            row.update({f"{p}_{k}": float(m[k]) for k in METRICS})
        quality.append(row)
        print(row, flush=True)

    speed = []
    kw = {"lam": lams[0]} if cond else {}
    for threads in (1, 2):
        torch.set_num_threads(threads)
        for n in (16, 256):
            xs = x[:n]
            ms: dict[str, list[float]] = {"fp32": [], "bf16": []}
            for p in ms:  # warm-up: oneDNN builds its kernels on the first call
                rdmd.translate(model, xs, precision=p, **kw)
            for i in range(a.blocks):
                for p in (("fp32", "bf16") if i % 2 == 0 else ("bf16", "fp32")):
                    t0 = time.perf_counter()
                    rdmd.translate(model, xs, precision=p, **kw)
                    ms[p].append(1000 * (time.perf_counter() - t0))
            speed.append({"threads": threads, "images": n,
                          "fp32_ms": median(ms["fp32"]), "bf16_ms": median(ms["bf16"]),
                          "bf16_over_fp32": median(ms["bf16"]) / median(ms["fp32"])})
            print(speed[-1], flush=True)
    report({"model": a.model, "n_images": len(x), "quality": quality, "speed": speed,
            "cpu_count": os.cpu_count(), "loadavg_after": os.getloadavg(),
            "command": "python " + " ".join(sys.argv)}, a.json)


if __name__ == "__main__":
    main()

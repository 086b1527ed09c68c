"""Images per second of one-step RDMD against the multi-step baselines, same network, same
batch, one run (issue 3's figure: RDMD >= 30x SDEdit with 18 Heun steps, 35 evaluations).

Every method goes through the same ``Translator.translate`` path (normaliser, chunking,
noise), and the methods are timed in alternating blocks so that a busy machine slows them
alike; each rate is the median over blocks.

    python bench/baseline_throughput.py [--teacher DIR --generator DIR] [--n 64] [--chunk 64]
        [--threads 2] [--blocks 3] [--json bench/results_baseline_throughput.json]

The baselines sample the teacher's plain network (35 evaluations for 18 Heun steps); an
autoguided teacher's guided SDEdit (70) is timed beside them. Defaults: the shipped
colored-MNIST teacher and lambda = 0.05 generator (both UNet small32,
3x32x32) and the shipped EGSDE domain classifier.
"""

from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path

import torch
from common import median, report

from rdmd.translators import make_translator

SHIPPED = Path(__file__).resolve().parents[1] / "src" / "rdmd" / "pretrained" / "cmnist"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--teacher", default=str(SHIPPED / "teacher"))
    ap.add_argument("--generator", default=str(SHIPPED / "rdmd_lam0.05"))
    ap.add_argument("--domain-classifier", default=str(SHIPPED / "domain_classifier"))
    ap.add_argument("--n", type=int, default=64, help="images per timed call")
    ap.add_argument("--chunk", type=int, default=64, help="batch size of every method")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--blocks", type=int, default=3)
    ap.add_argument("--json")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    # the plain network (guidance=1): 35 evaluations, the "18-step SDEdit"; an
    # autoguided teacher's own sampling (its guide beside it, 70) is timed as sdedit_18_guided
    plain = {"guidance": 1.0}
    methods = {
        "rdmd": make_translator("rdmd", a.generator),
        "sdedit_18": make_translator("sdedit", a.teacher, sigma_start=3.0, n_steps=18, **plain),
        "ilvr_18": make_translator("ilvr", a.teacher, down=8, n_steps=18, **plain),
        "egsde_18": make_translator("egsde", a.teacher, sigma_start=3.0, down=8, lam_s=30.0,
                                    lam_i=0.1, n_steps=18,
                                    domain_classifier=a.domain_classifier, **plain),
    }
    guided = make_translator("sdedit", a.teacher, sigma_start=3.0, n_steps=18)
    if guided.nfe != methods["sdedit_18"].nfe:
        methods["sdedit_18_guided"] = guided
    gen_net = methods["rdmd"].model.denoiser.backbone
    teacher_net = methods["sdedit_18"].teacher.backbone
    same_arch = [p.shape for p in gen_net.parameters()] == \
        [p.shape for p in teacher_net.parameters()]
    shape = tuple(methods["rdmd"].meta["data_shape"])
    x = torch.rand(a.n, *shape, generator=torch.Generator().manual_seed(0)) * 2 - 1
    for tr in methods.values():  # warm-up
        tr.translate(x[:4], chunk=a.chunk)
    times: dict[str, list[float]] = {k: [] for k in methods}
    for _ in range(a.blocks):
        for name, tr in methods.items():
            reps = 20 if name == "rdmd" else 1  # a one-step call is too short to time alone
            t0 = time.perf_counter()
            for _ in range(reps):
                tr.translate(x, chunk=a.chunk)
            times[name].append((time.perf_counter() - t0) / reps)
    rate = {k: a.n / median(v) for k, v in times.items()}
    result = {
        "images_per_s": {k: round(v, 2) for k, v in rate.items()},
        "nfe": {k: tr.nfe for k, tr in methods.items()},
        "aux_evals": {k: tr.aux_evals for k, tr in methods.items()},
        "rdmd_over": {k: round(rate["rdmd"] / v, 1) for k, v in rate.items() if k != "rdmd"},
        "same_architecture": same_arch, "batch": a.chunk, "n": a.n, "threads": a.threads,
        "blocks": a.blocks, "device": "cpu", "machine": platform.processor() or
        platform.machine(), "torch": torch.__version__,
    }
    report(result, a.json)


if __name__ == "__main__":
    main()

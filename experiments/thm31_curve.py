"""Theorem 3.1 diagnostic: the relative gap to the closed-form OT map along one RDMD run.

Trains (or resumes) one d-dimensional run of ``thm31_gaussian_ot.py``'s problem keeping a
checkpoint every 1000 iterations, then evaluates the generator EMA of every checkpoint on the
3000 held-out sources. Used to see whether the d = 8 gap is still falling or drifting.

    python experiments/thm31_curve.py --d 8 --lam 0.02 --steps 10000
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from common import ensure_rdmd, ensure_teacher, run_main, run_record  # noqa: E402
from thm31_gaussian_ot import target_spec  # noqa: E402

from rdmd import checkpoint as ckpt  # noqa: E402
from rdmd.data import load_domain  # noqa: E402
from rdmd.evaluation import apply_generator, gaussian_map  # noqa: E402
from rdmd.methods import OneStepGenerator  # noqa: E402
from rdmd.models import load_model  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--d", type=int, default=8)
    ap.add_argument("--lam", type=float, default=0.02)
    ap.add_argument("--steps", type=int, default=10_000)
    ap.add_argument("--ema-decay", type=float, default=0.999)
    ap.add_argument("--runs", default="runs/thm31")
    ap.add_argument("--results", default="experiments/results")
    ap.add_argument("--threads", type=int, default=0)
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    teacher = ensure_teacher(target_spec(a.d), Path(a.runs) / f"d{a.d}" / "teacher", False,
                             steps=10_000)
    run = Path(a.runs) / f"d{a.d}_curve" / f"lam{a.lam:g}"
    ensure_rdmd(f"gaussian:d={a.d}", teacher, run, False, steps=a.steps, lam=a.lam,
                ema_decay=a.ema_decay, ckpt_every=1000, keep_checkpoints=100)
    src = load_domain(f"gaussian:d={a.d}", 5000, 5000, 0)
    tgt = load_domain(target_spec(a.d), 5000, 5000, 0)
    mat, vec = gaussian_map(src, tgt)
    x = src.test[:3000]
    tx = x.numpy() @ mat.T + vec
    denom = float(((tx - x.numpy()) ** 2).sum(1).mean())
    model = load_model(teacher)
    head = "module.generator_ema.denoiser."
    curve = []
    for c in sorted((run / "checkpoints").glob("step_*")):
        tensors, meta = ckpt.load_checkpoint(c)
        if meta["step"] > a.steps:
            continue
        den = model.denoiser
        den.load_state_dict({k[len(head):]: v for k, v in tensors.items() if k.startswith(head)})
        gx = apply_generator(OneStepGenerator(den, 1.0), model.normalizer, x).numpy()
        gap = float(((gx - tx) ** 2).sum(1).mean()) / denom
        curve.append({"step": int(meta["step"]), "gaussian_ot_gap": gap})
        print(json.dumps(curve[-1]))
    out = Path(a.results) / f"thm31_curve_d{a.d}_lam{a.lam:g}.json"
    # the runs' records say how they were produced (config, command line, threads, wall time)
    out.write_text(json.dumps({"d": a.d, "lam": a.lam, "run": run_record(run),
                               "teacher_run": run_record(teacher), "curve": curve}, indent=2))


if __name__ == "__main__":
    run_main(main)

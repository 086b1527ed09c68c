"""Theorem 3.1 on data where the answer is known: N(0, I) -> N(m, C) with anisotropic C.

The OT map for the quadratic cost is ``T(x) = A x + b`` in closed form; for each lambda we
report the relative gap ``E||G(x) - T(x)||^2 / E||T(x) - x||^2`` of the trained generator
on held-out sources, and plot it against lambda for d = 2 and d = 8.

    python experiments/thm31_gaussian_ot.py --dims 2,8

With several ``--seeds`` the table lists every run and a summary per (d, lambda); the
figure shows the mean gap with the min-max range over seeds.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from common import (  # noqa: E402
    ensure_rdmd,
    ensure_teacher,
    markdown_table,
    run_main,
    run_record,
    teacher_dir,
)

from rdmd.config import TeacherConfig  # noqa: E402

COLUMNS = ["d", "lam", "seed", "ema_decay", "steps", "gaussian_ot_gap", "w2_sq",
           "w2_floor_mean", "w2_over_floor", "transport_cost", "wall_s"]


def target_spec(d: int) -> str:
    """An anisotropic, rotated, shifted Gaussian: variances log-spaced over [0.25, 4]
    (eigen-directions from a fixed random rotation), mean 0.5 along (1, -1, 1, ...)."""
    rng = np.random.default_rng(1234 + d)
    q, _ = np.linalg.qr(rng.standard_normal((d, d)))
    cov = q @ np.diag(np.geomspace(0.25, 4.0, d)) @ q.T
    cov = 0.5 * (cov + cov.T)
    mean = 0.5 * (-1.0) ** np.arange(d)
    return (f"gaussian:mean={json.dumps(np.round(mean, 6).tolist())};"
            f"cov={json.dumps(np.round(cov, 6).tolist())}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dims", default="2,8")
    ap.add_argument("--lams", default="0,0.003,0.01,0.03,0.1")
    ap.add_argument("--teacher-steps", type=int, default=10_000)
    ap.add_argument("--rdmd-steps", default="2:10000,8:15000",
                    help="iterations per dimension, d:steps pairs")
    ap.add_argument("--runs", default="runs/thm31")
    ap.add_argument("--results", default="experiments/results")
    ap.add_argument("--figures", default="docs/figures")
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--ema-decay", type=float, default=None,
                    help="generator EMA decay (0: off; default: the package's default)")
    ap.add_argument("--seeds", default="0", help="RDMD seeds (one teacher per d)")
    ap.add_argument("--n-train", type=int, default=TeacherConfig.n_train,
                    help="training samples drawn for teacher and RDMD (a non-default value "
                         "gets its own teacher folder)")
    ap.add_argument("--tag", default="", help="suffix for run and result names")
    ap.add_argument("--no-progress", action="store_true")
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    prog = not a.no_progress
    steps = {int(k): int(v) for k, v in (p.split(":") for p in a.rdmd_steps.split(","))}
    lams = [float(v) for v in a.lams.split(",")]
    rows, teachers = [], {}
    for d in (int(v) for v in a.dims.split(",")):
        root = Path(a.runs) / f"d{d}{a.tag}"
        teacher = ensure_teacher(target_spec(d), teacher_dir(Path(a.runs) / f"d{d}", a.n_train),
                                 prog, steps=a.teacher_steps, n_train=a.n_train)
        teachers[d] = run_record(teacher)
        for lam in lams:
            for seed in (int(v) for v in a.seeds.split(",")):
                run = root / (f"lam{lam:g}" + (f"_s{seed}" if seed else ""))
                res = ensure_rdmd(f"gaussian:d={d}", teacher, run, prog, lam=lam,
                                  steps=steps.get(d, 10_000), seed=seed,
                                  ema_decay=a.ema_decay, n_train=a.n_train)
                cfg = res["run"]["config"]
                rows.append({**res, "d": d, "lam": lam, "seed": seed,
                             "ema_decay": cfg["ema_decay"], "steps": cfg["steps"]})
                print(json.dumps({k: rows[-1].get(k) for k in COLUMNS}))

    res_dir = Path(a.results)
    res_dir.mkdir(parents=True, exist_ok=True)
    name = f"thm31_gaussian_ot{a.tag}"
    summary = []
    for d, lam in dict.fromkeys((r["d"], r["lam"]) for r in rows):
        gaps = [r["gaussian_ot_gap"] for r in rows if (r["d"], r["lam"]) == (d, lam)]
        summary.append({"d": d, "lam": lam, "seeds": len(gaps), "gap_mean": np.mean(gaps),
                        "gap_std": np.std(gaps), "gap_min": min(gaps), "gap_max": max(gaps)})
    # each row's "run" and "teacher_runs" record how the runs were produced (config, command
    # line, torch threads, wall time), whatever command wrote this file
    (res_dir / f"{name}.json").write_text(json.dumps(
        {"rows": rows, "summary": summary, "teacher_runs": teachers,
         "targets": {d: target_spec(d) for d in {r["d"] for r in rows}}},
        indent=2))
    md = markdown_table(rows, COLUMNS)
    if any(s["seeds"] > 1 for s in summary):
        md += "\n\n" + markdown_table(summary, list(summary[0]))
    (res_dir / f"{name}.md").write_text(md + "\n")
    print(md)

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.6))
    for d in sorted({r["d"] for r in rows}):
        rr = [r for r in summary if r["d"] == d]
        xs = [max(r["lam"], 1e-3) for r in rr]
        mean = np.array([r["gap_mean"] for r in rr])
        err = [mean - [r["gap_min"] for r in rr], [r["gap_max"] for r in rr] - mean]
        ax.errorbar(xs, mean, yerr=err, fmt="o-", capsize=3, label=f"d = {d}")
    ax.axhline(0.05, color="gray", ls="--", lw=0.8, label="5%")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("lambda (0 drawn at 1e-3)")
    ax.set_ylabel("relative gap to the OT map")
    ax.legend()
    ax.set_title("N(0, I) -> N(m, C): distance to the closed-form OT map")
    fig_path = Path(a.figures) / f"{name}.png"
    fig_path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(fig_path, dpi=120, bbox_inches="tight")


if __name__ == "__main__":
    run_main(main)

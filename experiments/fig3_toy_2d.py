"""The paper's Fig. 3: Gaussian -> 8 Gaussians (or Swiss roll) for several lambda.

Trains one teacher on the target, then RDMD from N(0, I) per lambda; writes panels of inputs,
outputs, target and x -> G(x) segments, and a table of W2^2/floor, transport cost, OT gap and
crossings per lambda.

    python experiments/fig3_toy_2d.py --target 8gaussians
    python experiments/fig3_toy_2d.py --target swissroll
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

from rdmd.api import translate  # noqa: E402
from rdmd.config import TeacherConfig  # noqa: E402
from rdmd.data import load_domain  # noqa: E402
from rdmd.plots import plot_map_panels  # noqa: E402

COLUMNS = ["lam", "w2_sq", "w2_floor_mean", "w2_floor_std", "w2_over_floor", "transport_cost",
           "ot_gap", "crossings", "wall_s"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--target", default="8gaussians")
    ap.add_argument("--source", default="gaussian")
    ap.add_argument("--lams", default="0,0.01,0.02,0.05,0.2,1.0")
    ap.add_argument("--teacher-steps", type=int, default=10_000)
    ap.add_argument("--rdmd-steps", type=int, default=10_000)
    ap.add_argument("--floor-pairs", type=int, default=10)
    ap.add_argument("--sigma-g", type=float, default=1.0,
                    help="generator noise level at initialisation (Appendix B)")
    ap.add_argument("--lr-generator", type=float, default=None,
                    help="generator learning rate (default: the package's, 2e-5)")
    ap.add_argument("--ema-decay", type=float, default=None,
                    help="generator EMA decay (0: off; default: the package's, 0.999)")
    ap.add_argument("--seed", type=int, default=0, help="RDMD seed (the teacher's is 0)")
    ap.add_argument("--n-train", type=int, default=TeacherConfig.n_train,
                    help="samples drawn from the built-in distributions for teacher and RDMD "
                         "training (a non-default value gets its own teacher folder)")
    ap.add_argument("--tag", default="", help="suffix for run/result names (ablations)")
    ap.add_argument("--runs", default="runs/fig3")
    ap.add_argument("--results", default="experiments/results")
    ap.add_argument("--figures", default="docs/figures")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    ap.add_argument("--no-progress", action="store_true")
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    prog = not a.no_progress
    base = a.target.split(":")[0]
    name = base + a.tag
    root = Path(a.runs) / name
    teacher = ensure_teacher(a.target, teacher_dir(Path(a.runs) / base, a.n_train), prog,
                             steps=a.teacher_steps, n_train=a.n_train)
    rows = []
    for lam in [float(v) for v in a.lams.split(",")]:
        res = ensure_rdmd(a.source, teacher, root / f"lam{lam:g}", prog, lam=lam,
                          steps=a.rdmd_steps, floor_pairs=a.floor_pairs, sigma_g=a.sigma_g,
                          lr_generator=a.lr_generator, ema_decay=a.ema_decay, seed=a.seed,
                          n_train=a.n_train)
        rows.append({**res, "lam": lam})
        print(json.dumps({k: res.get(k) for k in COLUMNS[1:]} | {"lam": lam}))
    tmeta = json.loads((teacher / "metrics.json").read_text())
    trun = run_record(teacher)

    src = load_domain(a.source, 5000, 5000, 0)
    tgt = load_domain(a.target, 5000, 5000, 0)
    x = src.test[:2000].numpy()
    outs = [np.asarray(translate(root / f"lam{r['lam']:g}", x)) for r in rows]
    titles = [f"lambda = {r['lam']:g}\nW2²/floor {r['w2_over_floor']:.2f}, "
              f"crossings {r['crossings']:.4f}" for r in rows]
    fig = Path(a.figures) / f"fig3_{name}.png"
    plot_map_panels(fig, x, outs, titles, tgt.test[:2000].numpy())

    from rdmd import metrics

    ot_map = metrics.barycentric_ot_map(x[:2000], tgt.test[:2000].numpy())
    ot_crossings = metrics.crossing_fraction(x[:2000], ot_map)
    print(f"crossings of the exact discrete OT plan's barycentric map: {ot_crossings:.4f}")
    # how each run was produced is in its record (rows[i]["run"], "teacher_run"): config,
    # command line, torch threads and wall time of its training sessions
    out = {"source": a.source, "target": a.target, "discrete_ot_map_crossings": ot_crossings,
           "teacher": tmeta, "teacher_wall_s": trun["wall_s"], "teacher_run": trun,
           "rows": rows, "figure": str(fig)}
    res_dir = Path(a.results)
    res_dir.mkdir(parents=True, exist_ok=True)
    (res_dir / f"fig3_{name}.json").write_text(json.dumps(out, indent=2))
    md = markdown_table(rows, COLUMNS) + (
        f"\n\nCrossings of the exact discrete OT plan (barycentric map, 2000 held-out "
        f"pairs): {ot_crossings:.4f}")
    (res_dir / f"fig3_{name}.md").write_text(md + "\n")
    print(md)


if __name__ == "__main__":
    run_main(main)

"""Colored MNIST 2 -> 3: the FD-L2 front of ONE lambda-conditioned generator against the
fixed-lambda generators, on one plot, with the seed noise of a fixed run (issue 13).

Every model is scored here with one protocol (held-out 2s, rdmd's colored-MNIST classifier,
``rdmd.evaluation.evaluate_translation``), so the points are comparable:

* ``--cond``: the conditioned run (``rdmd distill ... --lam-range 0.05:1``), at each lambda;
* the shipped fixed generators ``src/rdmd/pretrained/cmnist/rdmd_lam*`` (since the twentieth
  session the image recipe, each chosen on its validation split: their model card);
* ``--fixed``: fixed runs with the current recipe (e.g. lambda 0.25, seeds 0 and 1): the
  spread of two seeds is the noise a front must be compared with.

    python experiments/cmnist_lambda_front.py --cond runs/cmnist/cond_lam0.05-1 \\
        --fixed runs/cmnist/fixed_lam0.25_s0,runs/cmnist/fixed_lam0.25_s1 [--ship]

``--ship`` copies the conditioned run into ``src/rdmd/pretrained/cmnist/rdmd_cond``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from rdmd.config import DistillConfig, config_from_saved  # noqa: E402
from rdmd.data import load_domain  # noqa: E402
from rdmd.evaluation import evaluate_translation  # noqa: E402
from rdmd.models import load_model  # noqa: E402
from rdmd.training.rundir import read_run  # noqa: E402
from rdmd.translators import OneStep  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))
from cmnist_models import SHIP, ship  # noqa: E402

COLUMNS = ("lam", "l2", "ssim", "hue_difference", "target_accuracy", "fd_cnn_cmnist",
           "fd_cnn_cmnist_floor", "fd_above_fixed")


def above_fixed(rows: list[dict[str, Any]], fixed: list[dict[str, Any]]) -> None:
    """Each row's FD minus the shipped fixed generators' front at its L2, interpolated
    linearly between their points (NaN outside their L2 span): how far one conditioned
    model sits above the fixed models at the same faithfulness."""
    pts = sorted((r["l2"], r["fd_cnn_cmnist"]) for r in fixed)
    l2s, fds = [p[0] for p in pts], [p[1] for p in pts]
    for r in rows:
        inside = bool(pts) and l2s[0] <= r["l2"] <= l2s[-1]
        r["fd_above_fixed"] = (r["fd_cnn_cmnist"] - float(np.interp(r["l2"], l2s, fds))
                               if inside else float("nan"))


def score(model_dir: Path, lam: float | None) -> dict[str, Any]:
    """One model at one lambda, scored with its run's held-out split and the shipped
    classifier (the shipped generators' folders hold no config.json: their card's)."""
    model = load_model(model_dir)
    cfg = DistillConfig(classifier=str(SHIP / "classifier"), target_class=3)
    if (model_dir / "config.json").is_file():
        run = read_run(model_dir)
        cfg = config_from_saved(DistillConfig, run["config"], model_dir / "config.json")
        cfg.classifier, cfg.target_class = str(SHIP / "classifier"), 3
    src, tgt = load_domain("cmnist2"), load_domain("cmnist3")
    net = OneStep(model, lam if model.lam_range is not None else None).net
    res = evaluate_translation(net, model.normalizer, src, tgt, cfg)
    return {"lam": lam if lam is not None else model.meta["lam"],
            **{k: v for k, v in res.items() if isinstance(v, (int, float))}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cond", required=True,
                    help="the lambda-conditioned run (comma-separated: several, the first "
                         "is the one --ship ships)")
    ap.add_argument("--fixed", default="", help="comma-separated fixed runs, current recipe")
    ap.add_argument("--lams", default="0.05,0.1,0.25,0.35,0.5,1")
    ap.add_argument("--results", default="experiments/results/cmnist_lambda_front")
    ap.add_argument("--figure", default="docs/figures/cmnist_lambda_front.png")
    ap.add_argument("--ship", action="store_true")
    a = ap.parse_args()
    lams = [float(v) for v in a.lams.split(",")]
    conds = [Path(c) for c in a.cond.split(",")]
    cond = conds[0]
    def inside(run: Path) -> list[float]:  # a model is scored inside its trained range
        lo, hi = load_model(run).lam_range
        return [lam for lam in lams if lo <= lam <= hi]

    rows: dict[str, list[dict[str, Any]]] = {
        "conditioned": [score(cond, lam) for lam in inside(cond)],
        **{f"conditioned:{c.name}": [score(c, lam) for lam in inside(c)] for c in conds[1:]},
        "shipped_fixed": [score(p.parent, None)
                          for p in sorted(SHIP.glob("rdmd_lam*/model.json"))],
        "fixed_current_recipe": [{**score(Path(p), None), "run": p}
                                 for p in a.fixed.split(",") if p],
    }
    for name, rs in rows.items():
        rs.sort(key=lambda r: r["lam"])
        if name.startswith("conditioned"):
            above_fixed(rs, rows["shipped_fixed"])
    cond_run = read_run(cond)
    out = {"cond_run": str(cond), "cond_config": cond_run["config"], "rows": rows,
           "command": " ".join(sys.argv)}
    res = Path(a.results)
    res.parent.mkdir(parents=True, exist_ok=True)
    res.with_suffix(".json").write_text(json.dumps(out, indent=2) + "\n")
    md = []
    for name, rs in rows.items():
        md += [f"### {name}", "", "| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
        md += ["| " + " | ".join(f"{r.get(c, float('nan')):.4g}" for c in COLUMNS) + " |"
               for r in rs] + [""]
    res.with_suffix(".md").write_text("\n".join(md))
    print("\n".join(md))

    fig, ax = plt.subplots(figsize=(6, 4.5))
    def span(run: Path) -> str:
        lo, hi = load_model(run).lam_range
        return f"--lam-range {lo:g}:{hi:g}"

    styles = {"conditioned": ("o-", f"one conditioned generator ({span(cond)})"),
              "shipped_fixed": ("s--", "fixed-lambda generators (shipped)"),
              "fixed_current_recipe": ("^", "fixed lambda, named runs (seeds)")}
    for name, rs in rows.items():
        if not rs:
            continue
        other = next((c for c in conds[1:] if f"conditioned:{c.name}" == name), None)
        fmt, label = styles.get(name, ("x:", f"conditioned, {name.partition(':')[2]}"
                                             + (f" ({span(other)})" if other else "")))
        if name == "conditioned" and len(conds) > 1:
            label = f"{label}, {cond.name}"
        ax.plot([r["l2"] for r in rs], [r["fd_cnn_cmnist"] for r in rs], fmt, label=label)
        for r in rs:
            text = Path(r["run"]).name if "run" in r else f"{r['lam']:g}"  # a fixed run's recipe
            ax.annotate(text, (r["l2"], r["fd_cnn_cmnist"]), fontsize=7,
                        textcoords="offset points", xytext=(3, 3))
    floor = rows["conditioned"][0].get("fd_cnn_cmnist_floor")
    if floor:
        ax.axhline(floor, color="grey", lw=0.8, ls=":", label="FD floor (real vs real)")
    ax.set_xlabel("L2 to the input (transport cost)")
    ax.set_ylabel("fd_cnn_cmnist (Frechet distance, rdmd's classifier)")
    ax.set_title("Colored MNIST 2 -> 3: fronts (labels: lambda)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    Path(a.figure).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(a.figure, dpi=120)
    print(f"wrote {res.with_suffix('.json')}, {res.with_suffix('.md')}, {a.figure}")

    if a.ship:
        ship(cond, SHIP / "rdmd_cond")  # the files cmnist_models.py ships, paths made relative
        print(f"shipped {cond} -> {SHIP / 'rdmd_cond'}")


if __name__ == "__main__":
    main()

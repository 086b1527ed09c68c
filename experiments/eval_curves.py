"""Held-out metrics along training, read from runs trained with ``--set eval_every=K``.

One panel per metric, one line per run, plus a JSON of the points and of each run's mean
and spread over its evaluations. Why: with 100 held-out images the Frechet distance of one
checkpoint carries several units of noise; a curve shows whether a longer run or a schedule
moves the distance or only redraws it (docs/images.md, sixteenth session). A dotted line
marks the evaluation a ``select = "best_val"`` run saved. For lambda-conditioned runs,
``metric@lo`` / ``@mid`` / ``@hi`` name a metric at the bottom, middle or top of each run's
range (runs on different ranges share a panel).

    python experiments/eval_curves.py \\
        --runs lam0.05=runs/cmnist/rdmd_lam0.05,lam0.1=runs/cmnist/rdmd_lam0.1 \\
        --figure docs/figures/cmnist_eval_curves.png \\
        --results experiments/results/cmnist_eval_curves.json
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from rdmd.errors import RdmdError  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))
from common import run_main  # noqa: E402

KEYS = "fd_cnn_cmnist,target_accuracy,l2,hue_difference"


#: placeholders of a conditioned run's report lambdas: bottom, middle and top of its range
PLACES = ("lo", "mid", "hi")


def resolve(key: str, columns: list[str]) -> str:
    """``metric@lo`` / ``@mid`` / ``@hi``: that metric at the bottom, middle or top report
    lambda of a conditioned run (its ``metric@<lambda>`` columns), so runs trained on
    different ranges share a panel; any other key as it is."""
    name, sep, place = key.rpartition("@")
    if not sep or place not in PLACES:
        return key
    lams = sorted({float(c.rpartition("@")[2]) for c in columns
                   if c.startswith(f"{name}@") and _is_number(c.rpartition("@")[2])})
    if len(lams) != len(PLACES):
        raise RdmdError(f"{key!r} needs a lambda-conditioned run's three {name}@<lambda> "
                        f"columns; this log has {len(lams)}")
    return f"{name}@{lams[PLACES.index(place)]:g}"


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def read_curve(run_dir: Path, keys: list[str]) -> list[dict[str, float]]:
    """The rows of ``log.csv`` that hold an evaluation: step and the requested metrics
    (keyed as requested: ``@lo``/``@mid``/``@hi`` are resolved per run, :func:`resolve`)."""
    log = run_dir / "log.csv"
    if not log.is_file():
        raise RdmdError(f"{run_dir} has no log.csv (not a training run folder)")
    with log.open() as f:
        rows = list(csv.DictReader(f))
    header = list(rows[0]) if rows else []
    cols = {k: resolve(k, header) for k in keys}
    missing = [k for k in keys if rows and cols[k] not in header]
    if missing:
        raise RdmdError(f"{log} has no column {missing[0]!r}: was the run trained with "
                        "--set eval_every=K? (a lambda-conditioned run names them "
                        "metric@lambda)")
    points = [{"step": int(r["step"]), **{k: float(r[cols[k]]) for k in keys}}
              for r in rows if all(r.get(cols[k]) for k in keys)]
    if not points:
        raise RdmdError(f"{log} holds no evaluation rows (train with --set eval_every=K)")
    return points


def summary(points: list[dict[str, float]], keys: list[str]) -> dict[str, dict[str, float]]:
    """Mean, standard deviation, min and max of each metric over a run's evaluations."""
    out = {}
    for k in keys:
        v = [p[k] for p in points]
        out[k] = {"mean": statistics.fmean(v), "sd": statistics.stdev(v) if len(v) > 1 else 0.0,
                  "min": min(v), "max": max(v), "n": len(v)}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", required=True, help="comma-separated LABEL=RUN_DIR")
    ap.add_argument("--keys", default=KEYS, help=f"metrics to draw (default {KEYS})")
    ap.add_argument("--figure", required=True)
    ap.add_argument("--results", default=None, help="JSON of the points and summaries")
    a = ap.parse_args()
    keys = [k for k in a.keys.split(",") if k]
    runs = parse_runs(a.runs)
    curves = {label: read_curve(d, keys) for label, d in runs.items()}
    fig, axes = plt.subplots(1, len(keys), figsize=(3.6 * len(keys), 3.2), squeeze=False)
    chosen = {label: chosen_step(d) for label, d in runs.items()}
    for ax, k in zip(axes[0], keys, strict=True):
        for label, pts in curves.items():
            line, = ax.plot([p["step"] for p in pts], [p[k] for p in pts], "o-", ms=3,
                            label=label)
            if chosen[label] is not None:  # the evaluation select = "best_val" shipped
                ax.axvline(chosen[label], color=line.get_color(), ls=":", lw=1)
        ax.set_xlabel("generator iteration")
        ax.set_title(k, fontsize=9)
    axes[0][0].legend(fontsize=7)
    out = {label: {"run": str(runs[label]), "points": pts, "summary": summary(pts, keys)}
           for label, pts in curves.items()}
    for label, rec in out.items():
        print(label, {k: f"{s['mean']:.3g} +- {s['sd']:.2g} [{s['min']:.3g}, {s['max']:.3g}]"
                      for k, s in rec["summary"].items()})
    save(fig, a.figure, a.results, out)


def chosen_step(run_dir: Path) -> int | None:
    """The step whose weights a ``select = "best_val"`` run saved (None: another rule)."""
    meta = run_dir / "model.json"
    sel = json.loads(meta.read_text()).get("selected") if meta.is_file() else None
    return int(sel["step"]) if sel and sel.get("rule") == "best_val" else None


def parse_runs(spec: str) -> dict[str, Path]:
    """``--runs LABEL=RUN_DIR,...``"""
    runs: dict[str, Path] = {}
    for item in spec.split(","):
        label, sep, path = item.partition("=")
        if not sep or not label or not path:
            raise RdmdError(f"--runs wants LABEL=RUN_DIR items, got {item!r}")
        runs[label] = Path(path)
    return runs


def save(fig: plt.Figure, figure: str, results: str | None, runs: dict) -> None:
    """The figure, and the per-run records with the command that made them."""
    fig.tight_layout()
    Path(figure).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(figure, dpi=110)
    if results:
        Path(results).parent.mkdir(parents=True, exist_ok=True)
        Path(results).write_text(json.dumps({"command": " ".join(sys.argv), "runs": runs},
                                            indent=2) + "\n")
    print(f"wrote {figure}" + (f", {results}" if results else ""))


if __name__ == "__main__":
    run_main(main)

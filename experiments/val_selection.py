"""Does the validation score choose good weights? Read runs trained with ``val_size`` and
``--set eval_every=K`` (and usually ``select = "best_val"``) and set, for each, the test FD of
the weights validation chose beside the last weights', the best the test itself would have
chosen (an oracle, not a number to report as the model's), and how well the two scores rank
the evaluations alike (Spearman).

Why: with 100 held-out colored-MNIST images the test FD of one checkpoint moves by several
units between evaluations, and the best points of a run were mid-run (docs/images.md,
seventeenth session). Choosing on the test would report a minimum of noise; choosing on a
split the test never sees is honest, and this script shows what it gains.

    python experiments/val_selection.py \\
        --runs "seed 0=runs/cmnist/val_lam0.05_s0,seed 1=runs/cmnist/val_lam0.05_s1" \\
        --test-key fd_cnn_cmnist --figure docs/figures/cmnist_val_selection.png \\
        --results experiments/results/cmnist_val_selection.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from scipy.stats import spearmanr  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))
from common import run_main  # noqa: E402
from eval_curves import parse_runs, read_curve, save  # noqa: E402


def selection(points: list[dict[str, float]], test: str, val: str) -> dict[str, Any]:
    """The chosen (lowest validation) evaluation against the last and the test's own best."""
    chosen = min(points, key=lambda p: p[val])
    oracle = min(points, key=lambda p: p[test])
    rho = spearmanr([p[val] for p in points], [p[test] for p in points]).statistic
    return {"chosen_step": int(chosen["step"]), "chosen_test": chosen[test],
            "chosen_val": chosen[val], "last_step": int(points[-1]["step"]),
            "last_test": points[-1][test], "oracle_step": int(oracle["step"]),
            "oracle_test": oracle[test], "mean_test": statistics.fmean(p[test] for p in points),
            "spearman_val_test": float(rho), "evaluations": len(points)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", required=True, help="comma-separated LABEL=RUN_DIR")
    ap.add_argument("--test-key", default="fd_cnn_cmnist", help="the test score in log.csv")
    ap.add_argument("--figure", required=True)
    ap.add_argument("--results", default=None)
    a = ap.parse_args()
    test, val = a.test_key, f"val_{a.test_key}"
    runs = parse_runs(a.runs)
    out: dict[str, Any] = {}
    fig, axes = plt.subplots(1, len(runs), figsize=(4.2 * len(runs), 3.3), squeeze=False)
    for ax, (label, run) in zip(axes[0], runs.items(), strict=True):
        pts = read_curve(run, [test, val])
        sel = selection(pts, test, val)
        report = run / "metrics.json"
        final = json.loads(report.read_text()) if report.is_file() else None
        out[label] = {"run": str(run), **sel, "points": pts, "report": final}
        steps = [p["step"] for p in pts]
        ax.plot(steps, [p[test] for p in pts], "o-", ms=3, label=f"test {test}")
        ax.plot(steps, [p[val] for p in pts], "s--", ms=3, label="validation")
        ax.axvline(sel["chosen_step"], color="k", lw=0.8, ls=":")
        ax.set_title(f"{label}: chosen {sel['chosen_step']} (test {sel['chosen_test']:.2f}), "
                     f"last {sel['last_test']:.2f}", fontsize=8)
        ax.set_xlabel("generator iteration")
        print(f"{label}: chosen step {sel['chosen_step']} test {sel['chosen_test']:.3f} | "
              f"last {sel['last_test']:.3f} | oracle {sel['oracle_test']:.3f} at "
              f"{sel['oracle_step']} | mean {sel['mean_test']:.3f} | spearman "
              f"{sel['spearman_val_test']:.2f} over {sel['evaluations']}")
    axes[0][0].legend(fontsize=7)
    save(fig, a.figure, a.results, out)


if __name__ == "__main__":
    run_main(main)

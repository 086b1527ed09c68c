"""Paper Fig. 4-5 on colored MNIST 2 -> 3: RDMD vs SDEdit, ILVR, EGSDE, one table.

Runs (or finishes) ``rdmd sweep`` with ``configs/cmnist_sweep.toml``, then copies the plots to
``docs/figures/`` and the table and front analysis to ``experiments/results/``:

    python experiments/cmnist_sweep.py [--out runs/cmnist/sweep]

Interrupted? Run it again: finished configurations are kept (see ``rdmd.sweep``).
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

from rdmd.sweep import run_sweep

ROOT = Path(__file__).resolve().parents[1]


def _spans(v: list[list[float]]) -> str:
    return ", ".join(f"[{a:.2f}, {b:.2f}]" for a, b in v) or "none"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default=str(ROOT / "configs" / "cmnist_sweep.toml"))
    ap.add_argument("--out", default=str(ROOT / "runs" / "cmnist" / "sweep"))
    ap.add_argument("--no-progress", action="store_true")
    a = ap.parse_args()
    out = Path(a.out)
    summary = run_sweep(a.config, out, progress=not a.no_progress)
    figs, res = ROOT / "docs" / "figures", ROOT / "experiments" / "results"
    figs.mkdir(parents=True, exist_ok=True)
    res.mkdir(parents=True, exist_ok=True)
    shutil.copy(out / "fig4_tradeoff.png", figs / "cmnist_fig4_tradeoff.png")
    if (out / "fig5_grid.png").is_file():
        shutil.copy(out / "fig5_grid.png", figs / "cmnist_fig5_grid.png")
    shutil.copy(out / "table.csv", res / "cmnist_sweep.csv")
    (res / "cmnist_sweep.json").write_text(json.dumps(
        {"summary": summary, "rows": json.loads((out / "table.json").read_text())["rows"]},
        indent=2))
    lines = ["# Colored MNIST 2 -> 3: RDMD vs SDEdit, ILVR, EGSDE",
             "", "Command: `python experiments/cmnist_sweep.py` (config "
             "`configs/cmnist_sweep.toml`).", "", (out / "table.md").read_text(), ""]
    for k, v in summary.items():
        if k.startswith("rdmd_below_"):
            lines.append(f"- L2 budgets where RDMD's front is below "
                         f"{k[len('rdmd_below_'):]}: {_spans(v)}")
    (res / "cmnist_sweep.md").write_text("\n".join(lines) + "\n")
    print((res / "cmnist_sweep.md").read_text())


if __name__ == "__main__":
    main()

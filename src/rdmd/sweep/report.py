"""The sweep's outputs, rebuilt from the finished entries: ``table.csv``/``table.json``/
``table.md``, ``summary.json`` (the fronts of :mod:`rdmd.sweep.fronts`) and the choice of
configurations Fig. 5 shows; the drawing itself is in :mod:`rdmd.plots`."""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path
from typing import Any

import torch

from rdmd.checkpoint import atomic_write_json, atomic_write_text, load_tensors, read_json
from rdmd.errors import RdmdError
from rdmd.sweep.config import BASELINES, METHOD_ORDER, SweepConfig
from rdmd.sweep.fronts import dominance

TABLE_COLUMNS = ["method", "params", "l2", "psnr", "ssim", "FD", "FD_floor",
                 "target_accuracy", "nfe", "aux_evals", "images_per_s"]


def fd_name(row: dict[str, Any]) -> str | None:
    """The entry's Frechet-distance key (``fd_<classifier>``), None without a classifier."""
    return next((k for k in row if k.startswith("fd_") and not k.endswith("_floor")
                 and k != "fd_n"), None)


def read_entries(out: Path) -> list[dict[str, Any]]:
    rows = [read_json(p) for p in sorted((out / "entries").glob("*.json"))]
    rows.sort(key=lambda r: (METHOD_ORDER.index(r["method"]), r["l2"]))
    return rows


def _format(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return "" if v is None else str(v)


def table_rows(rows: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], str | None]:
    fd_key = fd_name(rows[0]) if rows else None
    out = []
    for r in rows:
        params = " ".join(f"{k[2:]}={_format(v)}" for k, v in r.items() if k.startswith("p_"))
        out.append({"method": r["method"], "params": params, "l2": r["l2"], "psnr": r["psnr"],
                    "ssim": r["ssim"], "FD": r.get(fd_key) if fd_key else None,
                    "FD_floor": r.get(f"{fd_key}_floor") if fd_key else None,
                    "target_accuracy": r.get("target_accuracy"), "nfe": r["nfe"],
                    "aux_evals": r["aux_evals"], "images_per_s": r["images_per_s"]})
    return out, fd_key


def write_outputs(cfg: SweepConfig, out: Path, sources: torch.Tensor | None = None
                  ) -> dict[str, Any]:
    """table.csv/json/md, summary.json and the Fig. 4/5 plots, from the finished entries;
    ``sources`` are the scored inputs (loaded from ``cfg.source`` when not given)."""
    rows = read_entries(out)
    if not rows:
        raise RdmdError(f"{out}: no finished entries yet")
    table, fd_key = table_rows(rows)
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=TABLE_COLUMNS, lineterminator="\n")
    w.writeheader()
    w.writerows({k: _format(v) for k, v in t.items()} for t in table)
    atomic_write_text(out / "table.csv", buf.getvalue())
    atomic_write_json(out / "table.json", {"fd_metric": fd_key, "rows": rows})
    fd_label = fd_key or "FD"
    md = [f"| {' | '.join(c if c != 'FD' else fd_label for c in TABLE_COLUMNS)} |",
          "|" + "---|" * len(TABLE_COLUMNS)]
    md += ["| " + " | ".join(_format(t[c]) for c in TABLE_COLUMNS) + " |" for t in table]
    atomic_write_text(out / "table.md", "\n".join(md) + "\n")
    summary: dict[str, Any] = {"n_entries": len(rows), "fd_metric": fd_key}
    if fd_key:
        summary.update(dominance(rows, fd_key))
        from rdmd.plots import plot_tradeoff

        plot_tradeoff(out / "fig4_tradeoff.png", rows, fd_key)
        fig5 = fig5_selection(rows, fd_key, cfg.recommended_lam)
        if fig5:
            summary["fig5"] = [{"method": r["method"], "key": r["key"], "l2": r["l2"],
                                fd_key: r[fd_key]} for r in fig5]
            _plot_fig5(cfg, out, fig5, fd_key, sources)
    atomic_write_json(out / "summary.json", summary)
    return summary


def fig5_selection(rows: list[dict[str, Any]], fd_key: str, lam: float | None
                   ) -> list[dict[str, Any]]:
    """RDMD at ``lam`` (or its lowest-FD entry), then each baseline's entry closest in FD."""
    ours = [r for r in rows if r["method"] == "rdmd"]
    if not ours:
        return []
    pick = next((r for r in ours if lam is not None and math.isclose(r["p_lam"], lam)), None)
    pick = pick or min(ours, key=lambda r: r[fd_key])
    sel = [pick]
    for m in BASELINES:
        cand = [r for r in rows if r["method"] == m]
        if cand:
            sel.append(min(cand, key=lambda r: abs(r[fd_key] - pick[fd_key])))
    return sel


def _plot_fig5(cfg: SweepConfig, out: Path, sel: list[dict[str, Any]], fd_key: str,
               sources: torch.Tensor | None) -> None:
    from rdmd.plots import plot_method_grid

    if sources is None:
        from rdmd.sweep.run import load_data

        sources = load_data(cfg)[1].test
    x = sources[:cfg.fig5_images]
    outputs = [load_tensors(out / "entries" / f"{r['key']}.safetensors")["outputs"]
               for r in sel]
    labels = [f"{r['method']}\n" + " ".join(f"{k[2:]}={_format(v)}" for k, v in r.items()
                                           if k.startswith("p_") and k != "p_n_steps")
              + f"\nL2 {r['l2']:.2f}, FD {r[fd_key]:.1f}" for r in sel]
    plot_method_grid(out / "fig5_grid.png", x, outputs, labels)

"""``rdmd demo``: the whole method on Gaussian -> 8 Gaussians in a few minutes, with a report.

Re-running the demo in the same folder reuses finished runs and resumes unfinished ones.
"""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

import numpy as np

from rdmd.config import DistillConfig, TeacherConfig
from rdmd.data import load_domain
from rdmd.models import load_model
from rdmd.training import distill, train_teacher

SOURCE = "gaussian"
TARGET = "8gaussians"
LAMS = (0.0, 0.02, 0.2)
FULL = {"teacher_steps": 6000, "rdmd_steps": 5000}
QUICK = {"teacher_steps": 400, "rdmd_steps": 200}
COLUMNS = ("lam", "w2_sq", "w2_floor_mean", "w2_over_floor", "transport_cost", "ot_gap",
           "crossings")


def _run_or_resume(out: Path, fn: Any) -> Path:
    if (out / "model.json").is_file() and (out / "metrics.json").is_file():
        return out
    return fn(resume=(out / "config.json").is_file())


def run_demo(out_dir: Path, quick: bool = False, progress: bool = True) -> Path:
    steps = QUICK if quick else FULL
    out_dir.mkdir(parents=True, exist_ok=True)
    tdir = out_dir / "teacher"
    tcfg = TeacherConfig(steps=steps["teacher_steps"], ckpt_every=1000)
    _run_or_resume(tdir, lambda resume: train_teacher(TARGET, tdir, tcfg, resume, progress))
    rows: list[dict[str, Any]] = []
    outputs = []
    for lam in LAMS:
        rdir = out_dir / f"rdmd_lam{lam:g}"
        dcfg = DistillConfig(steps=steps["rdmd_steps"], lam=lam, ckpt_every=1000)
        _run_or_resume(rdir, lambda resume, rdir=rdir, dcfg=dcfg: distill(
            SOURCE, tdir, rdir, dcfg, resume=resume, progress=progress))
        rows.append(json.loads((rdir / "metrics.json").read_text()))
        outputs.append(rdir)
    return write_report(out_dir, tdir, outputs, rows)


def write_report(out_dir: Path, tdir: Path, runs: list[Path], rows: list[dict]) -> Path:
    from rdmd.api import translate
    from rdmd.checkpoint import atomic_write_text
    from rdmd.plots import plot_map_panels

    src = load_domain(SOURCE, 5000, 5000, 0)
    tgt = load_domain(TARGET, 5000, 5000, 0)
    x = src.test[:2000].numpy()
    outs = [np.asarray(translate(load_model(r), x)) for r in runs]
    titles = [f"lambda = {r['lam']:g}\nW2^2/floor {r['w2_over_floor']:.2f}, "
              f"cross {r['crossings']:.3f}" for r in rows]
    plot_map_panels(out_dir / "maps.png", x, outs, titles, tgt.test[:2000].numpy())
    teacher = json.loads((tdir / "metrics.json").read_text())

    def fmt(v: Any) -> str:
        return f"{v:.4g}" if isinstance(v, float) else str(v)

    md = ["# rdmd demo: Gaussian -> 8 Gaussians", "",
          f"Teacher: W2^2 to held-out target {teacher['w2_sq']:.4g} "
          f"(noise floor {teacher['w2_floor_mean']:.4g} +- {teacher['w2_floor_std']:.2g}).",
          "", "| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    md += ["| " + " | ".join(fmt(r.get(c, "")) for c in COLUMNS) + " |" for r in rows]
    md += ["", "![maps](maps.png)", ""]
    atomic_write_text(out_dir / "report.md", "\n".join(md))
    table = "".join("<tr>" + "".join(f"<td>{html.escape(fmt(r.get(c, '')))}</td>"
                                     for c in COLUMNS) + "</tr>" for r in rows)
    page = (f"<!doctype html><meta charset=utf-8><title>rdmd demo</title>"
            f"<h1>rdmd demo: Gaussian &rarr; 8 Gaussians</h1><p>{html.escape(md[2])}</p>"
            f"<table border=1 cellpadding=4><tr>{''.join(f'<th>{c}</th>' for c in COLUMNS)}"
            f"</tr>{table}</table><p><img src='maps.png' style='max-width:100%'></p>")
    atomic_write_text(out_dir / "report.html", page)
    return out_dir / "report.html"

"""``rdmd demo``: the method end to end in a few minutes, with a report to look at.

Part 1 trains a teacher on 8 Gaussians and ONE lambda-conditioned RDMD generator from
N(0, I) (``lambda`` in ``LAM_RANGE``, shown at the three lambdas its run reports: one run
instead of one per lambda keeps the demo within four minutes); part 2 translates held-out
colored-MNIST 2s into 3s with the generators shipped in ``rdmd/pretrained/cmnist`` (no
training). Re-running the demo in the same folder reuses finished runs and resumes unfinished
ones.
"""

from __future__ import annotations

import html
import json
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from rdmd.config import DistillConfig, TeacherConfig
from rdmd.data import load_domain
from rdmd.models import load_model
from rdmd.training import distill, train_teacher

SOURCE = "gaussian"
TARGET = "8gaussians"
LAM_RANGE = (0.0, 0.3)  # the conditioned 2-D generator's range (docs/lambda.md: 0:0.3)
CMNIST_LAMS = (0.05, 0.5, 2.0)
CONDITIONED = "rdmd_cond"  # the shipped generator for every lambda in its range
# the 2-D defaults' step counts (rdmd.config.PLANE_DEFAULTS), for the conditioned generator
FULL = {"teacher_steps": 4000, "rdmd_steps": 2000, "n_test": 5000}
QUICK = {"teacher_steps": 400, "rdmd_steps": 200, "n_test": 1000}
COLUMNS_2D = ("lam", "mode_outliers", "log_density", "w2_over_floor_stable",
              "w2_over_floor_stable_se", "transport_cost", "ot_gap", "crossings")
COLUMNS_IMG = ("lam", "l2", "rmse", "psnr", "ssim", "hue_difference", "target_accuracy",
               "fd_cnn_cmnist", "fd_cnn_cmnist_floor")


@dataclass
class Section:
    title: str
    text: str
    columns: tuple[str, ...]
    rows: list[dict[str, Any]]
    images: list[str] = field(default_factory=list)


def _run_or_resume(out: Path, fn: Any) -> Path:
    if (out / "model.json").is_file() and (out / "metrics.json").is_file():
        return out
    return fn(resume=(out / "config.json").is_file())


def pretrained_dir(name: str = "cmnist") -> Path:
    """Where the shipped models of a data family live (inside the installed package)."""
    return Path(str(resources.files("rdmd") / "pretrained" / name))


def run_demo(out_dir: Path, quick: bool = False, progress: bool = True) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    sections = [section_2d(out_dir, quick, progress)]
    for img in (section_cmnist(out_dir), section_cmnist_conditioned(out_dir)):
        if img is not None:
            sections.append(img)
    return write_report(out_dir, sections)


def section_2d(out_dir: Path, quick: bool, progress: bool) -> Section:
    from rdmd.api import translate
    from rdmd.plots import plot_map_panels

    steps = QUICK if quick else FULL
    tdir = out_dir / "teacher"
    tcfg = TeacherConfig(steps=steps["teacher_steps"], ckpt_every=1000, n_test=steps["n_test"])
    _run_or_resume(tdir, lambda resume: train_teacher(TARGET, tdir, tcfg, resume, progress))
    rdir = out_dir / "rdmd_cond"
    dcfg = DistillConfig(method="rdmd_lam", lam_range=list(LAM_RANGE),
                         steps=steps["rdmd_steps"], ckpt_every=1000, n_test=steps["n_test"])
    _run_or_resume(rdir, lambda resume: distill(SOURCE, tdir, rdir, dcfg, resume=resume,
                                                progress=progress))
    by_lam = json.loads((rdir / "metrics.json").read_text())["by_lam"]
    rows = [{"lam": float(k), **v} for k, v in by_lam.items()]
    model = load_model(rdir)
    src = load_domain(SOURCE, 5000, 5000, 0)
    tgt = load_domain(TARGET, 5000, 5000, 0)
    x = src.test[:2000].numpy()
    outs = [np.asarray(translate(model, x, lam=r["lam"])) for r in rows]
    titles = [f"lambda = {r['lam']:g}: off-mode {_pct(r.get('mode_outliers'))}\n"
              f"W2^2/floor {_num(r.get('w2_over_floor_stable'))}, "
              f"cross {r['crossings']:.4f}" for r in rows]
    plot_map_panels(out_dir / "maps.png", x, outs, titles, tgt.test[:2000].numpy())
    t = json.loads((tdir / "metrics.json").read_text())
    text = (f"Teacher ({steps['teacher_steps']} steps): {_pct(t.get('mode_outliers'))} of its "
            f"samples off the modes (farther than 3 std from every centre; true samples "
            f"{_pct(t.get('mode_outliers_true'))}), W2^2 {_num(t.get('w2_over_floor_stable'))} "
            f"+- {_num(t.get('w2_over_floor_stable_se'))} x its noise floor. RDMD: "
            f"one generator for every lambda in [{LAM_RANGE[0]:g}, {LAM_RANGE[1]:g}], "
            f"{steps['rdmd_steps']} iterations, shown at three lambdas. mode_outliers: share "
            f"of outputs off the modes (true samples {_pct(t.get('mode_outliers_true'))}); "
            f"log_density: mean true log-density of the outputs (true samples "
            f"{_num(t.get('log_density_true'))}); w2_over_floor_stable: W2^2 over fresh sets of "
            f"1000 against the floor, with its standard error; crossings: share of crossing "
            f"input->output segments.")
    return Section("Gaussian -> 8 Gaussians (trained now)", text, COLUMNS_2D, rows,
                   ["maps.png"])


def section_cmnist(out_dir: Path) -> Section | None:
    """Shipped colored-MNIST generators on held-out 2s; None if none are installed."""
    from rdmd.evaluation import apply_generator, evaluate_image_translation, save_pair_grid

    root = pretrained_dir("cmnist")
    # Three points of the trade-off keep the demo short; the sweep (docs/results.md) scores
    # every shipped generator.
    gens = [root / f"rdmd_lam{lam:g}" for lam in CMNIST_LAMS]
    gens = [g for g in gens if (g / "model.json").is_file()]
    if not gens:
        return None
    src = load_domain("cmnist2")
    tgt = load_domain("cmnist3")
    clf = root / "classifier"
    rows, images = [], []
    x = src.test[:32]
    for g in gens:
        model = load_model(g)
        res = evaluate_image_translation(model.net, src, tgt, str(clf), 3)
        res["lam"] = model.meta["lam"]
        rows.append(res)
        name = f"cmnist_{g.name}.png"
        gx = apply_generator(model.net, model.normalizer, x).clamp(-1, 1)
        save_pair_grid(out_dir / name, x, gx)
        images.append(name)
    text = ("Held-out colored 2s (100 images) translated into 3s in one network call by the "
            "shipped generators (rdmd/pretrained/cmnist, see its MODEL_CARD.md). Each grid "
            "shows inputs above outputs. fd_cnn_cmnist is a Frechet distance over the "
            "features of rdmd's own colored-MNIST classifier (not FID), with its noise floor "
            "(two disjoint halves of real 3s); target_accuracy is that classifier's share of "
            "outputs labelled 3; hue_difference is in turns (0.5 = opposite colour).")
    return Section("Colored MNIST 2 -> 3 (shipped generators)", text, COLUMNS_IMG, rows, images)


def section_cmnist_conditioned(out_dir: Path, lams: tuple[float, ...] = CMNIST_LAMS,
                               ) -> Section | None:
    """The lambda row from ONE shipped lambda-conditioned generator: the same held-out 2s
    translated at each lambda by turning the knob, no retraining; None if not installed."""
    import torch

    from rdmd.data.images import image_grid, save_pil
    from rdmd.evaluation import apply_generator, evaluate_image_translation
    from rdmd.translators import OneStep

    root = pretrained_dir("cmnist")
    gdir = root / CONDITIONED
    if not (gdir / "model.json").is_file():
        return None
    model = load_model(gdir)
    lo, hi = model.lam_range or (0.0, 0.0)
    lams = tuple(lam for lam in lams if lo <= lam <= hi)
    src = load_domain("cmnist2")
    tgt = load_domain("cmnist3")
    x = src.test[:16]
    rows, grid = [], [x]
    for lam in lams:
        net = OneStep(model, lam).net
        res = evaluate_image_translation(net, src, tgt, str(root / "classifier"), 3)
        rows.append({"lam": lam, **res})
        grid.append(apply_generator(net, model.normalizer, x).clamp(-1, 1))
    name = "cmnist_conditioned.png"
    save_pil(image_grid(torch.cat(grid), nrow=len(x)), out_dir / name)
    text = (f"One generator for every lambda in [{lo:g}, {hi:g}] "
            f"(rdmd/pretrained/cmnist/{CONDITIONED}, trained once with --lam-range): the top "
            f"row is 16 held-out 2s, each row below translates them at one lambda "
            f"({', '.join(f'{lam:g}' for lam in lams)}, top to bottom). Metrics as above.")
    return Section("Colored MNIST 2 -> 3: one generator, lambda turned at translation time",
                   text, COLUMNS_IMG, rows, [name])


def _pct(v: Any) -> str:
    return f"{100 * v:.1f}%" if isinstance(v, float) else "?"


def _num(v: Any) -> str:
    return f"{v:.2f}" if isinstance(v, float) else "?"


def _fmt(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def write_report(out_dir: Path, sections: list[Section]) -> Path:
    from rdmd.checkpoint import atomic_write_text

    md = ["# rdmd demo", ""]
    body = ["<!doctype html><meta charset=utf-8><title>rdmd demo</title>",
            "<style>body{font-family:sans-serif;max-width:1100px;margin:auto}"
            "td,th{padding:3px 8px;text-align:right}</style><h1>rdmd demo</h1>"]
    for s in sections:
        md += [f"## {s.title}", "", s.text, "",
               "| " + " | ".join(s.columns) + " |", "|" + "---|" * len(s.columns)]
        md += ["| " + " | ".join(_fmt(r.get(c, "")) for c in s.columns) + " |"
               for r in s.rows]
        md += [""] + [f"![{i}]({i})" for i in s.images] + [""]
        rows = "".join("<tr>" + "".join(f"<td>{html.escape(_fmt(r.get(c, '')))}</td>"
                                        for c in s.columns) + "</tr>" for r in s.rows)
        head = "".join(f"<th>{c}</th>" for c in s.columns)
        imgs = "".join(f"<p><b>{html.escape(i)}</b><br><img src='{i}' "
                       f"style='max-width:100%;image-rendering:pixelated'></p>"
                       for i in s.images)
        body.append(f"<h2>{html.escape(s.title)}</h2><p>{html.escape(s.text)}</p>"
                    f"<table border=1><tr>{head}</tr>{rows}</table>{imgs}")
    atomic_write_text(out_dir / "report.md", "\n".join(md))
    atomic_write_text(out_dir / "report.html", "\n".join(body))
    return out_dir / "report.html"

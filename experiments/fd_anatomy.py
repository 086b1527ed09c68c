"""Where a one-step generator's Frechet distance comes from (issue 14): a shift of the
feature mean, a spread too narrow (the mode-seeking of distribution matching) or too wide,
or the shape of the covariance; and how far the outputs sit from the teacher's own samples.

The Frechet distance splits exactly into ``||m_g - m_r||^2`` (mean term) and
``tr(S_g + S_r - 2 (S_g S_r)^{1/2})`` (covariance term). Beside them: ``tr S`` of each set
against the real targets' (a generator that drops modes has a smaller trace), the same split
for the teacher's Heun samples and for a second real set (the floor), and FD to the teacher's
samples. Every set is scored against the same real reference as a generator's report
(:func:`rdmd.evaluation._fd_sets`, ``n`` = the held-out sources)::

    python experiments/fd_anatomy.py --pair fmnist \\
        --model "shipped lambda 0.05=src/rdmd/pretrained/fmnist/rdmd_lam0.05" \\
        --model "lambda 0, 400 its=runs/fmnist/recipe400_lam0" \\
        --json experiments/results/fmnist_fd_anatomy.json

``--model`` takes a model folder or a distillation run folder (its shipped weights),
``--checkpoints RUN@100,200,400`` a finished run's checkpoints (the generator's weights). The
teacher's samples (18 Heun steps, seed 1000, as ``teacher_fd_matched.py``'s first draw) are
cached under ``runs/<pair>/teacher_samples_<n>.pt`` (git-ignored) unless ``--no-teacher``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from checkpoint_average import Run, generator_weights, parse_steps  # noqa: E402
from common import run_main  # noqa: E402
from image_ablation import PAIRS, ROOT  # noqa: E402
from teacher_fd_matched import teacher_samples  # noqa: E402

from rdmd.data import load_domain  # noqa: E402
from rdmd.errors import RdmdError  # noqa: E402
from rdmd.evaluation import _fd_sets, _feature_fns  # noqa: E402
from rdmd.metrics.image import _batched, frechet_distance, l2_per_image  # noqa: E402
from rdmd.models import load_model  # noqa: E402
from rdmd.training.runtime import resolve_device  # noqa: E402
from rdmd.translators import make_translator  # noqa: E402

TEACHER, SOURCES = "teacher (18 Heun steps)", "sources (held out)"  # row labels


def split_fd(a: np.ndarray, b: np.ndarray, towards: np.ndarray | None = None
             ) -> dict[str, float]:
    """FD(a, b) with its mean term, its covariance term and both traces; with ``towards``
    (a third set's features), how the mean offset ``m_a - m_b`` lines up with ``m_t - m_b``:
    its cosine, and the share of the mean term that lies along that line."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    fd = frechet_distance(a, b)
    off = a.mean(0) - b.mean(0)
    mean = float((off ** 2).sum())
    out = {"fd": fd, "mean_term": mean, "cov_term": fd - mean,
           "trace": float(np.trace(np.cov(a, rowvar=False))),
           "trace_ref": float(np.trace(np.cov(b, rowvar=False)))}
    if towards is not None:
        d = np.asarray(towards, np.float64).mean(0) - b.mean(0)
        cos = float(off @ d / (np.linalg.norm(off) * np.linalg.norm(d) + 1e-30))
        out.update({"offset_cos_to_sources": cos, "mean_term_along_sources": cos ** 2 * mean})
    return out


def detail(x: torch.Tensor) -> float:
    """Mean squared response to the discrete Laplacian on [0, 1] images: fine detail (edges,
    texture); a blurred set scores lower than the real targets."""
    k = torch.tensor([[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]])
    k = k.expand(x.shape[1], 1, 3, 3).contiguous()
    r = torch.nn.functional.conv2d((x + 1) / 2, k, groups=x.shape[1])
    return float(r.pow(2).mean())


def pixel_stats(x: torch.Tensor) -> dict[str, float]:
    """Mean intensity, share of pixels above 10% grey, and :func:`detail`, on [-1, 1] images."""
    return {"pixel_mean": float(((x + 1) / 2).mean()),
            "ink_share": float((x > -0.8).float().mean()), "detail": detail(x)}


def model_dir(path: Path) -> Path:
    """A model folder, or a distillation run's shipped weights (``model.json`` in the run)."""
    if (path / "model.json").is_file():
        return path
    raise RdmdError(f"--model: {path} holds no model.json (a model folder or a finished run)")


def plot_runs(rows: list[dict], path: Path, metric: str) -> None:
    """Each ``RUN @ STEP`` row's measures along its run; the teacher's and the real floor
    set's as horizontal lines, every other model as a dotted one."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = [("fd", f"{metric} (floor set: real)"), ("mean_term", "mean term of the FD"),
            ("trace", "spread: tr S of the features"), ("detail", "detail: mean Laplacian^2")]
    runs: dict[str, list[tuple[int, dict]]] = {}
    for r in rows:
        if " @ " in r["set"]:
            run, step = r["set"].rsplit(" @ ", 1)
            runs.setdefault(run, []).append((int(step), r))
    fig, axes = plt.subplots(1, len(keys), figsize=(4.2 * len(keys), 3.4))
    for ax, (k, title) in zip(axes, keys, strict=True):
        for run, pts in runs.items():
            pts.sort(key=lambda p: p[0])
            ax.plot([p[0] for p in pts], [p[1][k] for p in pts], "o-", label=run)
        greys = iter(("0.45", "0.7", "0.3", "0.85"))
        for r in rows:
            if " @ " in r["set"] or r["set"].startswith("sources"):
                continue
            real = r["set"].startswith("real")
            color, ls = (("k", "-") if real else ("g", "--") if r["set"].startswith("teacher")
                         else (next(greys, "0.5"), ":"))
            v = r["trace_ref"] if k == "trace" and real else r[k]  # the reference set's
            ax.axhline(v, color=color, linestyle=ls, lw=1, label=r["set"])
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("iteration")
    axes[0].legend(fontsize=6)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    print(f"wrote {path}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pair", choices=sorted(PAIRS), default="fmnist")
    ap.add_argument("--model", action="append", default=[],
                    help="LABEL=FOLDER: a generator (model folder or finished run); repeatable")
    ap.add_argument("--checkpoints", action="append", default=[],
                    help="RUN@STEPS: a finished fixed-lambda run's checkpoints at these "
                         "comma-separated iterations, one row each; repeatable")
    ap.add_argument("--lam", type=float, default=None,
                    help="the lambda at which conditioned generators translate")
    ap.add_argument("--no-teacher", action="store_true", help="skip the teacher's samples")
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--figure", type=Path, default=None,
                    help="plot the --checkpoints rows along their runs (FD, its mean term, "
                         "spread, detail) against the teacher's and the real targets' values")
    a = ap.parse_args()
    p = PAIRS[a.pair]
    src, tgt = load_domain(p["source"]), load_domain(p["target"])
    feats, _, name = _feature_fns(str(p["classifier"]))
    x = src.test
    _, real_a, real_b = _fd_sets(x, tgt)  # the reports' reference and floor sets
    n = len(real_a)
    f_a, f_b = (_batched(feats, t).numpy() for t in (real_a, real_b))
    sets: dict[str, torch.Tensor] = {}
    for spec in a.model:
        label, _, folder = spec.rpartition("=")
        model = load_model(model_dir(Path(folder)))
        lam = a.lam if model.lam_range is not None else None  # fixed ones: their own
        sets[label or folder] = make_translator("rdmd", model, lam=lam).translate(x)
    for spec in a.checkpoints:
        folder, _, steps = spec.rpartition("@")
        run = Run(Path(folder))
        for step in parse_steps(steps):
            net = run.holding(generator_weights(Path(folder), step))
            sets[f"{Path(folder).name} @ {step}"] = make_translator(
                "rdmd", type(run.model)(net, run.model.meta)).translate(x)
    if not a.no_teacher:
        cache = ROOT / "runs" / a.pair / f"teacher_samples_{n}.pt"
        if cache.is_file():
            y = torch.load(cache)
        else:
            print(f"drawing {n} teacher samples (18 Heun steps) ...", flush=True)
            y = teacher_samples(load_model(p["teacher"]), tuple(tgt.shape), n, 18, 1000,
                                resolve_device("auto"))
            cache.parent.mkdir(parents=True, exist_ok=True)
            part = cache.with_suffix(".part")  # a killed draw leaves no half-written cache
            torch.save(y, part)
            part.replace(cache)
        sets[TEACHER] = y
    sets[SOURCES] = x
    fs = {label: _batched(feats, _fd_sets(imgs, tgt)[0] if len(imgs) > n else imgs).numpy()
          for label, imgs in sets.items()}  # each set's features, once
    f_t, f_s = fs.get(TEACHER), fs[SOURCES]
    rows = [{"set": "real (floor set)", **split_fd(f_b, f_a, f_s),
             "fd_to_teacher": None if f_t is None else frechet_distance(f_b, f_t),
             **pixel_stats(real_b)}]
    for label, imgs in sets.items():
        row = {"set": label, **split_fd(fs[label], f_a, f_s),
               "fd_to_teacher": None if f_t is None or label == TEACHER
               else frechet_distance(fs[label], f_t)}
        if imgs is not x and len(imgs) == len(x):
            row["l2"] = float(l2_per_image(x, imgs).mean())
        rows.append({**row, **pixel_stats(imgs)})
    for r in rows:
        t2t = "" if r["fd_to_teacher"] is None else f", to teacher {r['fd_to_teacher']:.3f}"
        print(f"{r['set']:>28}: {name} {r['fd']:.3f} = mean {r['mean_term']:.3f} + cov "
              f"{r['cov_term']:.3f} (along the sources' offset {r['mean_term_along_sources']:.3f},"
              f" cos {r['offset_cos_to_sources']:.2f}); trace {r['trace']:.2f} (real "
              f"{r['trace_ref']:.2f}){t2t}; detail {r['detail']:.4f}")
    if a.figure:
        plot_runs(rows, a.figure, name)
    out = {"pair": a.pair, "metric": name, "n": n, "rows": rows, "command": " ".join(sys.argv)}
    path = a.json or ROOT / "experiments" / "results" / f"{a.pair}_fd_anatomy.json"
    path.write_text(json.dumps(out, indent=2))
    print(f"wrote {path}")


if __name__ == "__main__":
    run_main(main)

"""The paper's Appendix B on colored MNIST 2 -> 3: the generator's noise level ``sigma_g``.

Left of the paper's Fig. 6: what the generator does at initialisation, ``G_0(x) =
D_teacher(x; sigma_g)``, for a range of ``sigma_g`` (no training). Right: FD against L2
after RDMD training at one ``lambda`` for several ``sigma_g`` — runs trained beforehand with

    rdmd distill --source cmnist2 --teacher runs/cmnist/teacher --lam 0.25 --sigma-g S \\
        --config configs/cmnist_rdmd.toml --set classifier=src/rdmd/pretrained/cmnist/classifier \\
        --set target_class=3 --out runs/cmnist/sgS

(``sigma_g = 1`` is the shipped ``rdmd_lam0.25`` run). Then:

    python experiments/cmnist_sigma_g.py
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from common import run_main  # noqa: E402

from rdmd.config import DistillConfig, config_from_saved, to_dict  # noqa: E402
from rdmd.data import load_domain  # noqa: E402
from rdmd.evaluation import evaluate_image_translation  # noqa: E402
from rdmd.methods import OneStepGenerator  # noqa: E402
from rdmd.models import load_model  # noqa: E402

INIT_SIGMAS = (0.1, 0.5, 1.0, 5.0, 10.0, 80.0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--teacher", default="runs/cmnist/teacher")
    ap.add_argument("--runs", default="runs/cmnist/sg0.5,runs/cmnist/rdmd_lam0.25,"
                                      "runs/cmnist/sg5")
    ap.add_argument("--classifier", default="src/rdmd/pretrained/cmnist/classifier")
    ap.add_argument("--results", default="experiments/results")
    ap.add_argument("--figures", default="docs/figures")
    a = ap.parse_args()
    torch.set_num_threads(2)
    teacher = load_model(a.teacher).denoiser
    src, tgt = load_domain("cmnist2"), load_domain("cmnist3")
    x = src.test[:16]
    init_rows, grids = [], []
    for s in INIT_SIGMAS:
        g0 = OneStepGenerator(teacher, s)
        res = evaluate_image_translation(g0, src, tgt, a.classifier, 3)
        init_rows.append({"sigma_g": s, "stage": "init", **res})
        with torch.no_grad():
            grids.append(g0(x).clamp(-1, 1))
    fig_dir = Path(a.figures)
    _init_grid(fig_dir / "cmnist_sigma_g_init.png", x, grids)
    trained = []
    for run in a.runs.split(","):
        m = json.loads((Path(run) / "metrics.json").read_text())
        path = Path(run) / "config.json"
        cfg = config_from_saved(DistillConfig, json.loads(path.read_text())["config"], path)
        trained.append({"sigma_g": cfg.sigma_g, "stage": f"rdmd lam={cfg.lam:g}",
                        "run": run, "config": to_dict(cfg), **m})
    rows = init_rows + trained
    keys = ("sigma_g", "stage", "l2", "psnr", "ssim", "hue_difference", "target_accuracy",
            "fd_cnn_cmnist", "fd_cnn_cmnist_floor")
    md = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    md += ["| " + " | ".join(f"{r.get(k):.4g}" if isinstance(r.get(k), float)
                             else str(r.get(k)) for k in keys) + " |" for r in rows]
    res_dir = Path(a.results)
    res_dir.mkdir(parents=True, exist_ok=True)
    (res_dir / "cmnist_sigma_g.json").write_text(json.dumps(rows, indent=2))
    (res_dir / "cmnist_sigma_g.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))
    _plot(fig_dir / "cmnist_sigma_g.png", init_rows, trained)


def _init_grid(path: Path, x: torch.Tensor, grids: list[torch.Tensor]) -> None:
    """Row 0: inputs; row k: G_0 at INIT_SIGMAS[k-1]."""
    from rdmd.data.images import image_grid

    path.parent.mkdir(parents=True, exist_ok=True)
    image_grid(torch.cat([x, *grids]), nrow=len(x)).save(path)


def _plot(path: Path, init_rows: list[dict], trained: list[dict]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 4))
    ax.plot([r["l2"] for r in init_rows], [r["fd_cnn_cmnist"] for r in init_rows], "o--",
            color="gray", label="initialisation G_0")
    for r in init_rows:
        ax.annotate(f"{r['sigma_g']:g}", (r["l2"], r["fd_cnn_cmnist"]), fontsize=8)
    for r in trained:
        ax.plot(r["l2"], r["fd_cnn_cmnist"], "s", ms=8, label=f"RDMD, sigma_g={r['sigma_g']:g}")
    floor = trained[0]["fd_cnn_cmnist_floor"] if trained else init_rows[0]["fd_cnn_cmnist_floor"]
    ax.axhline(floor, color="k", lw=0.8, ls=":", label="noise floor")
    ax.set_xlabel("L2 (mean per-image norm, [0, 1] images)")
    ax.set_ylabel("fd_cnn_cmnist (not FID)")
    ax.set_yscale("log")
    ax.legend(fontsize=7)
    ax.set_title("colored MNIST 2 -> 3: sigma_g")
    fig.savefig(path, dpi=120, bbox_inches="tight")


if __name__ == "__main__":
    run_main(main)

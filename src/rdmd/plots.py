"""Figures a person would rather look at than read: 2-D samples and input->output maps."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

if TYPE_CHECKING:
    import torch

MAX_SEGMENTS = 400


def _save(fig: plt.Figure, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=120, bbox_inches="tight")
    plt.close(fig)
    tmp.replace(path)


def plot_teacher_samples(path: Path, target: np.ndarray, samples: np.ndarray,
                         titles: tuple[str, str] = ("held-out target",
                                                    "teacher samples (Heun)")) -> None:
    fig, ax = plt.subplots(1, 2, figsize=(8, 4), sharex=True, sharey=True)
    ax[0].scatter(*target.T, s=2, alpha=0.5, c="tab:green")
    ax[0].set_title(titles[0], fontsize=9)
    ax[1].scatter(*samples.T, s=2, alpha=0.5, c="tab:orange")
    ax[1].set_title(titles[1], fontsize=9)
    for a in ax:
        a.set_aspect("equal")
    _save(fig, path)


def draw_map(ax: plt.Axes, x: np.ndarray, gx: np.ndarray, y: np.ndarray | None = None,
             n_segments: int = MAX_SEGMENTS, seed: int = 0) -> None:
    """Inputs, outputs, target and a subsample of the ``x -> G(x)`` segments on one axis."""
    if y is not None:
        ax.scatter(*y.T, s=2, alpha=0.25, c="tab:green", label="target")
    ax.scatter(*x.T, s=2, alpha=0.25, c="tab:blue", label="input")
    ax.scatter(*gx.T, s=2, alpha=0.4, c="tab:orange", label="G(input)")
    idx = np.random.default_rng(seed).choice(len(x), min(n_segments, len(x)), replace=False)
    segs = np.stack([x[idx], gx[idx]], 1)
    from matplotlib.collections import LineCollection

    ax.add_collection(LineCollection(segs, colors="k", linewidths=0.3, alpha=0.4))
    ax.set_aspect("equal")


def plot_translation(path: Path, x: np.ndarray, gx: np.ndarray, y: np.ndarray,
                     title: str = "") -> None:
    fig, ax = plt.subplots(figsize=(5, 5))
    draw_map(ax, x, gx, y)
    ax.set_title(title)
    ax.legend(loc="upper right", markerscale=4, fontsize=8)
    _save(fig, path)


def plot_map_panels(path: Path, x: np.ndarray, outputs: Sequence[np.ndarray],
                    titles: Sequence[str], y: np.ndarray) -> None:
    """The paper's Fig. 3 layout: one panel per ``lambda``, same inputs, same axes."""
    k = len(outputs)
    fig, axes = plt.subplots(1, k + 1, figsize=(3.2 * (k + 1), 3.4), sharex=True, sharey=True)
    axes[0].scatter(*x.T, s=2, alpha=0.3, c="tab:blue", label="input")
    axes[0].scatter(*y.T, s=2, alpha=0.3, c="tab:green", label="target")
    axes[0].set_title("input and target")
    axes[0].set_aspect("equal")
    axes[0].legend(loc="upper right", markerscale=4, fontsize=7)
    for ax, gx, t in zip(axes[1:], outputs, titles, strict=True):
        draw_map(ax, x, gx, None)
        ax.set_title(t, fontsize=9)
    _save(fig, path)


# -- the faithfulness-quality trade-off (paper Fig. 4-5) ----------------------------------

METHOD_STYLE = {"rdmd": ("tab:red", "o"), "sdedit": ("tab:blue", "s"),
                "ilvr": ("tab:green", "^"), "egsde": ("tab:purple", "D")}


def plot_tradeoff(path: Path, rows: Sequence[dict], fd_key: str) -> None:
    """FD against L2, PSNR and SSIM; one marker family per method, RDMD's configurations
    joined in order of lambda. Lower-left is better for L2, lower-right for the
    other two."""
    metrics = [("l2", "L2 (lower = more faithful)"), ("psnr", "PSNR, dB (higher = more "
               "faithful)"), ("ssim", "SSIM (higher = more faithful)")]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.4), sharey=True)
    floor = next((r.get(f"{fd_key}_floor") for r in rows if r.get(f"{fd_key}_floor")), None)
    for ax, (m, label) in zip(axes, metrics, strict=True):
        for method in dict.fromkeys([*METHOD_STYLE, *(r["method"] for r in rows)]):
            color, marker = METHOD_STYLE.get(method, (None, "x"))
            mine = [r for r in rows if r["method"] == method]
            if not mine:
                continue
            # RDMD's line follows its knob, lambda, as in the paper; markers alone elsewhere
            mine.sort(key=lambda r: (r.get("p_lam", 0.0), r[m]))
            xs, ys = [r[m] for r in mine], [r[fd_key] for r in mine]
            ax.scatter(xs, ys, c=color, marker=marker, s=36, label=method, zorder=3)
            if method == "rdmd":
                ax.plot(xs, ys, c=color, lw=1.5, zorder=2)
        if floor:
            ax.axhline(floor, c="grey", ls=":", lw=1, label=f"{fd_key} floor")
        ax.set_xlabel(label)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel(f"{fd_key} (lower = more realistic; not FID)")
    axes[0].legend(fontsize=8)
    fig.suptitle("Faithfulness vs quality: RDMD (one step) and the multi-step baselines")
    _save(fig, path)


def plot_method_grid(path: Path, x: torch.Tensor, outputs: Sequence[torch.Tensor],
                     labels: Sequence[str]) -> None:
    """The paper's Fig. 5 layout: the source images on top, one row per method below."""
    rows = [x, *outputs]
    names = ["source", *labels]
    n = len(x)
    fig, axes = plt.subplots(len(rows), n, figsize=(1.3 * n + 1.8, 1.45 * len(rows)),
                             squeeze=False)
    for i, (imgs, name) in enumerate(zip(rows, names, strict=True)):
        for j in range(n):
            ax = axes[i][j]
            img = ((imgs[j].float().clamp(-1, 1) + 1) / 2).permute(1, 2, 0).numpy()
            ax.imshow(img.squeeze(-1) if img.shape[-1] == 1 else img,
                      cmap="gray" if img.shape[-1] == 1 else None, vmin=0, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
        axes[i][0].set_ylabel(name, rotation=0, ha="right", va="center", fontsize=8)
    _save(fig, path)

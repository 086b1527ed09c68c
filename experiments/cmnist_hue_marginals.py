"""Where colored MNIST's hue goes: the dominant-hue histograms of the real 2s and 3s, of the
teacher's samples and of generators' outputs, and each generator's signed hue shift by the
source's hue (issue 14: one-step outputs do not keep the hue).

Why: with a hue-keeping start the DM term still moves hue as it trains (docs/images.md,
"Starting images at the pixel OT map"). The DM term pulls the outputs' distribution toward the
teacher's, so if the teacher's hue histogram is not the real 3s', a generator that keeps hue
is pushed off it. This measures that histogram against the real one.

    python experiments/cmnist_hue_marginals.py --runs RUN[,RUN...]

Writes ``experiments/results/cmnist_hue_marginals.json`` and
``docs/figures/cmnist_hue_marginals.png``. Hue: :func:`rdmd.metrics.image.dominant_hue`
(the mean colour of the strokes), 12 bins of 30 degrees; "tv": the total-variation distance
between a histogram and the real 3s' (train and test, 500 images).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from common import run_main  # noqa: E402

import rdmd  # noqa: E402
from rdmd.data import load_domain  # noqa: E402
from rdmd.metrics.image import dominant_hue  # noqa: E402
from rdmd.models import load_model  # noqa: E402
from rdmd.sampler import sample  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
BINS = 12


def histogram(hue: torch.Tensor) -> list[float]:
    h = torch.bincount((hue * BINS).long().clamp(0, BINS - 1), minlength=BINS).double()
    return (h / h.sum()).tolist()


def signed_shift(src: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """Output hue minus source hue, in degrees in (-180, 180]."""
    d = (dominant_hue(out) - dominant_hue(src)) % 1.0
    return 360 * torch.where(d > 0.5, d - 1.0, d)


def plot(res: dict, path: Path) -> None:
    """Left: the histograms (n = 100 outputs: a TV near 0.13 is sampling noise alone);
    right: each generator's mean signed hue shift by the source's hue."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    centres = [360 * (i + 0.5) / BINS for i in range(BINS)]
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 3.8))
    for name, r in res["sets"].items():
        left.plot(centres, r["histogram"], marker="o", label=f"{name}: tv {r['tv_to_real_3s']:.2f}")
        if "signed_shift_by_source_bin" in r:
            right.plot(centres, r["signed_shift_by_source_bin"], marker="o",
                       label=f"{name}: mean |shift| {r['mean_abs_shift_degrees']:.1f} deg")
    left.set_xlabel("dominant hue (degrees)")
    left.set_ylabel("share of images")
    left.legend(fontsize=6)
    right.axhline(0, color="k", lw=0.5)
    right.set_xlabel("source's dominant hue (degrees)")
    right.set_ylabel("output hue - source hue (degrees)")
    right.legend(fontsize=6)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)


@torch.no_grad()
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--teacher", default=str(ROOT / "src/rdmd/pretrained/cmnist/teacher"))
    ap.add_argument("--runs", default="", help="generator run folders, comma-separated")
    ap.add_argument("--labels", default="", help="their labels (default: folder names)")
    ap.add_argument("--n-teacher", type=int, default=500)
    ap.add_argument("--sdedit", default="1,2,5,10",
                    help="also the teacher's own flow: SDEdit (18 Heun steps) of the first 100 "
                         "held-out 2s and 3s from these noise levels, and its signed hue shift")
    ap.add_argument("--json", type=Path,
                    default=ROOT / "experiments/results/cmnist_hue_marginals.json")
    ap.add_argument("--figure", type=Path,
                    default=ROOT / "docs/figures/cmnist_hue_marginals.png")
    ap.add_argument("--replot", action="store_true", help="only redraw the figure from --json")
    a = ap.parse_args()
    if a.replot:
        plot(json.loads(a.json.read_text()), a.figure)
        return
    twos, threes = load_domain("cmnist2"), load_domain("cmnist3")
    real3 = torch.cat([threes.train, threes.test])
    teacher = load_model(a.teacher)
    y = sample(teacher.score(), (a.n_teacher, *real3.shape[1:]), n_steps=18,
               generator=torch.Generator().manual_seed(0))
    y = teacher.normalizer.decode(y).clamp(-1, 1)
    sets = {"real 2s (train)": twos.train, "real 3s (train + test)": real3,
            f"teacher samples ({a.n_teacher}, 18 Heun steps)": y}
    runs = [r for r in a.runs.split(",") if r]
    labels = a.labels.split(",") if a.labels else [Path(r).name for r in runs]
    x = twos.test
    shifts: dict[str, torch.Tensor] = {}
    for run, label in zip(runs, labels, strict=True):
        out = torch.as_tensor(rdmd.translate(run, x))
        sets[f"{label} (held-out 2s)"] = out
        shifts[label] = signed_shift(x, out)
    ref = histogram(dominant_hue(real3))
    res: dict = {"bins_degrees": [360 * i / BINS for i in range(BINS + 1)], "sets": {},
                 "command": " ".join(["python", *sys.argv])}
    for name, imgs in sets.items():
        h = histogram(dominant_hue(imgs))
        tv = 0.5 * sum(abs(p - q) for p, q in zip(h, ref, strict=True))
        res["sets"][name] = {"n": len(imgs), "histogram": h, "tv_to_real_3s": tv}
        print(f"{name:48s} n={len(imgs):4d}  tv to real 3s {tv:.3f}")
    src_bin = (dominant_hue(x) * BINS).long().clamp(0, BINS - 1)
    for label, s in shifts.items():
        by_bin = [float(s[src_bin == b].mean()) if (src_bin == b).any() else None
                  for b in range(BINS)]
        res["sets"][f"{label} (held-out 2s)"].update(
            mean_abs_shift_degrees=float(s.abs().mean()),
            mean_signed_shift_degrees=float(s.mean()),
            signed_shift_by_source_bin=by_bin)
        print(f"{label}: mean |shift| {float(s.abs().mean()):.1f} deg, signed "
              f"{float(s.mean()):+.1f} deg, by source hue bin "
              + " ".join("-" if v is None else f"{v:+.0f}" for v in by_bin))
    res["teacher_sdedit"] = {}
    for name, dom in (("2s", twos), ("3s", threes)):
        for level in [float(v) for v in a.sdedit.split(",") if v]:
            src = dom.test[:100]
            out = torch.as_tensor(rdmd.translate(a.teacher, src, method="sdedit",
                                                 sigma_start=level, n_steps=18, seed=0))
            shift = signed_shift(src, out)
            res["teacher_sdedit"][f"{name} sigma_start {level:g}"] = {
                "mean_signed_shift_degrees": float(shift.mean()),
                "mean_abs_shift_degrees": float(shift.abs().mean()),
                "share_negative": float((shift < 0).double().mean())}
            print(f"teacher SDEdit of held-out {name} from sigma {level:g}: signed "
                  f"{float(shift.mean()):+.1f} deg, |shift| {float(shift.abs().mean()):.1f} deg, "
                  f"{float((shift < 0).double().mean()):.0%} negative")
    a.json.parent.mkdir(parents=True, exist_ok=True)
    a.json.write_text(json.dumps(res, indent=2))
    plot(res, a.figure)
    print(f"wrote {a.json} and {a.figure}")


if __name__ == "__main__":
    run_main(main)

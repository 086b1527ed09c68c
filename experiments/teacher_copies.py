"""Does a teacher copy its training images? A lower FD from a longer-trained teacher on 400
training images could be memorisation rather than learning, and a user should know which.

For each of the teacher's samples (18 Heun steps, the generators' seeds) the pixel distances
to its nearest and second-nearest training target image, ``d1`` and ``d2``; a sample counts as
a copy when ``d1 / d2 < 1/3`` (the criterion of Yoon et al. 2023, "Diffusion probabilistic
models generalize when they fail to memorize"). The held-out real targets, which copy nothing,
give the same figures as the reference:

    python experiments/teacher_copies.py --pair cmnist --teacher runs/cmnist/teacher_5000 \
        --teacher runs/cmnist/teacher_guided --n 250 --guidance 1,2

Writes ``experiments/results/<pair>_teacher_copies.json`` (or ``--json``).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).parent))
from common import run_main  # noqa: E402
from image_ablation import PAIRS, ROOT  # noqa: E402
from teacher_fd_matched import guidance_weights, require_guide, teacher_samples  # noqa: E402

from rdmd.data import load_domain  # noqa: E402
from rdmd.errors import RdmdError  # noqa: E402
from rdmd.models import load_model  # noqa: E402
from rdmd.training.runtime import resolve_device  # noqa: E402

COPY_RATIO = 1 / 3


def copy_stats(x: torch.Tensor, train: torch.Tensor) -> dict[str, float]:
    """Nearest-neighbour figures of ``x`` against ``train`` (pixel l2 over flattened images)."""
    if len(train) < 2:
        raise RdmdError("need at least two training images for a second-nearest distance")
    d = torch.cdist(x.flatten(1).double(), train.flatten(1).double())
    two = d.topk(2, dim=1, largest=False).values
    d1, d2 = two[:, 0], two[:, 1]
    ratio = d1 / d2.clamp_min(1e-12)
    return {"n": len(x), "d1_median": float(d1.median()), "d1_mean": float(d1.mean()),
            "ratio_median": float(ratio.median()),
            "copy_rate": float((ratio < COPY_RATIO).double().mean())}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pair", choices=sorted(PAIRS), default="cmnist")
    ap.add_argument("--teacher", type=Path, action="append", default=None,
                    help="a teacher folder (repeatable; default: the pair's shipped teacher)")
    ap.add_argument("--n", type=int, default=250, help="samples per teacher and setting")
    ap.add_argument("--steps", type=int, default=18, help="Heun steps")
    ap.add_argument("--seed", type=int, default=1000, help="the samples' seed (draw 0's)")
    ap.add_argument("--guidance", default=None,
                    help="comma list of autoguidance weights (teachers with a guide)")
    ap.add_argument("--json", type=Path, default=None, help="where to write the results")
    a = ap.parse_args()
    p = PAIRS[a.pair]
    tgt = load_domain(p["target"])
    n_real = min(a.n, len(tgt.test))
    rows: list[dict[str, Any]] = [{"set": "held-out real targets",
                                   **copy_stats(tgt.test[:n_real], tgt.train)}]
    device, weights = resolve_device("auto"), guidance_weights(a.guidance)
    for t in a.teacher or [p["teacher"]]:
        model = load_model(t.resolve())
        if a.guidance is not None:
            require_guide(model, t)
        for w in weights:
            y = teacher_samples(model, tuple(tgt.shape), a.n, a.steps, a.seed, device, w)
            rows.append({"set": f"{t} (guidance {w or model.guidance:g})",
                         **copy_stats(y, tgt.train)})
    for r in rows:
        print(f"{r['set']}: n {r['n']}, nearest training image at {r['d1_median']:.2f} "
              f"(median), d1/d2 median {r['ratio_median']:.3f}, copies (d1/d2 < 1/3) "
              f"{r['copy_rate']:.3f}", flush=True)
    path = a.json or ROOT / "experiments" / "results" / f"{a.pair}_teacher_copies.json"
    path.write_text(json.dumps({"pair": a.pair, "n_train": len(tgt.train), "rows": rows,
                                "copy_ratio": COPY_RATIO, "command": " ".join(sys.argv)},
                               indent=2))
    print(f"wrote {path}")


if __name__ == "__main__":
    run_main(main)

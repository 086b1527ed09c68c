"""The teacher's Frechet distance under the generators' protocol, so "RDMD at most 1.5x its
teacher" compares like with like (issue 14).

A generator's report scores as many outputs as there are held-out sources (100 on colored
MNIST) against a same-size subset of the real targets; the teacher's own report uses half the
target pool (250). Frechet distances are biased upwards at small ``n`` (colored MNIST's floor:
1.14 at 250, 3.09 at 100), so the two are not comparable. Here the teacher's Heun samples
(18 steps, 35 evaluations) go through the generators' very scoring function
(:func:`rdmd.evaluation.image_translation_metrics`'s FD sets and features), ``--draws``
times with fresh samples:

    python experiments/teacher_fd_matched.py --pair cmnist --draws 5
    python experiments/teacher_fd_matched.py --pair cmnist --teacher runs/cmnist/teacher_hue \
        --json experiments/results/cmnist_teacher_hue_fd_matched.json   # another teacher
    python experiments/teacher_fd_matched.py --pair cmnist --teacher runs/cmnist/teacher_guided \
        --guidance 1,1.5,2,3 --json ...   # a teacher with a guide, at several weights

``--guidance`` (a teacher with an autoguidance guide) and ``--churn`` (EDM's S_churn) each
take a comma list; every combination is scored with the same draws' seeds, so the settings
differ only in the sampler. ``--n`` scores more samples per draw (colored MNIST: 250, the
teacher report's own n, at most half the target images).

Writes ``experiments/results/<pair>_teacher_fd_matched.json`` (or ``--json``).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).parent))
from common import run_main  # noqa: E402
from image_ablation import PAIRS, ROOT  # noqa: E402

from rdmd.data import load_domain  # noqa: E402
from rdmd.errors import RdmdError  # noqa: E402
from rdmd.evaluation import _fd_sets, _feature_fns  # noqa: E402
from rdmd.metrics.image import fd_kid_with_floor  # noqa: E402
from rdmd.models import load_model  # noqa: E402
from rdmd.sampler import Churn, sample  # noqa: E402
from rdmd.training.runtime import resolve_device  # noqa: E402


def guidance_weights(spec: str | None) -> list[float | None]:
    """``--guidance``'s comma list; None: the teacher's own weight."""
    return [None] if spec is None else [float(w) for w in spec.split(",")]


def require_guide(model: Any, teacher: Path) -> None:
    """``--guidance`` needs a teacher that keeps an autoguidance guide."""
    if model.guide is None:
        raise RdmdError(f"--guidance: {teacher} keeps no autoguidance guide "
                        "(train one with --set guide_at=0.5)")


@torch.no_grad()
def teacher_samples(model: Any, shape: tuple[int, ...], n: int, steps: int,
                    seed: int, device: torch.device, guidance: float | None = None,
                    churn: Any = "own") -> torch.Tensor:
    """``guidance`` None and ``churn`` "own": as the teacher's model.json says."""
    den = model.score(guidance).to(device)
    churn = model.churn if churn == "own" else churn
    g = torch.Generator().manual_seed(seed)
    return torch.cat([sample(lambda y, s: den(y, s), (len(c), *shape), steps, g, device,
                             churn=churn).cpu()
                      for c in torch.split(torch.arange(n), 250)]).clamp(-1, 1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pair", choices=sorted(PAIRS), default="cmnist")
    ap.add_argument("--draws", type=int, default=5)
    ap.add_argument("--steps", type=int, default=18, help="Heun steps (2 * steps - 1 calls)")
    ap.add_argument("--teacher", type=Path, default=None,
                    help="a teacher of the pair's target other than the shipped one")
    ap.add_argument("--guidance", default=None,
                    help="comma list of autoguidance weights (a teacher with a guide; "
                         "1: the plain network); default: the teacher's own")
    ap.add_argument("--churn", default=None,
                    help="comma list of EDM S_churn values (0: deterministic Heun); "
                         "default: the teacher's own sampler")
    ap.add_argument("--n", type=int, default=None,
                    help="samples per draw (default: as many as the held-out sources, the "
                         "generators' n; at most half the target images)")
    ap.add_argument("--json", type=Path, default=None, help="where to write the results")
    a = ap.parse_args()
    weights = guidance_weights(a.guidance)
    churns: list[Any] = ["own"] if a.churn is None else [
        Churn(float(c)) if float(c) else None for c in a.churn.split(",")]
    p = PAIRS[a.pair]
    src, tgt = load_domain(p["source"]), load_domain(p["target"])
    n = a.n or len(src.test)  # default: as many as a generator's outputs
    feats, net, name = _feature_fns(str(p["classifier"]))
    teacher = (a.teacher or p["teacher"]).resolve()
    model, device = load_model(teacher), resolve_device("auto")  # CUDA when present
    if a.guidance is not None:
        require_guide(model, teacher)
    settings = []
    for w in weights:
        for c in churns:
            rows = []
            for d in range(a.draws):
                t0 = time.perf_counter()
                y = teacher_samples(model, tuple(tgt.shape), n, a.steps, 1000 + d, device,
                                    w, c)
                gen, real_a, real_b = _fd_sets(y, tgt)
                res = fd_kid_with_floor(feats, gen, real_a, real_b)
                rate = float((net(y).argmax(1) == p["target_class"]).float().mean())
                rows.append({"draw": d, "seed": 1000 + d, "n": len(gen), "fd": res["fd"],
                             "fd_floor": res["fd_floor"], "target_accuracy": rate,
                             "seconds": time.perf_counter() - t0})
                print(f"guidance {w or model.guidance:g}, churn {_churn(model, c):g}, draw {d}:"
                      f" {name} {res['fd']:.3f} (floor {res['fd_floor']:.3f}, n = {len(gen)}),"
                      f" target rate {rate:.3f}", flush=True)
            fds = [r["fd"] for r in rows]
            settings.append({"guidance": w or model.guidance, "churn": _churn(model, c),
                             "draws": rows, "fd_mean": sum(fds) / len(fds),
                             "fd_min": min(fds), "fd_max": max(fds),
                             "target_accuracy_mean": sum(r["target_accuracy"] for r in rows)
                             / len(rows)})
    where = teacher.relative_to(ROOT) if teacher.is_relative_to(ROOT) else teacher
    # the first setting's numbers at the top level (the file's format before the sweeps)
    out = {"pair": a.pair, "metric": name, "teacher": str(where),
           "sampler_steps": a.steps, "n": n, **{k: v for k, v in settings[0].items()
                                                 if k not in ("guidance", "churn")},
           "settings": settings, "command": " ".join(sys.argv)}
    path = a.json or ROOT / "experiments" / "results" / f"{a.pair}_teacher_fd_matched.json"
    path.write_text(json.dumps(out, indent=2))
    for st in settings:
        print(f"{name} of the teacher at n = {n}, guidance {st['guidance']:g}, churn "
              f"{st['churn']:g}: mean {st['fd_mean']:.3f} ({st['fd_min']:.3f}-"
              f"{st['fd_max']:.3f}) over {a.draws} draws, target rate "
              f"{st['target_accuracy_mean']:.3f}")
    print(f"wrote {path}")


def _churn(model: Any, c: Any) -> float:
    churn = model.churn if c == "own" else c
    return churn.s_churn if churn is not None else 0.0


if __name__ == "__main__":
    run_main(main)

"""Score a distillation run's generator at its kept checkpoints, and the uniform average of
their weights (Polyak averaging after the fact), with the run's own evaluation protocol.

Why: along an RDMD run the held-out Frechet distance moves by several units between
checkpoints 40 iterations apart (experiments/eval_curves.py). If that is the generator
oscillating around a good solution, an average of late weights should sit near the bottom
of the swings without choosing a checkpoint on the held-out set (which would flatter it).
An EMA of the generator (``--set ema_decay=D``) is the same idea during training; this asks
the question of a finished run at no training cost.

    python experiments/checkpoint_average.py --run runs/cmnist/rdmd_lam0.1 \\
        --steps 200,300,400 --json experiments/results/cmnist_ckpt_average_lam0.1.json
    python experiments/checkpoint_average.py --run R --steps 100,200,300,400 --write R_avg
        # a model folder holding the averaged generator, its metrics.json and plots
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path
from typing import Any

import torch

from rdmd import checkpoint as ckpt
from rdmd.config import DistillConfig, config_from_saved
from rdmd.data import load_domain
from rdmd.errors import RdmdError
from rdmd.evaluation import evaluate_translation, write_translation_report
from rdmd.models import load_model, save_model
from rdmd.training.rundir import read_run

sys.path.insert(0, str(Path(__file__).parent))
from common import run_main  # noqa: E402

PREFIX = "module.generator."
KEYS = ("l2", "ssim", "hue_difference", "target_accuracy")


def generator_weights(run_dir: Path, step: int) -> dict[str, torch.Tensor]:
    """The generator's weights at ``step``, named as in its generator network (``Model.net``)."""
    path = run_dir / "checkpoints" / f"step_{step:08d}"
    if not path.is_dir():
        kept = sorted(p.name for p in (run_dir / "checkpoints").glob("step_*"))
        raise RdmdError(f"{run_dir} has no checkpoint at step {step} (kept: "
                        f"{', '.join(kept) or 'none'})")
    tensors, _ = ckpt.load_checkpoint(path)
    out = {k[len(PREFIX):]: v for k, v in tensors.items() if k.startswith(PREFIX)}
    if not out:
        raise RdmdError(f"{path} holds no generator weights ({PREFIX}*): not an RDMD run")
    return out


def average(states: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Uniform average of floating-point weights; other tensors from the last state."""
    out = {}
    for k, v in states[-1].items():
        out[k] = (torch.stack([s[k].float() for s in states]).mean(0).to(v.dtype)
                  if v.is_floating_point() else v)
    return out


def _loaded(run_dir: Path, state: dict[str, torch.Tensor]) -> tuple[Any, ...]:
    """The run's generator holding ``state``, its config and its data."""
    model = load_model(run_dir)
    missing, unexpected = model.net.load_state_dict(state, strict=False)
    if unexpected or missing:
        raise RdmdError(f"checkpoint weights do not fit {run_dir}'s generator "
                        f"(missing {missing[:2]}, unexpected {unexpected[:2]})")
    run = read_run(run_dir)
    cfg = config_from_saved(DistillConfig, run["config"], run_dir / "config.json")
    return model, cfg, load_domain(run["source"]), load_domain(run["target"])


def score(run_dir: Path, state: dict[str, torch.Tensor]) -> dict[str, Any]:
    """The run's final-evaluation protocol, with ``state`` loaded into its generator."""
    model, cfg, src, tgt = _loaded(run_dir, state)
    res = evaluate_translation(model.net.eval(), model.normalizer, src, tgt, cfg)
    return {k: v for k, v in res.items() if isinstance(v, (int, float))}


def write_model(run_dir: Path, state: dict[str, torch.Tensor], steps: list[int],
                out: Path) -> dict[str, Any]:
    """A model folder like the run's, holding ``state``: weights, ``model.json`` (which says
    they are an average of which checkpoints), the run's config and log, and the run's
    final report (metrics.json, plots) for these weights."""
    if (out / "model.json").is_file():
        raise RdmdError(f"{out} already holds a model; give a new folder")
    model, cfg, src, tgt = _loaded(run_dir, state)
    out.mkdir(parents=True, exist_ok=True)
    for name in ("config.json", "log.csv"):
        if (run_dir / name).is_file():
            shutil.copy2(run_dir / name, out / name)
    meta = {k: v for k, v in model.meta.items() if k != "format_version"}
    meta["weights_average"] = {"run": run_dir.name, "steps": steps}
    res = write_translation_report(out, model.net.eval(), model.normalizer, src, tgt, cfg)
    save_model(out, model.net, meta)  # model.json last: a folder with it is complete
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", required=True, help="a finished fixed-lambda distillation run")
    ap.add_argument("--steps", required=True,
                    help="comma-separated kept checkpoint steps: each is scored, then their "
                         "average")
    ap.add_argument("--json", default=None)
    ap.add_argument("--write", default=None, metavar="OUT",
                    help="also write the averaged generator as a model folder OUT")
    a = ap.parse_args()
    run_dir = Path(a.run)
    meta = json.loads((run_dir / "model.json").read_text())
    if meta.get("lam_range") is not None:
        raise RdmdError("a lambda-conditioned run is scored per lambda: not supported here")
    if meta.get("kind") != "image":  # vector runs are scored on fresh draws by another path
        raise RdmdError(f"{run_dir} is not an image run: this script scores image generators")
    steps = [int(s) for s in a.steps.split(",") if s]
    states = [generator_weights(run_dir, s) for s in steps]
    rows = []
    for s, st in zip(steps, states, strict=True):
        rows.append({"weights": f"step {s}", **score(run_dir, st)})
    if len(states) > 1:
        rows.append({"weights": f"average of steps {a.steps}", **score(run_dir, average(states))})
    shown = [k for k in rows[0] if k.startswith(("fd_", "w2")) and not k.endswith("_n")]
    for r in rows:
        print(f"{r['weights']:>28}: " + " ".join(f"{k} {r[k]:.4g}" for k in (*shown, *KEYS)
                                                 if k in r))
    if a.write:
        write_model(run_dir, average(states), steps, Path(a.write))
        print(f"wrote the average of steps {a.steps} to {a.write}")
    if a.json:
        Path(a.json).parent.mkdir(parents=True, exist_ok=True)
        Path(a.json).write_text(json.dumps({"command": " ".join(sys.argv), "run": str(run_dir),
                                            "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    run_main(main)

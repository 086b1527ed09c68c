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
from rdmd.errors import RdmdError
from rdmd.evaluation import evaluate_translation, write_translation_report
from rdmd.models import load_model, save_model
from rdmd.training.distill import load_pair
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


def parse_steps(text: str) -> list[int]:
    """``100,200,300`` -> ``[100, 200, 300]``; anything else is a one-line user error."""
    try:
        steps = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        steps = []
    if not steps:
        raise RdmdError(f"checkpoint steps must be comma-separated iterations, got {text!r}")
    return steps


def _teacher_meta(run: dict[str, Any], model: Any) -> dict[str, Any]:
    """The teacher's metadata, all :func:`rdmd.training.distill.load_pair` reads; the
    generator's own where the teacher's folder is gone."""
    path = Path(run["teacher"]) / "model.json"
    return json.loads(path.read_text()) if path.is_file() else model.meta


class Run:
    """A finished image run, loaded once: its generator (whose weights are swapped per
    checkpoint), config and data."""

    def __init__(self, run_dir: Path) -> None:
        if not (run_dir / "model.json").is_file():
            raise RdmdError(f"{run_dir} holds no finished model (model.json)")
        self.dir = run_dir
        self.model = load_model(run_dir)
        if self.model.lam_range is not None:
            raise RdmdError("a lambda-conditioned run is scored per lambda: not supported here")
        if self.model.meta.get("kind") != "image":  # vector runs score fresh draws elsewhere
            raise RdmdError(f"{run_dir} is not an image run: this script scores image "
                            "generators")
        run = read_run(run_dir)
        self.cfg = config_from_saved(DistillConfig, run["config"], run_dir / "config.json")
        self.src, self.tgt = load_pair(run, self.cfg, _teacher_meta(run, self.model))

    def holding(self, state: dict[str, torch.Tensor]) -> torch.nn.Module:
        """The generator with ``state`` loaded, in eval mode."""
        net = self.model.net
        missing, unexpected = net.load_state_dict(state, strict=False)
        if unexpected or missing:
            raise RdmdError(f"checkpoint weights do not fit {self.dir}'s generator "
                            f"(missing {missing[:2]}, unexpected {unexpected[:2]})")
        return net.eval()

    def score(self, state: dict[str, torch.Tensor]) -> dict[str, Any]:
        """The run's final-evaluation protocol, with ``state`` loaded into its generator."""
        res = evaluate_translation(self.holding(state), self.model.normalizer, self.src,
                                   self.tgt, self.cfg)
        return {k: v for k, v in res.items() if isinstance(v, (int, float))}

    def write(self, state: dict[str, torch.Tensor], steps: list[int],
              out: Path) -> dict[str, Any]:
        """A model folder like the run's, holding ``state``: weights, ``model.json`` (which
        says they average which checkpoints), the run's config and log, and the run's final
        report (metrics.json, plots) for these weights; returns those metrics."""
        if (out / "model.json").is_file():
            raise RdmdError(f"{out} already holds a model; give a new folder")
        net = self.holding(state)
        out.mkdir(parents=True, exist_ok=True)
        for name in ("config.json", "log.csv"):
            if (self.dir / name).is_file():
                shutil.copy2(self.dir / name, out / name)
        meta = {k: v for k, v in self.model.meta.items() if k != "format_version"}
        meta["weights_average"] = {"run": self.dir.name, "steps": steps}
        res = write_translation_report(out, net, self.model.normalizer, self.src, self.tgt,
                                       self.cfg)
        save_model(out, net, meta)  # model.json last: a folder with it is complete
        return {k: v for k, v in res.items() if isinstance(v, (int, float))}


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
    run = Run(Path(a.run))
    steps = parse_steps(a.steps)
    states = [generator_weights(run.dir, s) for s in steps]
    rows = [{"weights": f"step {s}", **run.score(st)}
            for s, st in zip(steps, states, strict=True)]
    if len(states) > 1 or a.write:
        avg = average(states)
        res = run.write(avg, steps, Path(a.write)) if a.write else run.score(avg)
        rows.append({"weights": f"average of steps {a.steps}", **res})
    shown = [k for k in rows[0] if k.startswith(("fd_", "w2")) and not k.endswith("_n")]
    for r in rows:
        print(f"{r['weights']:>28}: " + " ".join(f"{k} {r[k]:.4g}" for k in (*shown, *KEYS)
                                                 if k in r))
    if a.write:
        print(f"wrote the average of steps {a.steps} to {a.write}")
    if a.json:
        Path(a.json).parent.mkdir(parents=True, exist_ok=True)
        Path(a.json).write_text(json.dumps({"command": " ".join(sys.argv), "run": str(run.dir),
                                            "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    run_main(main)

"""The whole pipeline on the second image pair, Fashion-MNIST sneaker -> ankle boot (issue 14).

Runs the project's own commands, each resumed if interrupted and reused if finished (a folder
holding another run is refused in one line), in this order:

1. ``rdmd train-classifier --data fmnist`` (features of ``fd_cnn_fmnist``, not FID);
2. ``rdmd train-teacher --target fmnist-boot --config configs/fmnist_teacher.toml``;
3. ``rdmd train-domain-classifier`` (EGSDE's expert);
4. ``rdmd distill --source fmnist-sneaker --lam-range 0.05:1`` (one generator for the front);
5. ``rdmd sweep --config configs/fmnist_sweep.toml`` (RDMD vs SDEdit, ILVR, EGSDE; Fig. 4-5),
   plots copied to ``docs/figures/fmnist_*`` and the table to ``experiments/results/``.

    python experiments/fmnist_pipeline.py [--stages 1,2,3,4,5] [--rdmd-steps 1600]
    python experiments/fmnist_pipeline.py --ship   # copy the finished models to
                                                   # src/rdmd/pretrained/fmnist

Each stage needs the ones before it. A stage that would run for hours on a CPU can be stopped
(Ctrl-C checkpoints) and continued by the same command.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from cmnist_models import execute, ship  # noqa: E402
from common import run_main  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RUNS = "runs/fmnist"
SHIP = ROOT / "src" / "rdmd" / "pretrained" / "fmnist"


def plan(rdmd_steps: int) -> list[tuple[list[str], Path]]:
    clf, teacher = f"{RUNS}/classifier", f"{RUNS}/teacher"
    return [
        (["train-classifier", "--data", "fmnist", "--epochs", "5", "--out", clf],
         ROOT / clf),
        (["train-teacher", "--target", "fmnist-boot", "--config",
          "configs/fmnist_teacher.toml", "--set", f"classifier={clf}", "--out", teacher],
         ROOT / teacher),
        (["train-domain-classifier", "--source", "fmnist-sneaker", "--target", "fmnist-boot",
          "--steps", "1500", "--out", f"{RUNS}/domain_classifier"],
         ROOT / RUNS / "domain_classifier"),
        (["distill", "--source", "fmnist-sneaker", "--teacher", teacher, "--lam-range",
          "0.05:1", "--config", "configs/fmnist_rdmd.toml", "--set", f"steps={rdmd_steps}",
          "--set", "fake_steps=5",  # the image recipe (docs/images.md)
          "--set", f"classifier={clf}", "--set", "target_class=9", "--out",
          f"{RUNS}/rdmd_cond"], ROOT / RUNS / "rdmd_cond"),
    ]


def sweep() -> None:
    from rdmd.sweep import run_sweep

    out = ROOT / RUNS / "sweep"
    run_sweep(ROOT / "configs" / "fmnist_sweep.toml", out, progress=False)
    figs, res = ROOT / "docs" / "figures", ROOT / "experiments" / "results"
    for name in ("fig4_tradeoff.png", "fig5_grid.png"):
        if (out / name).is_file():
            shutil.copy(out / name, figs / f"fmnist_{name.split('_')[0]}_{name.split('_', 1)[1]}")
    for name in ("table.md", "summary.json"):
        if (out / name).is_file():
            shutil.copy(out / name, res / f"fmnist_sweep_{name}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--stages", default="1,2,3,4,5")
    ap.add_argument("--rdmd-steps", type=int, default=1600)
    ap.add_argument("--ship", action="store_true")
    a = ap.parse_args()
    steps = plan(a.rdmd_steps)
    if a.ship:
        for _, out in steps:
            dest = SHIP / out.name
            if out.name in ("classifier", "domain_classifier"):
                shutil.copytree(out, dest, dirs_exist_ok=True)
            else:
                ship(out, dest)
        print(json.dumps({p.name: sorted(x.name for x in p.iterdir())
                          for p in SHIP.iterdir() if p.is_dir()}, indent=1))
        return
    for stage in (int(s) for s in a.stages.split(",")):
        if stage <= len(steps):
            execute(*steps[stage - 1])
        else:
            sweep()


if __name__ == "__main__":
    run_main(main)

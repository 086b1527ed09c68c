"""Train the small 2-D models that ``rdmd serve``'s 2-D tab ships (Gaussian -> 8 Gaussians).

Runs the project's own commands, the same a user would type, then copies each model's
weights, ``model.json``, ``config.json`` and ``metrics.json`` into
``src/rdmd/pretrained/twod`` (about 350 kB per model):

    python experiments/serve_twod_models.py --work runs/serve_twod
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHIP = ROOT / "src" / "rdmd" / "pretrained" / "twod"
KEEP = ("model.safetensors", "model.json", "metrics.json", "config.json")
LAMS = ("0", "0.1", "0.5")
# The best 2-D recipe measured in docs/results.md (sigma_g 10, 50k training samples).
TEACHER = ["train-teacher", "--target", "8gaussians", "--set", "n_train=50000"]
RDMD = ["distill", "--source", "gaussian", "--sigma-g", "10", "--set", "n_train=50000"]


def rdmd(args: list[str]) -> None:
    print("rdmd", " ".join(args), flush=True)
    subprocess.run([sys.executable, "-m", "rdmd.cli", *args, "--no-progress"], check=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", default="runs/serve_twod", help="folder for the training runs")
    args = ap.parse_args()
    work = Path(args.work)
    teacher = work / "teacher_8gaussians"
    if not (teacher / "model.json").is_file():
        rdmd([*TEACHER, "--out", str(teacher)])
    for lam in LAMS:
        out = work / f"rdmd_lam{lam}"
        if not (out / "model.json").is_file():
            rdmd([*RDMD, "--teacher", str(teacher), "--lam", lam, "--out", str(out)])
        dst = SHIP / f"8gaussians_lam{lam}"
        dst.mkdir(parents=True, exist_ok=True)
        for name in KEEP:
            shutil.copy2(out / name, dst / name)
    print(f"shipped {len(LAMS)} models to {SHIP}")


if __name__ == "__main__":
    main()

"""The fake score's training noise levels (``fake_sigma``): lognormal, loguniform, shared.

The DM term queries the fake score log-uniformly on [0.02, 80] (a quarter of its queries above
sigma = 10), while EDM's log-normal training levels put 0.2% of the fake score's training
there. This runs the same distillation with each of the three ``fake_sigma`` values:

* ``8g``: Gaussian -> 8 Gaussians, the package defaults (teacher 10k steps, RDMD 10k
  iterations, lambda 0.02, sigma_g 1, generator EMA 0.999), one shared teacher; reports
  ``mode_outliers`` (share of outputs farther than 3 std from every mode), crossings, W2/floor;
* ``d8``: Theorem 3.1 in d = 8 (``thm31_gaussian_ot.target_spec(8)``, lambda 0.02, 8k
  iterations, generator EMA 0.999), the relative gap to the closed-form OT map;
* ``cmnist``: colored MNIST 2 -> 3 from the shipped teacher (``configs/cmnist_rdmd.toml``,
  lambda 0.05), a SHORT run (``--cmnist-steps``), FD over the shipped classifier's features.

    python experiments/fake_sigma.py --parts 8g,d8,cmnist

Finished runs are reused (their saved config and metrics are read back), so an interrupted
experiment is continued by the same command. Results are rewritten after every run.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).parent))
from common import timed  # noqa: E402
from thm31_gaussian_ot import target_spec  # noqa: E402

from rdmd.config import read_config_file  # noqa: E402
from rdmd.training import distill, train_teacher  # noqa: E402

PKG = Path(__file__).resolve().parents[1] / "src" / "rdmd" / "pretrained" / "cmnist"
VALUES = ("lognormal", "loguniform", "shared")
COLUMNS = {
    "8g": ["fake_sigma", "seed", "steps", "mode_outliers", "crossings", "w2_sq", "w2_over_floor",
           "transport_cost", "ot_gap", "wall_s"],
    "d8": ["fake_sigma", "seed", "steps", "gaussian_ot_gap", "w2_over_floor", "transport_cost",
           "wall_s"],
    "cmnist": ["fake_sigma", "seed", "steps", "fd_cnn_cmnist", "fd_cnn_cmnist_floor",
               "target_accuracy", "l2", "ssim", "wall_s"],
}



def _record(out: Path, wall_s: float) -> dict[str, Any]:
    """What the run directory says it did: its whole resolved config and its metrics."""
    run = json.loads((out / "config.json").read_text())
    return {"run_dir": str(out), "run": run, "metrics": json.loads(
        (out / "metrics.json").read_text()), "wall_s": wall_s}


def teacher(target: str, out: Path, steps: int, prog: bool) -> dict[str, Any]:
    cfg = {"steps": steps}
    wall = timed(lambda: train_teacher(target, out, cfg, resume=(out / "config.json").is_file(),
                                        progress=prog), out)
    return _record(out, wall)


def rdmd_run(source: str, teacher_dir: Path, out: Path, layers: list[dict[str, Any]],
             prog: bool) -> dict[str, Any]:
    wall = timed(lambda: distill(source, teacher_dir, out, layers,
                                  resume=(out / "config.json").is_file(), progress=prog), out)
    return _record(out, wall)


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return "" if v is None else str(v)


def write_results(res: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.with_suffix(".json").write_text(json.dumps(res, indent=2))
    lines = [f"# fake_sigma ({res['command']})", "",
             f"threads: {res['threads']}; every run's full config is in the .json", ""]
    for part, block in res["parts"].items():
        cols = COLUMNS[part]
        lines += [f"## {part}: {block['setting']}", ""]
        if "teacher" in block:
            tm = block["teacher"]["metrics"]
            lines += ["teacher: " + ", ".join(f"{k} {_fmt(tm.get(k))}" for k in
                                              ("w2_over_floor", "mode_outliers") if k in tm)
                      + f", wall {_fmt(block['teacher']['wall_s'])} s", ""]
        lines += ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
        for r in block["runs"]:
            row = {**r["metrics"], "fake_sigma": r["run"]["config"]["fake_sigma"],
                   "seed": r["run"]["config"]["seed"], "steps": r["run"]["config"]["steps"],
                   "wall_s": r["wall_s"]}
            lines.append("| " + " | ".join(_fmt(row.get(c)) for c in cols) + " |")
        lines.append("")
    path.with_suffix(".md").write_text("\n".join(lines))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--parts", default="8g,d8,cmnist")
    ap.add_argument("--values", default=",".join(VALUES))
    ap.add_argument("--cmnist-values", default="lognormal,shared")
    ap.add_argument("--seeds", default="0")
    ap.add_argument("--teacher-steps", type=int, default=10_000)
    ap.add_argument("--steps-8g", type=int, default=10_000)
    ap.add_argument("--steps-d8", type=int, default=8000)
    ap.add_argument("--cmnist-steps", type=int, default=250)
    ap.add_argument("--lam-8g", type=float, default=0.02)
    ap.add_argument("--lam-d8", type=float, default=0.02)
    ap.add_argument("--lam-cmnist", type=float, default=0.05)
    ap.add_argument("--runs", default="runs/fake_sigma")
    ap.add_argument("--results", default="experiments/results")
    ap.add_argument("--tag", default="")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--no-progress", action="store_true")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    prog = not a.no_progress
    runs = Path(a.runs)
    seeds = [int(s) for s in a.seeds.split(",")]
    res: dict[str, Any] = {
        "command": "python " + " ".join(sys.argv), "threads": a.threads,
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"), "torch": torch.__version__,
        "parts": {}}
    out_path = Path(a.results) / f"fake_sigma{a.tag}"
    for part in a.parts.split(","):
        if part == "8g":
            t = teacher("8gaussians", runs / "8g" / "teacher", a.teacher_steps, prog)
            block = {"setting": f"gaussian -> 8gaussians, lam {a.lam_8g:g}, {a.steps_8g} "
                                f"iterations, other keys package defaults", "teacher": t,
                     "runs": []}
            res["parts"][part] = block
            for seed in seeds:
                for v in a.values.split(","):
                    out = runs / "8g" / f"{v}_s{seed}"
                    block["runs"].append(rdmd_run("gaussian", runs / "8g" / "teacher", out, [
                        {"lam": a.lam_8g, "steps": a.steps_8g, "fake_sigma": v, "seed": seed}],
                        prog))
                    write_results(res, out_path)
        elif part == "d8":
            t = teacher(target_spec(8), runs / "d8" / "teacher", a.teacher_steps, prog)
            block = {"setting": f"gaussian:d=8 -> target_spec(8), lam {a.lam_d8:g}, "
                                f"{a.steps_d8} iterations, generator EMA 0.999",
                     "teacher": t, "runs": []}
            res["parts"][part] = block
            for seed in seeds:
                for v in a.values.split(","):
                    out = runs / "d8" / f"{v}_s{seed}"
                    block["runs"].append(rdmd_run("gaussian:d=8", runs / "d8" / "teacher", out, [
                        {"lam": a.lam_d8, "steps": a.steps_d8, "ema_decay": 0.999,
                         "fake_sigma": v, "seed": seed}], prog))
                    write_results(res, out_path)
        elif part == "cmnist":
            cfg_file = Path(__file__).resolve().parents[1] / "configs" / "cmnist_rdmd.toml"
            block = {"setting": f"cmnist2 -> 3, shipped teacher, {cfg_file.name}, lam "
                                f"{a.lam_cmnist:g}, SHORT run of {a.cmnist_steps} iterations "
                                f"(the config's full run is 800)", "runs": []}
            res["parts"][part] = block
            for seed in seeds:
                for v in a.cmnist_values.split(","):
                    out = runs / "cmnist" / f"{v}_n{a.cmnist_steps}_s{seed}"
                    block["runs"].append(rdmd_run("cmnist2", PKG / "teacher", out, [
                        read_config_file(cfg_file),
                        {"lam": a.lam_cmnist, "steps": a.cmnist_steps, "fake_sigma": v,
                         "seed": seed, "classifier": str(PKG / "classifier"),
                         "target_class": 3}], prog))
                    write_results(res, out_path)
        else:
            raise SystemExit(f"unknown part {part!r}")
    write_results(res, out_path)
    print(out_path.with_suffix(".md").read_text())


if __name__ == "__main__":
    main()

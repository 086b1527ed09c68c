"""The OT start and the teacher's noise levels on Gaussian -> 8 Gaussians (docs/twod.md,
"Starting at the OT map"): one row per setting, each the `rdmd` commands a user would type.

Teacher rows train `rdmd train-teacher --target 8gaussians`; generator rows distil
`rdmd distill --source gaussian` from the teacher their row names. Every key a row depends on
is pinned, so the rows reproduce whatever the package defaults become. Rows run one after
another (`--rows a,b`); `--collect` rebuilds the table from the run folders.

    python experiments/twod_ot_start.py --list
    python experiments/twod_ot_start.py --rows t_pm-1.2,p3 --runs /work/twod_runs/ots
    python experiments/twod_ot_start.py --collect --runs /work/twod_runs/ots \
        --results experiments/results/twod_ot_start.json
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

#: teacher rows: keys over the 2-D defaults (the encoder and 4000 steps are pinned, and the
#: unguided deterministic sampler these rows were measured with, before the twelfth
#: session's guided teacher)
UNGUIDED = {"guide_at": 0.0, "sample_churn": 0.0}
TEACHERS: dict[str, dict[str, Any]] = {
    f"t_pm{pm}": {"steps": 4000, "encoder": [64, 128, 128, 128], "p_mean": pm, **UNGUIDED}
    for pm in (-0.6, -1.2, -1.8, -2.4, -3.0)
} | {
    f"t_ps{ps}": {"steps": 4000, "encoder": [64, 128, 128, 128], "p_mean": -1.8, "p_std": ps,
                  **UNGUIDED}
    for ps in (0.8, 1.6)
}
#: what every generator row pins (the tenth session's 2-D defaults, which the OT start
#: rows change in the keys they name)
BASE = {"batch_size": 512, "lr_generator": 1e-4, "lr_schedule": "cosine",
        "generator_fourier": [256, 3.0], "lam": 0.02, "ema_decay": 0.999}
#: generator rows: (teacher row, keys over BASE)
GENERATORS: dict[str, tuple[str, dict[str, Any]]] = {
    "g_tenth": ("t_pm-1.2", {"steps": 4000, "ot_start": 0}),
    "r3": ("t_pm-1.2", {"steps": 1000, "ot_start": 3000, "ot_start_batch": 512,
                        "ema_decay": 0.0}),
    "r1": ("t_pm-1.2", {"steps": 1000, "ot_start": 4000, "ot_start_batch": 512,
                        "ema_decay": 0.0}),
    "r1_ema": ("t_pm-1.2", {"steps": 1000, "ot_start": 4000, "ot_start_batch": 512}),
    "r2": ("t_pm-1.2", {"steps": 2000, "ot_start": 4000, "ot_start_batch": 512,
                        "ema_decay": 0.0}),
    "p1": ("t_pm-1.2", {"steps": 1000, "ot_start": 8000, "ot_start_batch": 256}),
    "p2": ("t_pm-1.2", {"steps": 1000, "ot_start": 8000, "ot_start_batch": 256,
                        "ema_decay": 0.0}),
    "p3": ("t_pm-1.2", {"steps": 2000, "ot_start": 8000, "ot_start_batch": 256}),
    "p4": ("t_pm-1.2", {"steps": 1000, "ot_start": 12000, "ot_start_batch": 256}),
    "g_pm-1.8": ("t_pm-1.8", {"steps": 2000, "ot_start": 8000, "ot_start_batch": 256}),
    "g_pm-3.0": ("t_pm-3.0", {"steps": 2000, "ot_start": 8000, "ot_start_batch": 256}),
    "q_1500": ("t_pm-1.8", {"steps": 1500, "ot_start": 6000, "ot_start_batch": 256}),
    "s3_6k": ("t_pm-1.8", {"steps": 2000, "ot_start": 6000, "ot_start_batch": 128,
                           "batch_size": 256}),
    "s1": ("t_pm-1.8", {"steps": 2000, "ot_start": 8000, "ot_start_batch": 128}),
    "s2": ("t_pm-1.8", {"steps": 2000, "ot_start": 8000, "ot_start_batch": 128,
                        "batch_size": 256}),
    "g_ps0.8": ("t_ps0.8", {"steps": 2000, "ot_start": 8000, "ot_start_batch": 128,
                            "batch_size": 256}),
}
KEYS = ("mode_outliers_stable", "mode_outliers_stable_se", "mode_width_stable",
        "mode_width_stable_true", "log_density_stable", "log_density_stable_true",
        "w2_over_floor_stable", "w2_over_floor_stable_se", "crossings", "ot_gap")


def sets(keys: dict[str, Any]) -> list[str]:
    """``--set key=value`` pairs that read the same typed into a shell (no spaces)."""
    def fmt(v: Any) -> str:
        return v if isinstance(v, str) else json.dumps(v, separators=(",", ":"))

    return [a for k, v in keys.items() for a in ("--set", f"{k}={fmt(v)}")]


def commands(row: str, runs: Path) -> list[list[str]]:
    """The commands of a row (its teacher's first, when that is not trained yet)."""
    if row in TEACHERS:
        return [["rdmd", "train-teacher", "--target", "8gaussians", "--out", str(runs / row),
                 "--no-progress", *sets(TEACHERS[row])]]
    teacher, keys = GENERATORS[row]
    cmds = [] if (runs / teacher / "model.json").is_file() else commands(teacher, runs)
    return cmds + [["rdmd", "distill", "--source", "gaussian", "--teacher", str(runs / teacher),
                    "--out", str(runs / row), "--no-progress", *sets({**BASE, **keys})]]


def teacher_width(run: Path) -> dict[str, float]:
    """Off-mode share and mode width of 12000 of a teacher's samples (32 Heun steps, seed
    3), for teacher runs whose reports predate ``mode_width``."""
    import numpy as np
    import torch

    from rdmd import metrics
    from rdmd.models import load_model
    from rdmd.sampler import sample

    model = load_model(run)
    y = model.normalizer.decode(sample(model.denoiser, (12000, 2), n_steps=32,
                                       generator=torch.Generator().manual_seed(3))).numpy()
    info = json.loads((run / "model.json").read_text()).get("target_info") or {}
    c = np.asarray(info.get("centres") or [[4 * np.cos(a), 4 * np.sin(a)]
                                           for a in np.arange(8) * np.pi / 4])
    std = float(info.get("std", 0.4))
    return {"mode_outliers_12k_seed3": metrics.mode_outlier_share(y, c, std),
            "mode_width_12k_seed3": metrics.mode_width(y, c, std)}


def collect(runs: Path) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for row in [*TEACHERS, *GENERATORS]:
        m = runs / row / "metrics.json"
        if m.is_file():
            res = json.loads(m.read_text())
            out[row] = {k: res[k] for k in KEYS if k in res}
            if row in GENERATORS:
                out[row]["teacher"], out[row]["keys"] = GENERATORS[row]
            else:
                out[row].update(teacher_width(runs / row))
            start = json.loads((runs / row / "model.json").read_text()).get("start")
            if start:
                out[row]["start_s"] = start["seconds"]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", default="")
    ap.add_argument("--runs", default="runs/twod_ot_start")
    ap.add_argument("--list", action="store_true", help="print every row's commands")
    ap.add_argument("--collect", action="store_true")
    ap.add_argument("--results", default="experiments/results/twod_ot_start.json")
    a = ap.parse_args()
    runs = Path(a.runs)
    if a.list:
        for row in [*TEACHERS, *GENERATORS]:
            print(f"# {row}")
            for cmd in commands(row, Path("RUNS")):
                print(" ".join(cmd))
        return
    rdmd = str(Path(sys.executable).with_name("rdmd"))
    for row in filter(None, a.rows.split(",")):
        if row not in TEACHERS and row not in GENERATORS:
            sys.exit(f"twod_ot_start: no row {row!r} (see --list)")
        for cmd in commands(row, runs):
            print("$", " ".join(cmd), flush=True)
            subprocess.run([rdmd, *cmd[1:]], check=True, env=os.environ)
    if a.collect:
        res = collect(runs)
        Path(a.results).write_text(json.dumps(res, indent=1) + "\n")
        for row, r in res.items():
            print(row, {k: round(v, 4) for k, v in r.items() if isinstance(v, float)})


if __name__ == "__main__":
    main()

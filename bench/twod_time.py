"""Wall time of a 2-D built-in end to end with the defaults: teacher, then RDMD (issue 15's
"teacher plus RDMD in at most 3 minutes" figure, on 8 Gaussians unless --target), with the
measures the times buy.

Runs the two commands a user types, with no other flag, as subprocesses (a fresh interpreter
each, as a user pays it), and prints each one's wall time including its final evaluation, then
the off-mode share, the stable W2 ratio and the crossings of both. Time it on idle cores only.

    python bench/twod_time.py --out /tmp/twod_time [--json bench/results_twod_time.json]
    python bench/twod_time.py --out /tmp/twod_time --teacher-set steps=4000 --rdmd-set lam=0.05
    python bench/twod_time.py --out /tmp/twod_time --target swissroll
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from common import report

KEYS = ("mode_outliers", "mode_outliers_true", "mode_outliers_stable",
        "mode_outliers_stable_se", "mode_outliers_stable_true", "mode_width_stable",
        "mode_width_stable_true", "off_curve", "off_curve_true",
        "off_curve_stable", "off_curve_stable_se", "off_curve_stable_true", "log_density",
        "log_density_true", "w2_over_floor_stable", "w2_over_floor_stable_se", "crossings",
        "ot_gap", "gaussian_ot_gap", "transport_cost")


def run(cmd: list[str]) -> float:
    print("$", " ".join(cmd), flush=True)
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True)
    return round(time.perf_counter() - t0, 1)


def sets(items: list[str]) -> list[str]:
    return [a for item in items for a in ("--set", item)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True, help="a scratch folder (replaced)")
    ap.add_argument("--target", default="8gaussians", help="a 2-D built-in")
    ap.add_argument("--teacher-set", action="append", default=[], help="key=value, repeatable")
    ap.add_argument("--rdmd-set", action="append", default=[], help="key=value, repeatable")
    ap.add_argument("--json")
    a = ap.parse_args()
    out = Path(a.out)
    shutil.rmtree(out, ignore_errors=True)
    rdmd = [str(Path(sys.executable).with_name("rdmd"))]  # the console script of this venv
    t, g = out / "teacher", out / "rdmd"
    wall_t = run([*rdmd, "train-teacher", "--target", a.target, "--out", str(t),
                  "--no-progress", *sets(a.teacher_set)])
    wall_g = run([*rdmd, "distill", "--source", "gaussian", "--teacher", str(t), "--out",
                  str(g), "--no-progress", *sets(a.rdmd_set)])
    mt = json.loads((t / "metrics.json").read_text())
    mg = json.loads((g / "metrics.json").read_text())
    report({"target": a.target, "teacher_wall_s": wall_t, "rdmd_wall_s": wall_g,
            "total_wall_s": wall_t + wall_g,
            "teacher_set": a.teacher_set, "rdmd_set": a.rdmd_set,
            "threads": os.environ.get("OMP_NUM_THREADS", "torch default"),
            "cpus": os.cpu_count(),
            "teacher": {k: mt[k] for k in KEYS if k in mt},
            "rdmd": {k: mg[k] for k in KEYS if k in mg}},
           a.json)


if __name__ == "__main__":
    main()

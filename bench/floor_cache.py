"""A 2-D teacher's evaluation with the W2 floor cache cold, warm and off, in one process.

The floors (W2^2 between fixed-seed target sets) are the same for every run; the cache
(``rdmd.metrics.floor_cache``) solves them once. The metrics must be identical in all three.

    python bench/floor_cache.py --teacher RUN_DIR [--target 8gaussians] [--json FILE]
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

from common import report

import rdmd.evaluation as ev
from rdmd.data import load_domain


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--teacher", required=True, help="a trained 2-D teacher's run folder")
    ap.add_argument("--target", default="8gaussians")
    ap.add_argument("--json")
    a = ap.parse_args()
    scratch = Path(tempfile.mkdtemp(prefix="rdmd-floor-bench-"))
    work = scratch / "teacher"  # evaluate_teacher rewrites metrics.json: work on a copy
    shutil.copytree(a.teacher, work)
    os.environ["RDMD_CACHE_DIR"] = str(scratch / "cache")
    dom = load_domain(a.target, 5000, 5000, 0)
    res: dict[str, object] = {"teacher": a.teacher, "target": a.target}
    metrics = []
    for label in ("cold", "warm", "off"):
        if label == "off":
            os.environ["RDMD_CACHE_DIR"] = "off"
        ev._STABLE_FLOOR.clear()  # the in-process sets; the values are what is cached
        t0 = time.perf_counter()
        m = ev.evaluate_teacher(work, dom)
        res[f"{label}_s"] = round(time.perf_counter() - t0, 2)
        metrics.append({k: m[k] for k in ("w2_over_floor", "w2_over_floor_stable",
                                          "mode_outliers_stable") if k in m})
    res["metrics"] = metrics[0]
    res["identical"] = all(m == metrics[0] for m in metrics)
    shutil.rmtree(scratch, ignore_errors=True)
    report(res, a.json)


if __name__ == "__main__":
    main()

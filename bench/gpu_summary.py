"""Read the runs of ``bench/gpu_figures.sh`` into issue 14's GPU figures (one JSON), and plan
the length of its long run from the measured RDMD speed.

    python bench/gpu_summary.py --plan runs/gpu/rdmd --seconds 270   # prints an iteration count
    python bench/gpu_summary.py --work runs/gpu --results OUT --out OUT/gpu_figures.json
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path


def rate(log: Path) -> dict[str, float | int | bool] | None:
    """Steps per second between the first and the last logged step: the first row's time
    holds start-up (and an OT start), which is not the steady speed (a log of one row can
    only say the speed with it: ``with_start_up``)."""
    if not log.is_file():
        return None
    rows = list(csv.DictReader(log.open()))
    if not rows:
        return None
    s1, t1 = float(rows[-1]["step"]), float(rows[-1]["time_s"])
    s0, t0 = (float(rows[0]["step"]), float(rows[0]["time_s"])) if len(rows) > 1 else (0, 0)
    if t1 <= t0:
        return None
    return {"steps_per_s": round((s1 - s0) / (t1 - t0), 3), "steps": int(s1),
            "wall_s": round(t1, 1), "with_start_up": len(rows) == 1}


def plan(run: Path, seconds: float) -> int:
    """Iterations that fit ``seconds`` at the run's measured speed, with a fifth kept for the
    OT start and the evaluations; whole hundreds when there are any."""
    r = rate(run / "log.csv")
    n = int(r["steps_per_s"] * seconds * 0.8) if r else 0
    return max(n // 100 * 100, min(n, 100), 2)


def summary(work: Path, results: Path) -> dict[str, object]:
    out: dict[str, object] = {}
    for f in sorted(results.glob("c2w_b*.json")):
        out[f"cat2wild_{f.stem.split('_')[1]}"] = json.loads(f.read_text())
    out["teacher_32x32"] = rate(work / "teacher" / "log.csv")
    out["rdmd_32x32"] = rate(work / "rdmd" / "log.csv")
    for name in ("rdmd", "long"):
        cfg = work / name / "config.json"
        if cfg.is_file():
            c = json.loads(cfg.read_text()).get("config", {})
            out[f"{name}_config"] = {k: c.get(k) for k in ("batch_size", "fake_steps",
                                                           "precision", "steps", "device")}
    out["torchrun_nproc1_finished"] = (work / "ddp" / "model.json").is_file()
    long = work / "long"
    if (long / "metrics.json").is_file():
        m = json.loads((long / "metrics.json").read_text())
        out["fmnist_long"] = {k: m.get(k) for k in (
            "fd_cnn_fmnist", "fd_cnn_fmnist_floor", "fd_n", "target_accuracy", "l2",
            "selected")}
        out["fmnist_long"]["speed"] = rate(long / "log.csv")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--plan", type=Path, help="a finished short run: print iterations")
    ap.add_argument("--seconds", type=float, default=270.0)
    ap.add_argument("--work", type=Path, default=Path("runs/gpu"))
    ap.add_argument("--results", type=Path, default=Path("runs/gpu_out"))
    ap.add_argument("--out", type=Path)
    a = ap.parse_args()
    if a.plan:
        print(plan(a.plan, a.seconds))
        return
    s = json.dumps(summary(a.work, a.results), indent=2)
    print(s)
    if a.out:
        a.out.write_text(s + "\n")


if __name__ == "__main__":
    main()

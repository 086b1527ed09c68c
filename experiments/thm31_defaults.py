"""Theorem 3.1 with the package defaults and one key: the gap to the closed-form OT map, three
seeds, and the same run trained twice as long.

Every run is the plain ``rdmd`` command (no config file): the teacher is ``rdmd
train-teacher --target <N(m, C)>`` and the generator ``rdmd distill --source gaussian:d=D
--teacher ... --lam L --set generator=potential`` with ``--set seed=S``, plus ``--set
eval_every`` for the gap's curve and ``--steps`` (twice the default) for the long run.
``--keys`` sets the keys per dimension (the gradient-field generator: the default generator
suits separated modes, docs/twod.md "Theorem 3.1 with one key"). The relative gap is
``E||G(x) - T(x)||^2 / E||T(x) - x||^2`` on held-out sources (``gaussian_ot_gap``).

    python experiments/thm31_defaults.py --dims 2,8 --seeds 0,1,2

Finished runs in ``--runs`` are read, not retrained (delete one to train it anew).
"""

from __future__ import annotations

import argparse
import csv
import json
import shlex
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
from common import run_rdmd  # noqa: E402
from thm31_gaussian_ot import target_spec  # noqa: E402

from rdmd.config import DistillConfig, data_kind, resolve_config  # noqa: E402
from rdmd.data.registry import vector_dim  # noqa: E402


def _curve(run: Path) -> list[tuple[int, float]]:
    with open(run / "log.csv") as f:
        return [(int(r["step"]), float(r["gaussian_ot_gap"])) for r in csv.DictReader(f)
                if r.get("gaussian_ot_gap")]


def _keys(spec: str) -> dict[int, list[str]]:
    """"2:generator=potential;8:" -> {2: ["generator=potential"], 8: []}."""
    out: dict[int, list[str]] = {}
    for part in filter(None, spec.split(";")):
        d, _, keys = part.partition(":")
        out[int(d)] = [k for k in keys.split(",") if k]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dims", default="2,8")
    ap.add_argument("--lams", default="2:0.005,8:0.01", help="lambda per dimension, d:lam")
    ap.add_argument("--keys", default="2:generator=potential;8:generator=potential",
                    help="keys per dimension besides the defaults, d:k=v,k=v;d:...")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--long-seeds", default="0", help="seeds also trained twice as long")
    ap.add_argument("--evals", type=int, default=5,
                    help="gap evaluations per default-length run (the long run: twice as many)")
    ap.add_argument("--runs", default="runs/thm31_defaults")
    ap.add_argument("--results", default="experiments/results/thm31_defaults.json")
    a = ap.parse_args()
    lams = {int(d): float(v) for d, v in (p.split(":") for p in a.lams.split(","))}
    keys = _keys(a.keys)
    res: dict[str, Any] = {"command": "python " + " ".join(sys.argv), "runs": {},
                           "summary": {}}
    for d in (int(x) for x in a.dims.split(",")):
        base = Path(a.runs) / f"d{d}"
        base.mkdir(parents=True, exist_ok=True)
        teacher = base / "teacher"
        t_wall = run_rdmd(["train-teacher", "--target", target_spec(d), "--out", str(teacher)],
                          teacher, base / "teacher.log")
        extra = [x for k in keys.get(d, []) for x in ("--set", k)]
        layer = dict(k.split("=", 1) for k in keys.get(d, []))
        source = f"gaussian:d={d}"
        steps = resolve_config(DistillConfig, [layer],
                               data_kind("vector", vector_dim(source))).steps
        assert steps is not None
        finals = []
        jobs = [(s, steps) for s in (int(x) for x in a.seeds.split(","))]
        jobs += [(s, 2 * steps) for s in (int(x) for x in a.long_seeds.split(",") if x)]
        for seed, n in jobs:
            out = base / (f"lam{lams[d]:g}_s{seed}" + ("" if n == steps else "_x2"))
            cmd = ["distill", "--source", source, "--teacher", str(teacher),
                   "--lam", str(lams[d]), *extra, "--set", f"seed={seed}",
                   "--set", f"eval_every={max(1, steps // a.evals)}",
                   *([] if n == steps else ["--steps", str(n)]), "--out", str(out)]
            wall = run_rdmd(cmd, out, base / f"{out.name}.log")
            m = json.loads((out / "metrics.json").read_text())
            row = {"d": d, "lam": lams[d], "seed": seed, "steps": n,
                   "gap": m["gaussian_ot_gap"], "curve": _curve(out),
                   "w2_over_floor_stable": m.get("w2_over_floor_stable"),
                   "wall_s": wall, "command": shlex.join(["rdmd", *cmd])}
            res["runs"][f"d{d}/{out.name}"] = row
            if n == steps:
                finals.append(m["gaussian_ot_gap"])
            print(f"d={d} {out.name}: gap {m['gaussian_ot_gap']:.4f}; curve "
                  + " ".join(f"{s}:{g:.4f}" for s, g in row["curve"]), flush=True)
            Path(a.results).parent.mkdir(parents=True, exist_ok=True)
            Path(a.results).write_text(json.dumps(res, indent=2))
        res["summary"][f"d{d}"] = {"lam": lams[d], "steps": steps, "gaps": finals,
                                   "max_gap": max(finals), "keys": keys.get(d, []),
                                   "teacher_wall_s": t_wall}
        Path(a.results).write_text(json.dumps(res, indent=2))
    print(json.dumps(res["summary"], indent=2))


if __name__ == "__main__":
    main()

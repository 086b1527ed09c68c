"""DMD2's improvements as RDMD options, ablated on an image pair at equal compute (issue 14).

Each variant is the pair's RDMD recipe (``configs/<pair>_rdmd.toml``) plus config overrides.
Equal compute: the base recipe trains ``--base-steps`` iterations; every other variant trains
``base_steps / r``, where ``r`` is its cost per iteration relative to base: 1 for variants
that change no computation (a schedule, a noise distribution), else the CPU-time ratio
measured by ``bench/gan_step_cost.py --bf16`` (:func:`cost_ratios`).

    python experiments/image_ablation.py --pair cmnist --lam 0.1 --base-steps 360 \\
        --variants base,fake5,cosine,lognormal,gan_teacher,gan_fake

Runs go to ``runs/<pair>/ablation/<variant>_s<seed>`` (reused when finished, resumed when
interrupted: :mod:`common`); the table to ``experiments/results/<pair>_ablation.{md,json}``.
Protocol: the final weights (no checkpoint selection), every held-out source image, the
pair's classifier for the Frechet distance (``fd_cnn_<pair>``, not FID) with its floor from
two disjoint real target sets of the same size, and the classifier's target rate on the
real held-out target images beside the outputs' rate.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import torch

from rdmd.config import read_config_file
from rdmd.data import load_domain
from rdmd.errors import RdmdError

sys.path.insert(0, str(Path(__file__).parent))
from common import ensure_rdmd, markdown_table, run_main  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
PAIRS: dict[str, dict[str, Any]] = {
    "cmnist": {"source": "cmnist2", "target": "cmnist3", "target_class": 3,
               "teacher": ROOT / "src/rdmd/pretrained/cmnist/teacher",
               "classifier": ROOT / "src/rdmd/pretrained/cmnist/classifier",
               "ot_start_atoms": 100},  # a quarter of the 400 training 2s
    "fmnist": {"source": "fmnist-sneaker", "target": "fmnist-boot", "target_class": 9,
               "teacher": ROOT / "src/rdmd/pretrained/fmnist/teacher",
               "classifier": ROOT / "src/rdmd/pretrained/fmnist/classifier",
               "ot_start_atoms": 1024},
}
OT_START: dict[str, Any] = {"ot_start": 300, "ot_start_batch": 32, "ot_start_lr": 2e-4}
CHROMA: dict[str, Any] = {"cost": "l2+10*chroma"}  # rdmd.costs.chroma, ten times l2's hue price
#: variant -> config overrides on the pair's recipe
VARIANTS: dict[str, dict[str, Any]] = {
    "base": {},
    "fake5": {"fake_steps": 5},  # DMD2's two-time-scale update
    "cosine": {"lr_schedule": "cosine"},
    "lognormal": {"fake_sigma": "lognormal"},  # EDM's levels instead of the DM term's draw
    "gan_teacher": {"method": "rdmd_gan", "gan_features": "teacher"},
    "gan_fake": {"method": "rdmd_gan", "gan_features": "fake"},
    # the generator first fitted to the pixel-space OT map onto the pair's ot_start_atoms
    # teacher samples (rdmd.methods.ot_start; 300 steps of batch 32: about 24 passes over
    # the 400 colored 2s)
    "ot": OT_START,
    "fake5_ot": {"fake_steps": 5, **OT_START},
    # the start kept at low frequencies: the DM term (and the fake score) only at noise
    # levels up to 1, where it sharpens strokes but no longer sees a digit's hue or layout
    "fake5_ot_sharp": {"fake_steps": 5, **OT_START, "dm_sigma_max": 1.0},
    # a cost that also charges a change of the mean colour's chromaticity (rdmd.costs.chroma):
    # the hue rotation the DM term cannot see, ten times dearer, and no shape term added
    "fake5_chroma": {"fake_steps": 5, **CHROMA},
    "fake5_ot_chroma": {"fake_steps": 5, **OT_START, **CHROMA},
    # fake5 given the OT start's seconds as more iterations (:func:`steps_for_start`)
    "fake5_more": {"fake_steps": 5},
    }
#: variant -> (variant it lengthens, variant whose start seconds it is given)
START_MATCHED = {"fake5_more": ("fake5", "fake5_ot")}
#: keys that change no computation per iteration (the variant costs what base costs)
SAME_COST = {"lr_schedule", "fake_sigma", "dm_sigma_max", "cost"}  # cost: l2-sized
#: keys of the start before step 0: no cost per iteration; its seconds are reported apart
START_KEYS = {"ot_start", "ot_start_atoms", "ot_start_batch", "ot_start_lr"}
COLUMNS = ["variant", "steps", "wall_s", "start_s", "cost_ratio", "fd", "fd_floor",
           "fd_over_floor", "l2",
           "hue_difference", "hue_degrees", "target_accuracy", "real_target_accuracy"]


def recipe(pair: str, lam: float, seed: int, overrides: dict[str, Any]) -> dict[str, Any]:
    p = PAIRS[pair]
    cfg = read_config_file(ROOT / "configs" / f"{pair}_rdmd.toml")
    cfg.update(lam=lam, seed=seed, classifier=str(p["classifier"]),
               target_class=p["target_class"], **overrides)
    if overrides.get("ot_start"):
        cfg["ot_start_atoms"] = p["ot_start_atoms"]
    return cfg


def cost_ratios(names: list[str], bench_json: Path) -> dict[str, float]:
    """Per-iteration cost of each variant relative to ``base``: 1 for variants that change
    no computation (schedules, noise levels), else the process-CPU-time ratio that
    ``bench/gan_step_cost.py`` measured in alternating blocks (whole-run pilots on this
    shared machine moved by 1.8x in wall time and read a GAN variant as cheaper than base in
    CPU time: start-up noise swamps a few iterations)."""
    res = json.loads(bench_json.read_text()) if bench_json.is_file() else {}
    out: dict[str, float] = {}
    for name in names:
        # what it computes per iteration: no start keys, no keys that cost nothing
        per_step = {k: v for k, v in VARIANTS[name].items() if k not in START_KEYS | SAME_COST}
        same = [n for n, o in VARIANTS.items() if o == per_step and f"cpu_ratio_{n}" in res]
        if not per_step:
            out[name] = 1.0
        elif same:  # the measured variant whose iterations it runs (fake5_ot: fake5's)
            out[name] = float(res[f"cpu_ratio_{same[0]}"])
        else:
            raise RdmdError(f"no measured cost for variant {name!r} in {bench_json}: run "
                            "bench/gan_step_cost.py --bf16 --json that file (it times base, "
                            "fake5, gan_teacher and gan_fake)")
    return out


def train_seconds(run: Path) -> tuple[int, float]:
    """The last logged step of a finished run and its training seconds (no evaluation)."""
    last = (run / "log.csv").read_text().strip().splitlines()[-1].split(",")
    return int(last[0]), float(last[-1])


def steps_for_start(runs: Path, lam: float, seed: int, name: str) -> int:
    """Equal compute for a start: the iterations of ``START_MATCHED[name][0]`` plus as many as
    its training pace fits in the seconds that ``START_MATCHED[name][1]``'s start took (both
    runs of the same seed must be finished first)."""
    longer, started = (runs / f"{v}_lam{lam}_s{seed}" for v in START_MATCHED[name])
    meta = started / "model.json"
    if not (meta.is_file() and (longer / "log.csv").is_file()):
        raise RdmdError(f"variant {name!r} needs the finished runs {longer} and {started}: "
                        f"list {' and '.join(START_MATCHED[name])} before it in --variants")
    steps, seconds = train_seconds(longer)
    start_s = json.loads(meta.read_text())["start"]["seconds"]
    return steps + round(start_s * steps / seconds)


@torch.no_grad()
def real_target_rate(pair: str) -> float:
    from rdmd.classifier import load_classifier

    p = PAIRS[pair]
    net, _ = load_classifier(p["classifier"])
    y = load_domain(p["target"]).test
    return float((net(y).argmax(1) == p["target_class"]).float().mean())


def plot_grid(path: Path, source: str, rows: list[dict[str, Any]], n: int = 10) -> None:
    """The same held-out sources through every variant's generator (one row each)."""
    import rdmd
    from rdmd.plots import plot_method_grid

    x = load_domain(source).test[:n]
    outputs = [torch.as_tensor(rdmd.translate(ROOT / r["run"], x)) for r in rows]
    labels = [f"{r['variant']}\nFD {r['fd']:.1f}, L2 {r['l2']:.2f}\n"
              f"hue {r['hue_degrees']:.1f} deg" for r in rows]
    path.parent.mkdir(parents=True, exist_ok=True)
    plot_method_grid(path, x, outputs, labels)


def seed_rows(pair: str, lam: float, seed: int, tags: list[str]) -> list[dict[str, Any]]:
    """One seed's rows from the result files of ``tags`` (a variant listed under two tags is
    the same finished run, reused: it is counted once)."""
    results = ROOT / "experiments" / "results"
    rows: dict[str, dict[str, Any]] = {}
    for tag in tags:
        f = results / f"{pair}_ablation_lam{lam}_s{seed}{tag}.json"
        if f.is_file():
            for r in json.loads(f.read_text())["rows"]:
                rows.setdefault(r["variant"], r)
    return list(rows.values())


def summarize(pair: str, lam: float, seeds: list[int], tag: str = "",
              grid: Path | None = None) -> None:
    """Mean and range per variant over the seeds' result files (single runs at these
    budgets move FD by tens of percent, so a variant is only better than its spread).
    ``tag`` may list several (``_a,_b``): their variants go into one table, written under
    the tags joined; ``grid``: the last seed's generators on the first held-out sources."""
    results = ROOT / "experiments" / "results"
    tags = tag.split(",")
    tag = "".join(tags)
    per_seed = [seed_rows(pair, lam, seed, tags) for seed in seeds]
    rows: dict[str, list[dict[str, Any]]] = {}
    for r in (r for seed in per_seed for r in seed):
        rows.setdefault(r["variant"], []).append(r)
    if grid:
        plot_grid(grid, PAIRS[pair]["source"], per_seed[-1])
    keys = ["fd", "l2", "hue_degrees", "target_accuracy"]
    out = []
    for name, rs in rows.items():
        row: dict[str, Any] = {"variant": name, "seeds": len(rs), "steps": rs[0]["steps"],
                               "real_target_accuracy": rs[0]["real_target_accuracy"],
                               "fd_floor": rs[0]["fd_floor"]}
        for k in keys:
            v = [r[k] for r in rs]
            row[k] = (f"{sum(v) / len(v):.3g}" if len(v) == 1 else
                      f"{sum(v) / len(v):.3g} ({min(v):.3g}-{max(v):.3g})")
        out.append(row)
    cols = ["variant", "seeds", "steps", "fd", "fd_floor", "l2", "hue_degrees",
            "target_accuracy", "real_target_accuracy"]
    text = (f"Mean (range) over seeds {seeds}; per-seed tables: "
            f"`{pair}_ablation_lam{lam}_s<seed>{tag}.md`\n\n" + markdown_table(out, cols) + "\n")
    (results / f"{pair}_ablation_lam{lam}{tag}.md").write_text(text)
    print(text)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pair", choices=sorted(PAIRS), default="cmnist")
    ap.add_argument("--lam", type=float, default=0.1)
    ap.add_argument("--base-steps", type=int, default=360)
    ap.add_argument("--costs", type=Path,
                    default=ROOT / "bench" / "results_gan_step_cost_bf16.json")
    ap.add_argument("--variants", default="base,fake5,cosine,lognormal,gan_teacher,gan_fake")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--runs", type=Path, default=None)
    ap.add_argument("--precision", choices=["fp32", "bf16"], default=None,
                    help="default: the hardware decides (rdmd.precision); bf16 is 14x "
                         "slower on a CPU without bf16 arithmetic, docs/images.md")
    ap.add_argument("--grid", type=Path, default=None,
                    help="also write the variants' translations of the first 10 held-out "
                         "source images, one row per variant, to this PNG")
    ap.add_argument("--tag", default="", help="suffix of the result files' names (with "
                                              "--summary: several, comma-separated)")
    ap.add_argument("--summary", help="seeds (e.g. 0,1,2): only write the per-variant mean "
                                      "and range over these seeds' finished result files")
    a = ap.parse_args()
    if a.summary:
        summarize(a.pair, a.lam, [int(s) for s in a.summary.split(",")], a.tag, a.grid)
        return
    names = a.variants.split(",")
    unknown = [n for n in names if n not in VARIANTS]
    if unknown:
        ap.error(f"unknown variant(s) {unknown}; known: {', '.join(VARIANTS)}")
    runs = a.runs or ROOT / "runs" / a.pair / "ablation"
    results = ROOT / "experiments" / "results"
    steps_file = runs / f"steps_lam{a.lam}.json"
    if steps_file.is_file():  # the pilot's plan, kept so a rerun trains the same runs
        plan = json.loads(steps_file.read_text())
    else:
        plan = {"cost_ratio": {}, "steps": {}}
    todo = [n for n in ["base", *names] if n not in plan["steps"] and n not in START_MATCHED]
    if todo:
        ratios = cost_ratios(todo, a.costs)
        for n in todo:
            plan["cost_ratio"][n] = ratios[n]
            plan["steps"][n] = max(1, round(a.base_steps / ratios[n]))
        runs.mkdir(parents=True, exist_ok=True)
        tmp = steps_file.with_suffix(f".tmp{a.seed}")  # two seeds may start at once
        tmp.write_text(json.dumps(plan, indent=2))
        tmp.replace(steps_file)
    p = PAIRS[a.pair]
    real_rate = real_target_rate(a.pair)
    fd_key = f"fd_cnn_{a.pair}"
    rows = []
    for n in names:
        out = runs / f"{n}_lam{a.lam}_s{a.seed}"
        if n in START_MATCHED:
            plan["steps"][n] = steps_for_start(runs, a.lam, a.seed, n)
            plan["cost_ratio"][n] = plan["cost_ratio"][START_MATCHED[n][0]]
        cfg = recipe(a.pair, a.lam, a.seed, VARIANTS[n]) | {"steps": plan["steps"][n]}
        if a.precision:
            cfg["precision"] = a.precision
        res = ensure_rdmd(p["source"], p["teacher"], out, progress=False, **cfg)
        start = json.loads((out / "model.json").read_text()).get("start", {})
        fd, floor = res.get(fd_key), res.get(f"{fd_key}_floor")
        rows.append({"variant": n, "steps": plan["steps"][n], "wall_s": res["wall_s"],
                     "start_s": start.get("seconds"),
                     "cost_ratio": plan["cost_ratio"][n], "fd": fd, "fd_floor": floor,
                     "fd_over_floor": fd / floor if fd and floor else None,
                     "l2": res.get("l2"), "hue_difference": res.get("hue_difference"),
                     "hue_degrees": 360 * res["hue_difference"]
                     if res.get("hue_difference") is not None else None,
                     "target_accuracy": res.get("target_accuracy"),
                     "real_target_accuracy": real_rate, "fd_n": res.get("fd_n"),
                     "run": str(out.relative_to(ROOT)) if out.is_relative_to(ROOT) else str(out)})
        print(markdown_table(rows[-1:], COLUMNS), flush=True)
    stem = results / f"{a.pair}_ablation_lam{a.lam}_s{a.seed}{a.tag}"
    Path(f"{stem}.json").write_text(json.dumps(
        {"pair": a.pair, "lam": a.lam, "seed": a.seed, "base_steps": a.base_steps,
         "plan": plan, "rows": rows, "command": " ".join(sys.argv)}, indent=2))
    if a.grid:
        plot_grid(a.grid, p["source"], rows)
    Path(f"{stem}.md").write_text(
        f"`{' '.join(['python', *sys.argv])}`\n\n" + markdown_table(rows, COLUMNS) + "\n")
    print(markdown_table(rows, COLUMNS))


if __name__ == "__main__":
    run_main(main)

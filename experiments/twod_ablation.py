"""What limits the teacher and the generator on Gaussian -> 8 Gaussians: one row per setting.

Each row is a teacher (config keys) and optionally an RDMD run from N(0, I) on that teacher
(config keys); rows that share a teacher share its run directory. Every row is also printed
as the ``rdmd`` commands that reproduce it. Finished runs are reused (an interrupted
ablation continues with the same command); results are rewritten after every row.

    python experiments/twod_ablation.py --rows t_old,t_fresh,g_old,g_new
    python experiments/twod_ablation.py --list
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
from common import finished, timed  # noqa: E402

from rdmd.training import distill, train_teacher  # noqa: E402

# teacher settings: config keys of train-teacher (all others the package defaults)
TEACHERS: dict[str, dict[str, Any]] = {
    "old": {"fresh_data": False, "steps": 10_000, "lr_schedule": "cosine"},
    "fresh": {"fresh_data": True, "steps": 10_000},
    "fresh4k": {"fresh_data": True, "steps": 4000},
    "fixed4k": {"fresh_data": False, "steps": 4000},
    "fresh4k_lr2e-3": {"fresh_data": True, "steps": 4000, "lr": 2e-3},
    "fresh2k": {"fresh_data": True, "steps": 2000},
    # capacity: a one-step map onto eight modes needs steep boundaries that 35 sampler steps
    # of the paper's MLP compose but one call of it may not have
    "fresh4k_wide": {"fresh_data": True, "steps": 4000, "encoder": [64, 128, 128, 128]},
    "fresh4k_wider": {"fresh_data": True, "steps": 4000, "encoder": [128, 256, 256, 256]},
    "fresh_wide": {"fresh_data": True, "steps": 10_000, "encoder": [64, 128, 128, 128]},
    # eighth session: does the wide teacher keep sharpening with twice the steps?
    "fresh_wide_20k": {"fresh_data": True, "steps": 20_000, "encoder": [64, 128, 128, 128]},
    "fresh_wide_20k_s1": {"fresh_data": True, "steps": 20_000, "encoder": [64, 128, 128, 128],
                          "seed": 1},
    # random Fourier features of the input: sharp boundaries without the width (spectral bias)
    **{f"fresh4k_ff{sc:g}": {"fresh_data": True, "steps": 4000, "fourier": [64, sc]}
       for sc in (0.5, 1.0, 3.0)},
    **{f"fresh4k_wide_ff{sc:g}": {"fresh_data": True, "steps": 4000,
                                  "encoder": [64, 128, 128, 128], "fourier": [64, sc]}
       for sc in (0.5, 1.0)},
}

# rows: (teacher, distill keys or None for a teacher-only row)
ROWS: dict[str, tuple[str, dict[str, Any] | None]] = {
    "t_old": ("old", None),
    "t_fresh": ("fresh", None),
    "t_fresh4k": ("fresh4k", None),
    "t_fixed4k": ("fixed4k", None),
    "t_fresh4k_lr2e-3": ("fresh4k_lr2e-3", None),
    "t_fresh2k": ("fresh2k", None),
    "t_fresh_wide": ("fresh_wide", None),  # the wide teacher at the default 10k steps
    "t_fresh_wide_20k": ("fresh_wide_20k", None),
    "t_fresh_wide_20k_s1": ("fresh_wide_20k_s1", None),
    # generator rows, all on the 4k fresh teacher, lambda 0.02
    "g_old": ("fresh4k", {"fresh_data": False, "steps": 10_000}),
    "g_old4k": ("fresh4k", {"fresh_data": False, "steps": 4000}),
    "g_fresh4k": ("fresh4k", {"steps": 4000}),
    "g_lr1e-4cos": ("fresh4k", {"steps": 4000, "lr_generator": 1e-4, "lr_schedule": "cosine"}),
    "g_lr3e-4cos": ("fresh4k", {"steps": 4000, "lr_generator": 3e-4, "lr_schedule": "cosine"}),
    "g_lr1e-4cos_f2e-3": ("fresh4k", {"steps": 4000, "lr_generator": 1e-4, "lr_fake": 2e-3,
                                      "lr_schedule": "cosine"}),
    "g_lr1e-4cos_k2": ("fresh4k", {"steps": 4000, "lr_generator": 1e-4, "fake_steps": 2,
                                   "lr_schedule": "cosine"}),
    "g_lr1e-4cos_sg0.5": ("fresh4k", {"steps": 4000, "lr_generator": 1e-4, "sigma_g": 0.5,
                                      "lr_schedule": "cosine"}),
    "g_lr1e-4cos_sg3": ("fresh4k", {"steps": 4000, "lr_generator": 1e-4, "sigma_g": 3.0,
                                    "lr_schedule": "cosine"}),
    "g_lr1e-4cos_ema0": ("fresh4k", {"steps": 4000, "lr_generator": 1e-4, "ema_decay": 0.0,
                                     "lr_schedule": "cosine"}),
    "g_lr1e-4cos_dmmax10": ("fresh4k", {"steps": 4000, "lr_generator": 1e-4,
                                        "dm_sigma_max": 10.0, "lr_schedule": "cosine"}),
    "g_lr3e-4cos_k2": ("fresh4k", {"steps": 4000, "lr_generator": 3e-4, "fake_steps": 2,
                                   "lr_schedule": "cosine"}),
    "g_lr3e-4cos_sg3": ("fresh4k", {"steps": 4000, "lr_generator": 3e-4, "sigma_g": 3.0,
                                    "lr_schedule": "cosine"}),
    "g_lr3e-4cos_sg0.5": ("fresh4k", {"steps": 4000, "lr_generator": 3e-4, "sigma_g": 0.5,
                                      "lr_schedule": "cosine"}),
    "g_nonorm": ("fresh4k", {"steps": 4000, "lr_generator": 1e-4, "normalize": False,
                             "lr_schedule": "cosine"}),
    "g_k4_f1e-3": ("fresh4k", {"steps": 2000, "lr_generator": 1e-4, "fake_steps": 4,
                               "lr_fake": 1e-3, "lr_schedule": "cosine"}),
    "g_defaults": ("fresh", {}),  # this branch's defaults end to end (10k + 10k, fresh)
    "g_combo": ("fresh4k", {"steps": 4000, "lr_generator": 3e-4, "sigma_g": 3.0,
                            "dm_sigma_max": 10.0, "fake_steps": 2, "lr_schedule": "cosine"}),
    "g_lr1e-3cos": ("fresh4k", {"steps": 4000, "lr_generator": 1e-3, "lr_schedule": "cosine"}),
    "g_lr1e-4cos_lam0": ("fresh4k", {"steps": 4000, "lr_generator": 1e-4, "lam": 0.0,
                                     "lr_schedule": "cosine"}),
    "t_fresh4k_wide": ("fresh4k_wide", None),
    "g_wide": ("fresh4k_wide", {"steps": 4000, "lr_generator": 1e-4, "lr_schedule": "cosine"}),
    "g_wide_10k": ("fresh4k_wide", {"steps": 10_000, "lr_generator": 1e-4,
                                    "lr_schedule": "cosine"}),
    "g_wide_lr3e-4": ("fresh4k_wide", {"steps": 4000, "lr_generator": 3e-4,
                                       "lr_schedule": "cosine"}),
    "g_wider": ("fresh4k_wider", {"steps": 4000, "lr_generator": 1e-4, "lr_schedule": "cosine"}),
    "g_wide_sg10": ("fresh4k_wide", {"steps": 4000, "lr_generator": 1e-4, "sigma_g": 10.0,
                                     "lr_schedule": "cosine"}),
    **{f"g_ff{sc:g}": (f"fresh4k_ff{sc:g}", {"steps": 4000, "lr_generator": 1e-4,
                                              "lr_schedule": "cosine"})
       for sc in (0.5, 1.0, 3.0)},
    **{f"g_wide_ff{sc:g}": (f"fresh4k_wide_ff{sc:g}", {"steps": 4000, "lr_generator": 1e-4,
                                                      "lr_schedule": "cosine"})
       for sc in (0.5, 1.0)},
    # the features in the generator only (a zero-initialised branch): the teacher keeps its
    # samples, the one-step map gains the high frequencies
    **{f"g_wide_gff{sc:g}": ("fresh4k_wide", {"steps": 4000, "lr_generator": 1e-4,
                                             "lr_schedule": "cosine",
                                             "generator_fourier": [64, sc]})
       for sc in (1.0, 2.0, 3.0)},
    **{f"g_wide_gff3_lam{lam:g}": ("fresh4k_wide", {"steps": 4000, "lr_generator": 1e-4,
                                                   "lr_schedule": "cosine", "lam": lam,
                                                   "generator_fourier": [64, 3.0]})
       for lam in (0.0, 0.1)},
    "g_wide_gff3_10k": ("fresh4k_wide", {"steps": 10_000, "lr_generator": 1e-4,
                                         "lr_schedule": "cosine", "generator_fourier": [64, 3.0]}),
    # lambda continuation (docs/twod.md): lambda from lam_start down to 0.02 over 80% of the
    # steps, so a large lambda orders the map before the small one sharpens it
    **{f"g_wide_gff3_cont{ls:g}": ("fresh4k_wide", {"steps": 4000, "lr_generator": 1e-4,
                                                   "lr_schedule": "cosine", "lam_start": ls,
                                                   "lam_anneal": 0.8,
                                                   "generator_fourier": [64, 3.0]})
       for ls in (0.3, 1.0)},
    # the DM term normalised by a weight of sigma alone (dm_weight, docs/twod.md): DMD's
    # per-sample normaliser shrinks the push of outputs between the modes, where the
    # teacher's denoiser is far from them
    "g_wide_gff3_dwsigma": ("fresh4k_wide", {"steps": 4000, "lr_generator": 1e-4,
                                             "lr_schedule": "cosine", "dm_weight": "sigma",
                                             "generator_fourier": [64, 3.0]}),
    # the DM gradient's noise (a 4x batch took d = 2 Gaussians under 1%, docs/twod.md)
    "g_wide_gff3_b4096": ("fresh4k_wide", {"steps": 4000, "lr_generator": 1e-4,
                                           "lr_schedule": "cosine", "batch_size": 4096,
                                           "generator_fourier": [64, 3.0]}),
    # seventh session: a higher feature scale or more features (sharper boundaries), and
    # DMD2's five fake-score updates (a fake score that keeps up with a sharp generator)
    "g_wide_gff5": ("fresh4k_wide", {"steps": 4000, "lr_generator": 1e-4,
                                     "lr_schedule": "cosine", "generator_fourier": [64, 5.0]}),
    **{f"g_wide_gff3_n{n}{'' if k == 4000 else '_10k'}": (
        "fresh4k_wide", {"steps": k, "lr_generator": 1e-4, "lr_schedule": "cosine",
                         "generator_fourier": [n, 3.0]})
       for n, k in ((256, 4000), (1024, 4000), (256, 10_000), (1024, 10_000))},
    # eighth session: the best row's seeds
    **{f"g_wide_gff3_n1024_10k_s{s}": (
        "fresh4k_wide", {"steps": 10_000, "lr_generator": 1e-4, "lr_schedule": "cosine",
                         "generator_fourier": [1024, 3.0], "seed": s})
       for s in (1, 2)},
    # the same generator on the 20k-step wide teacher (1.39% off the modes against 2.34%)
    **{f"g_wide20k_gff3_n1024_10k{'' if s == 0 else '_s' + str(s)}": ("fresh_wide_20k", {
        "steps": 10_000, "lr_generator": 1e-4, "lr_schedule": "cosine",
        "generator_fourier": [1024, 3.0], **({"seed": s} if s else {})}) for s in (0, 1, 2)},
    "g_wide20k_cvx64_10k": ("fresh_wide_20k", {
        "steps": 10_000, "lr_generator": 3e-3, "lr_schedule": "cosine", "generator": "convex",
        "lam": 0.02}),
    "g_wide_gff3_k5": ("fresh4k_wide", {"steps": 4000, "lr_generator": 1e-4,
                                        "lr_schedule": "cosine", "fake_steps": 5,
                                        "generator_fourier": [64, 3.0]}),
    # the generator as the gradient of a potential (generator = "potential", docs/twod.md):
    # a gradient field cannot swirl, so fewer crossings; it starts at the identity
    **{f"g_wide_pot_gff3{'' if lr == 1e-4 else '_lr' + format(lr, 'g')}": (
        "fresh4k_wide", {"steps": 4000, "lr_generator": lr, "lr_schedule": "cosine",
                         "generator": "potential", "generator_fourier": [64, 3.0]})
       for lr in (1e-4, 1e-3)},
    # eighth session: the gradient of a convex piecewise-quadratic potential (generator =
    # "convex"), started at the semi-discrete OT map onto K teacher samples: a jump between
    # modes is a change of piece, as sharp as the learned temperature
    **{f"g_wide_cvx{k}{'' if n == 4000 else '_' + str(n // 1000) + 'k'}"
       f"{'' if lr == 3e-3 else '_lr' + format(lr, 'g')}"
       f"{'' if lam == 0.02 else '_lam' + format(lam, 'g')}": (
           "fresh4k_wide", {"steps": n, "lr_generator": lr, "lr_schedule": "cosine",
                            "generator": "convex", "lam": lam,
                            **({} if k == 64 else {"generator_pieces": k})})
       for k, n, lr, lam in ((64, 2000, 1e-3, 0.02), (64, 2000, 3e-4, 0.02),
                             (64, 4000, 3e-3, 0.02), (256, 4000, 3e-3, 0.02),
                             (64, 10_000, 3e-3, 0.02), (64, 4000, 3e-3, 0.0),
                             (64, 4000, 3e-3, 0.005))},
    # the convex map plus the gradient of a smooth MLP potential (generator_widths)
    **{f"g_wide_cvx64_s128{'' if lr == 3e-3 else '_lr' + format(lr, 'g')}": (
        "fresh4k_wide", {"steps": 4000, "lr_generator": lr, "lr_schedule": "cosine",
                         "generator": "convex", "generator_widths": [128, 128]})
       for lr in (3e-3, 1e-3)},
    "g_dwsigma": ("fresh4k", {"steps": 4000, "lr_generator": 1e-4, "lr_schedule": "cosine",
                              "dm_weight": "sigma"}),
    # DMD2's GAN term (docs/gan.md): a discriminator on bottleneck features may cut the ring
    # into modes where the score difference alone leaves it smooth
    **{f"g_gan_{f[0]}{'' if w == 3e-3 else '_w' + format(w, 'g')}": (
        "fresh4k", {"steps": 4000, "lr_generator": 1e-4, "lr_schedule": "cosine",
                    "method": "rdmd_gan", "gan_features": f, "gan_weight_gen": w})
       for f in ("teacher", "fake") for w in (3e-3, 3e-2, 3e-1)},
}

SOURCE, TARGET = "gaussian", "8gaussians"

# Every row was chosen and run on the vector defaults from before 2-D data got their own
# (rdmd.config.PLANE_DEFAULTS, ninth session): those are pinned under each row's keys, so
# the rows still reproduce. bench/twod_time.py measures the 2-D defaults themselves.
# The later 2-D defaults (the eleventh session's teacher p_mean and OT start, the twelfth's
# guided teacher) are pinned back too.
PINNED_TEACHER: dict[str, Any] = {"steps": 10_000, "encoder": [16, 32, 32, 32],
                                  "p_mean": -1.2, "guide_at": 0.0, "sample_churn": 0.0}
PINNED_DISTILL: dict[str, Any] = {"steps": 10_000, "batch_size": 1024, "lr_generator": 2e-5,
                                  "lr_schedule": "constant", "generator_fourier": [],
                                  "ot_start": 0}


def teacher_keys(t: str) -> dict[str, Any]:
    return {**PINNED_TEACHER, **TEACHERS[t]}


def distill_keys(g: dict[str, Any]) -> dict[str, Any]:
    return {**PINNED_DISTILL, **g}



def _wall(d: Path) -> float | None:
    """Wall time of the call that finished a run (contended: compare within one session)."""
    stamp = d / "wall_time.json"
    return json.loads(stamp.read_text())["wall_s"] if stamp.is_file() else None


def _sets(keys: dict[str, Any]) -> str:
    return " ".join(f"--set {k}={json.dumps(v, separators=(',', ':'))}"
                    for k, v in keys.items())


def commands(row: str, runs: Path) -> list[str]:
    """The rdmd command lines that reproduce a row (the package defaults plus its keys)."""
    t, g = ROWS[row]
    tdir = runs / f"teacher_{t}"
    out = [f"rdmd train-teacher --target {TARGET} --out {tdir} {_sets(teacher_keys(t))}"]
    if g is not None:
        out.append(f"rdmd distill --source {SOURCE} --teacher {tdir} --out {runs / row} "
                   f"{_sets(distill_keys(g))}")
    return out


def run_row(row: str, runs: Path, prog: bool) -> dict[str, Any]:
    t, g = ROWS[row]
    tdir = runs / f"teacher_{t}"
    tw = timed(lambda: train_teacher(TARGET, tdir, teacher_keys(t),
                                      resume=(tdir / "config.json").is_file(), progress=prog),
                tdir)
    rec: dict[str, Any] = {"row": row, "commands": commands(row, runs), "teacher_dir": str(tdir),
                           "teacher_wall_s": tw,
                           "teacher": json.loads((tdir / "metrics.json").read_text())}
    if g is not None:
        out = runs / row
        gw = timed(lambda: distill(SOURCE, tdir, out, distill_keys(g),
                                    resume=(out / "config.json").is_file(), progress=prog), out)
        rec.update(rdmd_dir=str(out), rdmd_wall_s=gw,
                   rdmd=json.loads((out / "metrics.json").read_text()),
                   config=json.loads((out / "config.json").read_text())["config"])
    return rec


def rescore(rec: dict[str, Any], pairs: int) -> dict[str, Any]:
    """Re-evaluate a row's teacher and generator with the current measures (the stable W2 on
    ``pairs`` fresh set pairs of ``evaluation.STABLE_N`` points)."""
    from rdmd import evaluation
    from rdmd.config import DistillConfig
    from rdmd.data import load_domain
    from rdmd.models import load_model
    from rdmd.training.rundir import load_run_config

    evaluation.STABLE_PAIRS = pairs
    tdir = Path(rec["teacher_dir"])
    tcfg = json.loads((tdir / "config.json").read_text())["config"]
    dom = load_domain(TARGET, tcfg["n_train"], tcfg["n_test"], tcfg["seed"])
    rec["teacher"] = evaluation.evaluate_teacher(tdir, dom, n_steps=tcfg["sample_steps"])
    if "rdmd_dir" in rec:
        out = Path(rec["rdmd_dir"])
        cfg = load_run_config(DistillConfig, out)
        model = load_model(out)
        src = load_domain(SOURCE, cfg.n_train, cfg.n_test, cfg.seed)
        tgt = load_domain(TARGET, cfg.n_test, cfg.n_test, cfg.seed)
        res = evaluation.write_translation_report(out, model.net, model.normalizer, src, tgt,
                                                  cfg)
        rec["rdmd"] = res
    return rec


COLS = ("mode_outliers", "log_density", "w2_over_floor_stable", "crossings")


def _f(v: Any, k: str) -> str:
    if not isinstance(v, float):
        return ""
    return f"{100 * v:.1f}%" if k == "mode_outliers" else f"{v:.3g}"


def _w(m: dict[str, Any]) -> str:
    if "w2_over_floor_stable" not in m:
        return ""
    return f"{m['w2_over_floor_stable']:.2f} +- {m['w2_over_floor_stable_se']:.2f}"


def _off(m: dict[str, Any]) -> str:
    """The off-mode share on the 3000 evaluation points, and on 12000 fresh ones with its
    standard error where the row was scored after the stable measure existed."""
    out = _f(m.get("mode_outliers"), "mode_outliers")
    if "mode_outliers_stable" in m:
        out += (f" ({100 * m['mode_outliers_stable']:.2f} +- "
                f"{100 * m['mode_outliers_stable_se']:.2f}%)")
    return out


def table(res: dict[str, Any]) -> str:
    """The docs' ablation table: one row per setting, its commands below the table."""
    lines = ["| row | teacher off-mode | teacher log p | teacher W2/floor | RDMD off-mode | "
             "RDMD log p | RDMD W2/floor | crossings | teacher s | RDMD s |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for name, r in res["rows"].items():
        t, g = r["teacher"], r.get("rdmd", {})
        lines.append(f"| {name} | {_off(t)} | "
                     f"{_f(t.get('log_density'), '')} | {_w(t)} | "
                     f"{_off(g)} | "
                     f"{_f(g.get('log_density'), '')} | {_w(g)} | "
                     f"{_f(g.get('crossings'), '')} | {r.get('teacher_wall_s', '')} | "
                     f"{r.get('rdmd_wall_s') or ''} |")
    lines += ["", "Commands (package defaults plus the keys shown; rows recorded before the "
              "ninth session omit the pinned pre-2-D-defaults keys, "
              "`twod_ablation.PINNED_TEACHER` and `PINNED_DISTILL`, that they ran with):", ""]
    for name, r in res["rows"].items():
        lines += [f"- {name}:"] + [f"  `{c}`" for c in r["commands"]]
    return "\n".join(lines)


def main() -> None:
    global TARGET
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--target", default=TARGET,
                    help="the target built-in (rows were chosen on 8gaussians; swissroll and "
                         "moons get the same rows, in their own --runs and --results)")
    ap.add_argument("--rows", default=",".join(ROWS))
    ap.add_argument("--runs", default="runs/twod_ablation")
    ap.add_argument("--results", default="experiments/results/twod_ablation.json")
    ap.add_argument("--list", action="store_true")
    ap.add_argument("--no-progress", action="store_true")
    ap.add_argument("--collect", action="store_true",
                    help="rebuild the results from the run folders (rows run by several "
                         "processes), train none")
    ap.add_argument("--rescore", type=int, default=0, metavar="PAIRS",
                    help="re-evaluate finished rows (stable W2 on PAIRS set pairs), train none")
    a = ap.parse_args()
    TARGET = a.target
    torch.set_num_threads(1)
    runs = Path(a.runs)
    rows = a.rows.split(",")
    if a.list:
        for r in rows:
            print(r, *commands(r, runs), sep="\n  ")
        return
    path = Path(a.results)
    res = json.loads(path.read_text()) if path.is_file() else {"rows": {}}
    res.update(threads=1, omp_num_threads=os.environ.get("OMP_NUM_THREADS"),
               torch=torch.__version__)
    if a.collect:
        res["rows"] = {}
        for r in rows:
            t, g = ROWS[r]
            tdir = runs / f"teacher_{t}"
            if not finished(tdir) or (g is not None and not finished(runs / r)):
                continue
            rec = {"row": r, "commands": commands(r, runs), "teacher_dir": str(tdir),
                   "teacher_wall_s": _wall(tdir),
                   "teacher": json.loads((tdir / "metrics.json").read_text())}
            if g is not None:
                rec.update(rdmd_dir=str(runs / r), rdmd_wall_s=_wall(runs / r),
                           rdmd=json.loads((runs / r / "metrics.json").read_text()))
            res["rows"][r] = rec
        path.write_text(json.dumps(res, indent=2))
        path.with_suffix(".md").write_text(table(res))
        print(table(res))
        return
    if a.rescore:
        for r in rows:
            if r in res["rows"]:
                res["rows"][r] = rescore(res["rows"][r], a.rescore)
                path.write_text(json.dumps(res, indent=2))
        path.with_suffix(".md").write_text(table(res))
        print(table(res))
        return
    for r in rows:
        res["rows"][r] = run_row(r, runs, not a.no_progress)
        res["rows"][r]["command"] = "python " + " ".join(sys.argv)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(res, indent=2))
        path.with_suffix(".md").write_text(table(res))
        print(r, json.dumps({k: res["rows"][r].get(k) for k in ("teacher_wall_s",
                                                                "rdmd_wall_s")}),
              flush=True)


if __name__ == "__main__":
    main()

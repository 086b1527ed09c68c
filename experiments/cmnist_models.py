"""Train (or resume) and ship the colored-MNIST 2 -> 3 models, with their model card.

Runs the project's own commands — the same a user would type — then copies the weights, the
run description and the metrics into ``src/rdmd/pretrained/cmnist`` and writes
``MODEL_CARD.md`` there with the exact commands and the metrics they reached.

    python experiments/cmnist_models.py --lams 0.05,0.25,1.0
    python experiments/cmnist_models.py --teacher src/rdmd/pretrained/cmnist/teacher \
        --steps 400 --set precision=fp32 --set lr_schedule=cosine --set eval_every=40 \
        --set keep_checkpoints=20 --average 100,200,300,400 --lams 0.05,0.1,0.25,0.5,1
        # the shipped generators of the sixteenth to nineteenth sessions
    python experiments/cmnist_models.py --ship-teacher runs/cmnist/teacher_5000 \
        --steps 400 --set precision=fp32 --set lr_schedule=cosine --set keep_checkpoints=20 \
        --set val_size=100 --set select=best_val --set eval_every=20 --set teacher_guidance=2 \
        --lams 0.05,0.1,0.25,0.5,1 --where "2 CPU threads"
        # the shipped teacher and generators since the twenty-seventh session (model card)
    python experiments/cmnist_models.py --ship-only   # re-copy finished runs, rewrite card
    python experiments/cmnist_models.py ... --keep-shipped 0.05,0.5
        # train the other lambdas; those two are already shipped (their runs are gone): the
        # shipped folder stands for the run, checked to be what the command asks for
    python experiments/cmnist_models.py --rescore-shipped --lams 0.05,0.1,0.25,0.35,0.5,1.0
        # re-evaluate the shipped generators in place (current protocol); prints the card's rows
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from checkpoint_average import Run, average, generator_weights, parse_steps  # noqa: E402
from common import (  # noqa: E402
    check_reusable_run,
    requested_rdmd,
    requested_teacher,
    run_main,
    run_record,
)

from rdmd.config import (  # noqa: E402
    DistillConfig,
    TeacherConfig,
    parse_overrides,
    read_config_file,
)
from rdmd.errors import RdmdError  # noqa: E402
from rdmd.guidance import GUIDE_WEIGHTS  # noqa: E402
from rdmd.models import store_half  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SHIP = ROOT / "src" / "rdmd" / "pretrained" / "cmnist"
CLASSIFIER = SHIP / "classifier"
RECIPE = "configs/cmnist_ot_chroma_rdmd.toml"
KEEP = ("model.safetensors", "model.json", "metrics.json", "config.json", "log.csv",
        GUIDE_WEIGHTS)
COLUMNS = ("lam", "l2", "rmse", "psnr", "ssim", "hue_difference", "target_accuracy",
           "fd_cnn_cmnist", "fd_cnn_cmnist_floor")


#: the shipped teacher's overrides of configs/cmnist_teacher.toml (twenty-sixth session):
#: twice the config's steps, autoguided by its own EMA at half-way (docs/images.md)
TEACHER_SETS = ("steps=5000", "guide_at=0.5", "guidance=2", "precision=fp32")


def teacher_command(clf: str, out: str) -> list[str]:
    """The shipped teacher's ``rdmd`` arguments: the plan runs them, the card prints them."""
    return ["train-teacher", "--target", "cmnist3", "--config", "configs/cmnist_teacher.toml",
            *[arg for kv in TEACHER_SETS for arg in ("--set", kv)], "--set",
            f"classifier={clf}", "--out", out]


def check_reusable(args: list[str], out: Path) -> None:
    """A teacher or RDMD folder that already holds a run must hold the run ``args`` asks for
    (the rule of ``experiments/common.py``); the classifier is not checked."""
    if args[0] not in ("train-teacher", "distill") or not (out / "config.json").is_file():
        return
    opts: dict[str, str] = {}
    sets: list[str] = []
    for flag, value in zip(args[1::2], args[2::2], strict=True):
        if flag == "--set":
            sets.append(value)
        else:
            opts[flag] = value
    cfg = {**read_config_file(ROOT / opts["--config"]), **parse_overrides(sets)}
    if "--steps" in opts:
        cfg["steps"] = int(opts["--steps"])
    if args[0] == "train-teacher":
        requested, _ = requested_teacher(opts["--target"], **cfg)
        check_reusable_run(out, requested, TeacherConfig, "image")
    else:
        lam = ({"lam": opts["--lam"]} if "--lam" in opts
               else {"lam_range": opts["--lam-range"]})
        requested, _ = requested_rdmd(opts["--source"], ROOT / opts["--teacher"],
                                      **cfg, **lam)
        check_reusable_run(out, requested, DistillConfig, "image")


def execute(args: list[str], out: Path) -> None:
    """Run one rdmd command; a run that was interrupted is resumed instead. A folder holding
    another run than the command asks for is refused (one line), never reused."""
    check_reusable(args, out)
    if any((out / f).is_file()
           for f in ("model.json", "classifier.json", "domain_classifier.json")):
        return
    if (out / "config.json").is_file():
        args = [args[0], "--out", str(out), "--resume"]
    print("+ rdmd", " ".join(args), flush=True)
    subprocess.run([sys.executable, "-m", "rdmd.cli", *args, "--no-progress"], check=True,
                   cwd=ROOT)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", default="runs/cmnist")
    ap.add_argument("--lams", default="0.05,0.25,1.0")
    ap.add_argument("--config", default=RECIPE,
                    help=f"the generators' config file (default {RECIPE})")
    ap.add_argument("--steps", type=int, default=None,
                    help="generator iterations (default: the config file's)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="a further config override for the generators (repeatable)")
    ap.add_argument("--set-for", action="append", default=[], metavar="LAM:KEY=VALUE",
                    help="a config override for the generator at LAM only (repeatable), e.g. "
                         "0.05:ema_decay=0.99")
    ap.add_argument("--average", default=None, metavar="STEPS",
                    help="ship the average of the generator's weights at these kept "
                         "checkpoints (experiments/checkpoint_average.py), not its final ones "
                         "(a run with a generator EMA ships its EMA weights instead)")
    ap.add_argument("--teacher", default=None,
                    help="distill from this teacher instead of training RUNS/teacher (e.g. "
                         "the shipped src/rdmd/pretrained/cmnist/teacher, which then stays)")
    ap.add_argument("--ship-teacher", default=None, metavar="RUN",
                    help="first copy this finished teacher run into the shipped teacher folder "
                         "(weights and guide in float16), then distil from the shipped copy")
    ap.add_argument("--keep-shipped", default="", metavar="LAMS",
                    help="lambdas whose shipped generator stays: its folder stands for the "
                         "run (checked against the command; not retrained, not re-copied)")
    ap.add_argument("--ship-only", action="store_true")
    ap.add_argument("--where", default="one CPU thread",
                    help="what the generators ran on, for the card (the runs do not record "
                         "it), e.g. '2 CPU threads'")
    ap.add_argument("--rescore-shipped", action="store_true",
                    help="re-evaluate the shipped generators in place with the current "
                         "evaluation protocol (metrics.json, plots) and print the card's rows")
    a = ap.parse_args()
    clf = str(CLASSIFIER.relative_to(ROOT))
    if a.ship_teacher is not None:
        shipped = str(SHIP.relative_to(ROOT) / "teacher")
        if a.teacher not in (None, shipped):
            raise SystemExit("cmnist_models: --ship-teacher distils from the shipped teacher; "
                             "drop --teacher")
        run = Path(a.ship_teacher)
        if not (run / "model.json").is_file():
            raise SystemExit(f"cmnist_models: --ship-teacher {run}: not a finished teacher run "
                             "(no model.json)")
        if not a.ship_only:  # the old teacher goes only once the new one is complete
            ship(run, SHIP / "teacher")
        a.teacher = shipped
    teacher = a.teacher or f"{a.runs}/teacher"
    lams = [float(v) for v in a.lams.split(",")]
    kept = kept_lams(a.keep_shipped, lams, bool(a.average))
    plan: list[tuple[list[str], Path]] = [
        (["train-classifier", "--data", "cmnist", "--out", clf], CLASSIFIER)]
    if a.teacher is None:
        plan.append((teacher_command(clf, teacher), ROOT / teacher))
    extra = (["--steps", str(a.steps)] if a.steps is not None else [])
    extra += [arg for kv in a.set for arg in ("--set", kv)]
    per_lam = sets_for(a.set_for, lams)
    run_dirs = [SHIP / f"rdmd_lam{lam:g}" if lam in kept else ROOT / a.runs / f"rdmd_lam{lam:g}"
                for lam in lams]
    for lam, run_dir in zip(lams, run_dirs, strict=True):
        out = f"{a.runs}/rdmd_lam{lam:g}"
        own = [arg for kv in per_lam.get(lam, []) for arg in ("--set", kv)]
        plan.append((["distill", "--source", "cmnist2", "--teacher", teacher, "--lam",
                      f"{lam:g}", "--config", a.config, *extra, *own, "--set",
                      f"classifier={clf}", "--set", "target_class=3", "--out", out],
                     run_dir))
        if lam in kept:  # before anything trains: a kept generator is what its command makes
            try:
                check_reusable(plan[-1][0], run_dir)
            except RdmdError as e:
                raise SystemExit(f"cmnist_models: --keep-shipped {lam:g}: the shipped generator "
                                 f"is not what this command trains ({str(e).split('; ')[0]}); "
                                 "drop it from --keep-shipped to retrain it") from None
    if a.rescore_shipped:
        from common import reevaluate

        # the card is not rewritten: it also holds rows of generators no longer shipped and
        # the conditioned model's section; print the new rows to paste into its table
        for lam in lams:
            r = reevaluate(SHIP / f"rdmd_lam{lam:g}", classifier=clf, target_class=3)
            print(table_row([r.get(c, "") for c in COLUMNS]))
        return
    if not a.ship_only:
        for args, out in plan:
            execute(args, out)
    commands = ["rdmd " + " ".join(args) for args, _ in plan]
    if a.teacher is not None:
        commands.insert(1, f"# the teacher {a.teacher} was trained earlier by: rdmd "
                           + " ".join(teacher_command(clf, a.ship_teacher
                                                      or "runs/cmnist/teacher_5000")))
    rows, finals, weights = [], [], []
    for lam, out in zip(lams, run_dirs, strict=True):
        finals.append(json.loads((out / "metrics.json").read_text()))
        ema = float(run_record(out)["config"].get("ema_decay") or 0.0)
        chosen = json.loads((out / "model.json").read_text()).get("selected")
        weights.append(shipped_weights(ema, chosen, a.average))
        if a.average and not ema and not chosen:
            avg = out.with_name(out.name + "_avg")
            if not (avg / "model.json").is_file():
                steps = parse_steps(a.average)
                Run(out).write(average([generator_weights(out, s) for s in steps]), steps, avg)
            commands.append(f"python experiments/checkpoint_average.py --run "
                            f"{a.runs}/{out.name} --steps {a.average} --write "
                            f"{a.runs}/{avg.name}")
            out = avg
        rows.append(json.loads((out / "metrics.json").read_text()))
        if lam not in kept:
            ship(out, SHIP / f"rdmd_lam{lam:g}")
    if a.teacher is None:
        ship(ROOT / teacher, SHIP / "teacher")
    write_card(commands, rows,
               json.loads((ROOT / teacher / "metrics.json").read_text()),
               json.loads((CLASSIFIER / "classifier.json").read_text()),
               run_dirs, finals if a.average else None, a.average, weights, per_lam, a.where)


def shipped_weights(ema: float, chosen: dict | None, average: str | None) -> str:
    """What a run ships, for the card's ``weights`` column: the weights its validation
    chose (``select = "best_val"``, whose EMA if it kept one), else its EMA, else the
    average of checkpoints asked for, else its final weights."""
    if chosen:
        return (f"best validation (iteration {chosen['step']}"
                + (f", EMA {ema:g})" if ema else ")"))
    return f"EMA {ema:g}" if ema else f"average {average}" if average else "final"


def kept_lams(spec: str, lams: list[float], averaged: bool) -> set[float]:
    """``--keep-shipped`` as a set of lambdas; one not in ``--lams`` is refused in one line,
    and so is any with ``--average`` (the shipped folder holds no checkpoints to average)."""
    try:
        kept = {float(v) for v in spec.split(",") if v.strip()}
    except ValueError:
        raise SystemExit(f"cmnist_models: --keep-shipped wants lambdas like 0.05,0.5, "
                         f"got {spec!r}") from None
    if missing := sorted(kept - set(lams)):
        raise SystemExit(f"cmnist_models: --keep-shipped lambda {missing[0]:g} is not in "
                         "--lams")
    if kept and averaged:
        raise SystemExit("cmnist_models: --keep-shipped cannot go with --average (a shipped "
                         "generator keeps no checkpoints to average)")
    for lam in kept:
        if not (SHIP / f"rdmd_lam{lam:g}" / "model.json").is_file():
            raise SystemExit(f"cmnist_models: --keep-shipped {lam:g}: no shipped generator "
                             f"at {SHIP / f'rdmd_lam{lam:g}'}")
    return kept


def sets_for(specs: list[str], lams: list[float]) -> dict[float, list[str]]:
    """``--set-for LAM:KEY=VALUE`` as {lambda: [KEY=VALUE, ...]}; a lambda not trained here
    is refused in one line."""
    out: dict[float, list[str]] = {}
    for spec in specs:
        lam_s, sep, kv = spec.partition(":")
        try:
            lam = float(lam_s)
        except ValueError:
            lam = None
        if not sep or "=" not in kv or lam is None:
            raise SystemExit(f"cmnist_models: --set-for wants LAM:KEY=VALUE, got {spec!r}")
        if lam not in lams:
            raise SystemExit(f"cmnist_models: --set-for {spec!r}: lambda {lam:g} is not in "
                             f"--lams")
        out.setdefault(lam, []).append(kv)
    return out


def ship(run_dir: Path, dest: Path, half: bool = True) -> None:
    """Copy a finished run's model, metrics and plots; weights in float16 unless ``half`` is
    false (the repository's model files stay under 30 MB: tests/test_pretrained.py).

    Written to a fresh folder beside ``dest`` that replaces it only once complete: an
    interrupted copy leaves the shipped model as it was, and nothing of the model it replaces
    (a plot at a lambda the new run did not draw) survives in the new one."""
    new = dest.with_name(dest.name + ".new")
    shutil.rmtree(new, ignore_errors=True)
    new.mkdir(parents=True)
    for name in KEEP:
        if (run_dir / name).is_file():
            shutil.copy2(run_dir / name, new / name)
    if half:
        store_half(new)
        if (new / GUIDE_WEIGHTS).is_file():  # an autoguided teacher's guide
            store_half(new, GUIDE_WEIGHTS)
    if (run_dir / "plots").is_dir():
        shutil.copytree(run_dir / "plots", new / "plots")
    meta = json.loads((new / "model.json").read_text())
    for key in ("teacher", "source", "target"):  # make the shipped card path-independent
        if isinstance(meta.get(key), str) and "/" in meta[key]:
            meta[key] = Path(meta[key]).name
    (new / "model.json").write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    shutil.rmtree(dest, ignore_errors=True)
    new.rename(dest)


def fmt(v: object) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def table_row(values: list[object]) -> str:
    """One row of a model card's markdown table."""
    return "| " + " | ".join(fmt(v) for v in values) + " |"


def recipe(run_dir: Path, where: str = "one CPU thread") -> str:
    """One line of the generators' recipe, read from a finished run (what ran, not what a
    config file says today); ``where`` it ran is not in the run's records."""
    rec = run_record(run_dir)
    c = rec["config"]
    parts = [f"{c['steps']} iterations, batch {c['batch_size']}",
             f"{c.get('fake_steps', 1)} fake-score update(s) per generator update",
             f"cost `{c['cost']}`", f"generator lr {c['lr_generator']:g}",
             f"fake lr {c['lr_fake']:g} ({c['lr_schedule']} schedule)",
             f"sigma_g {c['sigma_g']:g}", f"precision {c['precision']}"]
    if float(c.get("teacher_guidance") or 1.0) != 1.0:
        parts.append(f"the teacher's autoguided score at weight {c['teacher_guidance']:g}")
    if c.get("init_from"):  # a warm start runs no OT start of its own
        parts.append(f"warm start from `{c['init_from']}` (its networks and Adam moments; "
                     "no OT start)")
    elif c.get("ot_start"):
        parts.append(f"pixel OT start ({c['ot_start']} steps on {c['ot_start_atoms']} "
                     "teacher samples)")
    wall = rec.get("wall_s")
    if not wall:  # runs of the CLI record no provenance: the log's clock
        wall = (log_clock(run_dir / "log.csv") or (0, 0.0))[1]
    if wall:
        line = f"about {wall / 60:.0f} minutes of wall time on {where}"
        before = warm_start_clock(c.get("init_from"))
        if before is not None:  # the card's time then covers the run it started from too
            line += (f", after the {before[0]} iterations of the run it starts from "
                     f"(about {before[1] / 60:.0f} minutes)")
        parts.append(line)
    return "; ".join(parts)


def log_clock(log: Path, upto: int | None = None) -> tuple[int, float] | None:
    """Step of a run log's last row (at or before step ``upto``) and the seconds of training
    up to it, summed over the sessions of a resumed run (its clock restarts at each)."""
    if not log.is_file():
        return None
    with open(log, newline="") as f:
        rows = [r for r in csv.DictReader(f)
                if r.get("time_s") and (upto is None or int(r["step"]) <= upto)]
    if not rows:
        return None
    total = prev = 0.0
    for r in rows:
        t = float(r["time_s"])
        if t < prev:
            total += prev
        prev = t
    return int(rows[-1]["step"]), total + prev


def warm_start_clock(init_from: str | None) -> tuple[int, float] | None:
    """Iterations and seconds of the run a warm start began from, up to its checkpoint
    (None where that run's log is not at hand, e.g. on another machine)."""
    if not init_from:
        return None
    src = Path(init_from)
    if not src.is_absolute() and not src.exists():  # recorded from the repository root
        src = ROOT / src
    if src.name.startswith("step_") and src.name[5:].isdigit():  # RUN/checkpoints/step_N
        return log_clock(src.parent.parent / "log.csv", int(src.name[5:]))
    return log_clock(src / "log.csv")


RESULTS = ROOT / "experiments" / "results"
#: the shipped teacher's independent checks (docs/images.md, twenty-sixth session)
TEACHER_FD = ("cmnist_teacher_5000_fd_matched.json", "cmnist_teacher_5000_fd_n250.json")
TEACHER_COPIES = "cmnist_teacher_copies.json"


def teacher_checks() -> str:
    """The card's sentence on the teacher under the generators' protocol (several noise draws
    of ``experiments/teacher_fd_matched.py``) and its copy check, read from their results."""
    parts = []
    for name in TEACHER_FD:
        if not (RESULTS / name).is_file():
            continue
        r = json.loads((RESULTS / name).read_text())
        floor = r["draws"][0]["fd_floor"]
        for st in r["settings"]:
            parts.append(f"{len(st['draws'])} draws at n = {r['n']}, guidance "
                         f"{st['guidance']:g}: {st['fd_mean']:.2f} vs floor {floor:.2f} "
                         f"({st['fd_mean'] / floor:.2f}x)")
    line = (" Under the generators' protocol (`experiments/teacher_fd_matched.py`, held-out "
            "3s, mean over noise draws): " + "; ".join(parts) + ".") if parts else ""
    if (RESULTS / TEACHER_COPIES).is_file():
        rows = json.loads((RESULTS / TEACHER_COPIES).read_text())["rows"]
        mine = [r for r in rows if "teacher_5000" in r["set"]]
        if mine:
            line += (f" It copies {mine[0]['copy_rate']:.0%} of {mine[0]['n']} samples from its "
                     "training images (`experiments/teacher_copies.py`).")
    return line


COND_HEADING = "## `rdmd_cond`"


def write_card(commands: list[str], rows: list[dict], teacher: dict, clf: dict,
               runs: list[Path] | None = None, finals: list[dict] | None = None,
               averaged: str | None = None, weights: list[str] | None = None,
               per_lam: dict[float, list[str]] | None = None,
               where: str = "one CPU thread") -> None:
    """The card's fixed-generator part; a ``rdmd_cond`` section already in the card (written
    by hand from ``cmnist_lambda_front.py``'s tables) is kept. ``weights`` says per row which
    weights ship (final, EMA, an average of checkpoints); ``per_lam`` the overrides one
    generator was trained with beyond the common recipe (``--set-for``)."""
    per_lam = per_lam or {}
    cols = [*COLUMNS, "weights"] if weights else list(COLUMNS)
    table = [table_row(cols), "|" + "---|" * len(cols)]
    table += [table_row([r.get(c, "") for c in COLUMNS] + ([weights[i]] if weights else []))
              for i, r in enumerate(rows)]
    lams = [float(r.get("lam", "nan")) for r in rows]
    plain = [i for i, lam in enumerate(lams) if lam not in per_lam] or [0]
    how = recipe(runs[plain[0]], where) if runs else "see the commands"
    for lam, kvs in sorted(per_lam.items()):
        how += f"; lambda {lam:g} also with " + ", ".join(f"`{kv}`" for kv in kvs)
    if averaged:
        how += (f". The shipped weights are the uniform average of the generator's weights at "
                f"iterations {averaged} (Polyak averaging after the fact; docs/images.md)")
        if weights and any(not w.startswith("average") for w in weights):
            how += (", except where the `weights` column says otherwise (a generator that "
                    "kept an EMA ships it; one that chose on validation ships its choice)")
    if weights and any(w.startswith("best validation") for w in weights):
        how += (". `best validation`: the run held out `val_size` of the training 2s "
                "(its config.json), scored its weights on them at every evaluation against real 3s "
                "the test never uses, and ships the lowest (`select = \"best_val\"`)")
    final_table = ""
    averaged_rows = [r for i, r in enumerate(finals or [])
                     if not weights or weights[i].startswith("average")]
    if averaged_rows:
        final_table = "\n".join(
            ["", "The averaged runs' final weights (not shipped), same protocol:", "",
             table_row(list(COLUMNS)), "|" + "---|" * len(COLUMNS),
             *[table_row([r.get(c, "") for c in COLUMNS]) for r in averaged_rows], ""])
    old = (SHIP / "MODEL_CARD.md").read_text() if (SHIP / "MODEL_CARD.md").is_file() else ""
    cond = old[old.index(COND_HEADING):] if COND_HEADING in old else ""
    card = f"""# Shipped models: colored MNIST 2 -> 3

Trained on CPU by the project's own commands (run from the repository root; the script
`experiments/cmnist_models.py` runs exactly these and copies the results here):

```
{chr(10).join(commands)}
```

- `classifier/`: rdmd's colored-MNIST digit classifier (SmallConvNet, hue-augmented), test
  accuracy {clf.get('test_accuracy', float('nan')):.4f} on the 1000 held-out images of all
  digits. Its 128-d features define `fd_cnn_cmnist`, a Frechet distance that is **not** FID.
- `teacher/`: EDM teacher of colored 3s (UNet2DModel `small32`, ~1.06M parameters), 400
  training images, 5000 steps at batch 64 (68 minutes on 2 CPU threads), autoguided by its
  own EMA at step 2500 (`guide.safetensors`, weight 2: two networks per step,
  {teacher.get('nfe')} network calls for {teacher.get('sampler_steps')} Heun steps). Its run's
  own evaluation: fd_cnn_cmnist {fmt(teacher.get('fd_cnn_cmnist'))} vs floor
  {fmt(teacher.get('fd_cnn_cmnist_floor'))} (n = {teacher.get('fd_n')}, one draw).{teacher_checks()}
- `rdmd_lam*/`: one-step generators from colored 2s, one per lambda: {how}. Weights are
  stored in float16 (`rdmd.models.store_half`; they load into float32 networks) to keep the
  repository's model files under 30 MB.

Honest notes: the teacher's weights and guide are stored in float16 and the generators were
distilled from these stored weights (the commands above); its figures were measured on the
float32 run. The teacher it replaces (2500 steps, unguided, 4.05 vs 1.14 at n = 250) and the
generators distilled from it are in git history (docs/images.md). The held-out set is small (100
colored 2s; the Frechet distance uses 100 outputs against 100 real 3s, its floor 100 vs 100
disjoint real 3s), so these numbers carry sampling noise of several units of FD.

Metrics of the generators on the 100 held-out colored 2s (L2 = mean per-image Euclidean norm
on [0, 1] images, EGSDE's definition; hue difference in turns; fd with its floor from two
disjoint halves of real 3s, n = {rows[0].get('fd_n') if rows else ''}):

{chr(10).join(table)}
{final_table}"""
    if cond:
        card += "\n" + cond
    (SHIP / "MODEL_CARD.md").write_text(card)
    print(card)


if __name__ == "__main__":
    run_main(main)

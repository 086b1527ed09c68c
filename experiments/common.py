"""What every vector experiment does: one teacher, RDMD over a lambda grid, a results table.

Reuse. A run folder that already holds a run is reused (finished) or resumed (interrupted)
only if its saved ``config.json`` describes the requested run: the same job, the same data
specs (target; source, teacher folder and target for RDMD) and the same value of every
config key once the data kind's defaults are filled in (read with
:func:`rdmd.config.config_from_saved`, so a damaged file is a one-line error). Otherwise the
experiment stops with a one-line :class:`~rdmd.errors.RdmdError` that names the first
differing key, the saved and the requested value, and how to proceed (another ``--runs`` or
``--tag``, or delete the folder). This refusal was chosen over folders keyed by a hash of
the config so run folders keep the readable names the docs cite (``runs/fig3/8gaussians/
lam0.05``), and a changed flag is never silently answered by an old run. An interrupted
experiment is re-run with the same command.

Provenance. Every training call appends a session to the run's ``provenance.json`` when it
starts (command line, torch threads, torch version, start time) and fills in its wall time
when it ends, so an interrupted session shows ``wall_s: null``. Result files record, for
each run they used, its saved description and provenance (:func:`run_record`), not the
command that wrote the result file. Runs trained before provenance existed have only
``wall_time.json`` (the wall time of the call that finished them); it is reported as such.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch

from rdmd.backbones.mlp import default_encoder
from rdmd.config import (
    DistillConfig,
    TeacherConfig,
    config_from_saved,
    data_kind,
    fill_kind_defaults,
    resolve_config,
    to_dict,
)
from rdmd.data.images import is_image_spec
from rdmd.data.registry import vector_dim
from rdmd.errors import RdmdError
from rdmd.evaluation import PROTOCOL, write_translation_report
from rdmd.training import distill, train_teacher
from rdmd.training.rundir import abs_if_path, read_run

PROVENANCE = "provenance.json"


def _done(d: Path) -> bool:
    return (d / "model.json").is_file() and (d / "metrics.json").is_file()


def teacher_dir(parent: Path, n_train: int) -> Path:
    """Teachers trained on a non-default number of built-in samples get their own folder."""
    return parent / ("teacher" + ("" if n_train == TeacherConfig.n_train else f"_n{n_train}"))


def _kind(spec: str) -> str:
    """The data kind whose defaults fill the unset keys. Experiments keep the vector
    defaults on 2-D data too (the paper's network and schedule, which their documented
    numbers were measured with): :func:`requested_teacher` and :func:`requested_rdmd` pin
    the two keys the "plane" defaults would otherwise fill (rdmd.config.PLANE_DEFAULTS)."""
    return "image" if is_image_spec(spec) else "vector"


def _plane_dim(spec: str) -> int | None:
    """The dimension of 2-D ("plane") data, whose keys the experiments pin; None otherwise
    (images and d >= 3 save their configs as before)."""
    if _kind(spec) != "vector":
        return None
    dim = vector_dim(spec)
    return dim if data_kind("vector", dim) == "plane" else None


SHIPPED = "src/rdmd/pretrained/"


def _portable(value: Any) -> Any:
    """A path into the repository's shipped models, from that folder on: a run records the
    absolute path of the checkout it ran in, and the same shipped model is the same run in
    another checkout (a fresh clone, the next session's)."""
    if isinstance(value, str) and f"/{SHIPPED}" in value:
        return value[value.index(SHIPPED):]
    return value


def check_reusable_run(out: Path, requested: dict[str, Any], cls: type, kind: str) -> None:
    """Refuse, in one line, a run folder whose saved run is not the requested one."""
    saved = read_run(out)
    cfg = fill_kind_defaults(config_from_saved(cls, saved["config"], out / "config.json"), kind)
    have = {k: v for k, v in saved.items() if k != "config"} | to_dict(cfg)
    want = {k: v for k, v in requested.items() if k != "config"} | requested["config"]
    have, want = json.loads(json.dumps(have)), json.loads(json.dumps(want))
    have, want = ({k: _portable(v) for k, v in d.items()} for d in (have, want))
    diff = [k for k in dict.fromkeys([*want, *have]) if have.get(k) != want.get(k)]
    if diff:
        k = diff[0]
        more = f" (and {len(diff) - 1} more: {', '.join(diff[1:])})" if len(diff) > 1 else ""
        raise RdmdError(f"{out} holds a run with {k}={have.get(k)!r} but this experiment asks "
                        f"for {k}={want.get(k)!r}{more}; choose another --runs folder (or "
                        f"--tag, for RDMD runs), or delete {out} to train it anew")


def requested_teacher(target: str, **cfg: Any) -> tuple[dict[str, Any], TeacherConfig]:
    """The description ``train_teacher`` would save for these settings (defaults filled)."""
    c = resolve_config(TeacherConfig, [cfg], _kind(target))
    dim = _plane_dim(target)
    if c.encoder is None and dim is not None:
        c.encoder = list(default_encoder(dim))
    return {"job": "teacher", "target": abs_if_path(target), "config": to_dict(c)}, c


def requested_rdmd(source: str, teacher: Path, target: str | None = None, **cfg: Any
                   ) -> tuple[dict[str, Any], DistillConfig]:
    """The description ``distill`` would save for these settings (defaults filled)."""
    c = resolve_config(DistillConfig, [cfg], _kind(source))
    if c.generator_fourier is None and c.generator == "denoiser" and _plane_dim(source):
        c.generator_fourier = []
    if target is None:  # distill stores the teacher's target when none is given
        target = json.loads((teacher / "model.json").read_text())["target"]
    return {"job": "distill", "source": abs_if_path(source),
            "teacher": str(Path(teacher).resolve()), "target": abs_if_path(target),
            "config": to_dict(c)}, c


def ensure_teacher(target: str, out: Path, progress: bool = True, **cfg: Any) -> Path:
    """Train the teacher, resume it, or reuse it: whichever the folder allows (see above)."""
    requested, c = requested_teacher(target, **cfg)
    started = (out / "config.json").is_file()
    if started:
        check_reusable_run(out, requested, TeacherConfig, _kind(target))
    if not _done(out):
        _train(out, started, lambda: train_teacher(target, out, c, resume=started,
                                                   progress=progress))
    elif json.loads((out / "metrics.json").read_text()).get("protocol") != PROTOCOL:
        from rdmd.data import load_domain
        from rdmd.evaluation import evaluate_teacher

        run = read_run(out)
        c = config_from_saved(TeacherConfig, run["config"], out / "config.json")
        evaluate_teacher(out, load_domain(run["target"], c.n_train, c.n_test, c.seed,
                                          c.image_size, c.image_channels,
                                          recursive=c.recursive),
                         n_steps=c.sample_steps)
    return out


def ensure_rdmd(source: str, teacher: Path, out: Path, progress: bool = True,
                **cfg: Any) -> dict[str, Any]:
    """Train, resume or reuse one RDMD run; its metrics with ``wall_s`` and ``run`` (the
    run's saved description and provenance, :func:`run_record`)."""
    requested, c = requested_rdmd(source, teacher, **cfg)
    started = (out / "config.json").is_file()
    if started:
        check_reusable_run(out, requested, DistillConfig, _kind(source))
    if not _done(out):
        _train(out, started, lambda: distill(source, teacher, out, c, resume=started,
                                             progress=progress))
    res = json.loads((out / "metrics.json").read_text())
    if res.get("protocol") != PROTOCOL:
        res = reevaluate(out)
    record = run_record(out)
    res["wall_s"] = record["wall_s"]
    res["run"] = record
    return res


def reevaluate(run_dir: Path, **evaluation: Any) -> dict[str, Any]:
    """Recompute a finished run's metrics with the current evaluation protocol;
    ``evaluation`` sets evaluation-only keys (``classifier``, ``target_class``) for runs
    trained without them."""
    from rdmd.data import load_domain
    from rdmd.models import load_model

    run = read_run(run_dir)
    cfg = config_from_saved(DistillConfig, run["config"], run_dir / "config.json")
    for key, value in evaluation.items():
        if key not in ("classifier", "target_class", "floor_pairs"):
            raise RdmdError(f"reevaluate: {key} is not an evaluation key")
        setattr(cfg, key, value)
    model = load_model(run_dir)
    shp = model.meta["data_shape"]  # folders at the model's shape (rdmd.data.folders)
    size, ch = (shp[-1], shp[0]) if len(shp) == 3 else (None, None)
    src = load_domain(run["source"], cfg.n_train, cfg.n_test, cfg.seed, size, ch,
                      recursive=cfg.recursive)
    tgt = load_domain(run["target"] or model.meta["target"], cfg.n_test, cfg.n_test, cfg.seed,
                      size, ch, recursive=cfg.recursive)
    return write_translation_report(run_dir, model.net, model.normalizer, src, tgt, cfg)


def _train(out: Path, resumed: bool, fn: Callable[[], Any]) -> None:
    """Run one training call, recording it as a session in the run's provenance.

    The session is written before training starts (so an interrupted one is on record,
    ``wall_s`` null) and completed after; the folder may not exist yet, and a call that
    fails before the run starts leaves only this file, which a later call appends to.
    """
    out.mkdir(parents=True, exist_ok=True)
    path = out / PROVENANCE
    prov = json.loads(path.read_text()) if path.is_file() else {"sessions": []}
    session: dict[str, Any] = {
        "command": " ".join(sys.argv),
        "torch_threads": torch.get_num_threads(), "torch": torch.__version__,
        "started": datetime.now(UTC).isoformat(timespec="seconds"), "resumed": resumed,
        "wall_s": None}
    prov["sessions"].append(session)
    path.write_text(json.dumps(prov, indent=2))
    t0 = time.perf_counter()
    fn()
    session["wall_s"] = round(time.perf_counter() - t0, 1)
    path.write_text(json.dumps(prov, indent=2))


def run_record(run_dir: Path) -> dict[str, Any]:
    """How a run was produced, for a results file: its folder, saved description
    (``config.json``: job, data specs, every config key) and provenance (the training
    sessions). ``wall_s`` is the sum of the sessions' wall times (interrupted sessions, whose
    time is unknown, are not counted); for runs from before provenance it is the
    ``wall_time.json`` of the call that finished the run."""
    run = read_run(run_dir)
    prov_path, legacy = run_dir / PROVENANCE, run_dir / "wall_time.json"
    prov = json.loads(prov_path.read_text()) if prov_path.is_file() else None
    if prov is not None:
        walls = [s["wall_s"] for s in prov["sessions"] if s.get("wall_s") is not None]
        wall = round(sum(walls), 1) if walls else None
    elif legacy.is_file():
        wall = json.loads(legacy.read_text())["wall_s"]
        prov = {"sessions": None, "note": "trained before provenance was recorded; wall_s "
                                          "is that of the call that finished the run"}
    else:
        wall = None
    return {"dir": str(run_dir), **run, "provenance": prov, "wall_s": wall}


def run_main(main: Callable[[], None]) -> None:
    """Run an experiment's ``main``; a user error (a run folder that does not match, bad
    data) is one line on stderr and exit status 2, as with the ``rdmd`` command."""
    try:
        main()
    except RdmdError as e:
        print(f"{Path(sys.argv[0]).name}: error: {e}", file=sys.stderr)
        sys.exit(2)


def markdown_table(rows: list[dict[str, Any]], columns: list[str]) -> str:
    def fmt(v: Any) -> str:
        if isinstance(v, float):
            return f"{v:.4g}"
        return "" if v is None else str(v)

    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(fmt(r.get(c)) for c in columns) + " |" for r in rows]
    return "\n".join(lines)


def finished(d: Path) -> bool:
    """A run folder whose model and metrics are both written."""
    return (d / "model.json").is_file() and (d / "metrics.json").is_file()


#: the ``rdmd`` command of this interpreter (experiments that run the CLI as a user would)
RDMD = [sys.executable, "-m", "rdmd"]


def run_rdmd(args: list[str], out: Path, log: Path | None = None) -> float | None:
    """Run ``rdmd ARGS`` (with ``--resume`` if ``out`` holds a started run) unless ``out`` is
    finished; its wall time, None when nothing ran. Output goes to ``log`` if given."""
    if finished(out):
        return None
    cmd = [*RDMD, *args, *(["--resume"] if (out / "config.json").is_file() else [])]
    t0 = time.perf_counter()
    if log is None:
        subprocess.run(cmd, check=True)
    else:
        with open(log, "a") as f:
            subprocess.run(cmd, check=True, stdout=f, stderr=subprocess.STDOUT)
    return round(time.perf_counter() - t0, 1)


def timed(fn: Callable[[], Any], out: Path) -> float:
    """Run ``fn`` unless ``out`` is finished; the wall time of the call that finished it."""
    stamp = out / "wall_time.json"
    if not finished(out):
        t0 = time.perf_counter()
        fn()
        stamp.write_text(json.dumps({"wall_s": round(time.perf_counter() - t0, 1)}))
    return json.loads(stamp.read_text())["wall_s"] if stamp.is_file() else float("nan")

"""What every vector experiment does: one teacher, RDMD over a lambda grid, a results table.

Finished runs are reused and unfinished ones resumed, so an interrupted experiment is
re-run with the same command.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from rdmd.config import DistillConfig, TeacherConfig
from rdmd.evaluation import PROTOCOL, write_translation_report
from rdmd.training import distill, train_teacher


def _done(d: Path) -> bool:
    return (d / "model.json").is_file() and (d / "metrics.json").is_file()


def teacher_dir(parent: Path, n_train: int) -> Path:
    """Teachers trained on a non-default number of built-in samples get their own folder."""
    return parent / ("teacher" + ("" if n_train == TeacherConfig.n_train else f"_n{n_train}"))


def ensure_teacher(target: str, out: Path, progress: bool = True, **cfg: Any) -> Path:
    if not _done(out):
        t0 = time.perf_counter()
        train_teacher(target, out, TeacherConfig(**cfg),
                      resume=(out / "config.json").is_file(), progress=progress)
        _stamp(out, time.perf_counter() - t0)
    elif json.loads((out / "metrics.json").read_text()).get("protocol") != PROTOCOL:
        from rdmd.data import load_domain
        from rdmd.evaluation import evaluate_teacher

        run = json.loads((out / "config.json").read_text())
        c = TeacherConfig(**run["config"])
        evaluate_teacher(out, load_domain(run["target"], c.n_train, c.n_test, c.seed),
                         n_steps=c.sample_steps)
    return out


def ensure_rdmd(source: str, teacher: Path, out: Path, progress: bool = True,
                **cfg: Any) -> dict[str, Any]:
    if not _done(out):
        t0 = time.perf_counter()
        distill(source, teacher, out, DistillConfig(**cfg),
                resume=(out / "config.json").is_file(), progress=progress)
        _stamp(out, time.perf_counter() - t0)
    res = json.loads((out / "metrics.json").read_text())
    if res.get("protocol") != PROTOCOL:
        res = reevaluate(out)
    timing = out / "wall_time.json"
    if timing.is_file():
        res["wall_s"] = json.loads(timing.read_text())["wall_s"]
    return res


def reevaluate(run_dir: Path) -> dict[str, Any]:
    """Recompute a finished run's metrics with the current evaluation protocol."""
    from rdmd.data import load_domain
    from rdmd.models import load_model

    run = json.loads((run_dir / "config.json").read_text())
    cfg = DistillConfig(**run["config"])
    src = load_domain(run["source"], cfg.n_train, cfg.n_test, cfg.seed)
    model = load_model(run_dir)
    tgt = load_domain(run["target"] or model.meta["target"], cfg.n_test, cfg.n_test, cfg.seed)
    return write_translation_report(run_dir, model.net, model.normalizer, src, tgt, cfg)


def _stamp(out: Path, seconds: float) -> None:
    """Wall time of the (last) call that finished the run; resumed runs count only the tail."""
    (out / "wall_time.json").write_text(json.dumps({"wall_s": round(seconds, 1)}))


def markdown_table(rows: list[dict[str, Any]], columns: list[str]) -> str:
    def fmt(v: Any) -> str:
        if isinstance(v, float):
            return f"{v:.4g}"
        return "" if v is None else str(v)

    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(fmt(r.get(c)) for c in columns) + " |" for r in rows]
    return "\n".join(lines)

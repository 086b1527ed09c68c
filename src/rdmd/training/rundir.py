"""A run's folder: what it holds, and how a request becomes a run description, once.

``config.json`` holds the job, its data arguments and the whole resolved config. A fresh run
refuses a folder that already holds a run; a resumed run reads the folder's description back
and may change only what :func:`rdmd.config.apply_resume_changes` allows. The CLI, the Python
API, the sweep and the experiments all go through :func:`prepare_run`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rdmd import checkpoint as ckpt
from rdmd.config import (
    C,
    apply_resume_changes,
    config_from_saved,
    resolve_config,
    to_dict,
)
from rdmd.errors import RdmdError

CONFIG_FILE = "config.json"
LOG_FILE = "log.csv"
METRICS_FILE = "metrics.json"
CHECKPOINTS = "checkpoints"


def abs_if_path(spec: str | None) -> str | None:
    """Files and folders are stored absolute, so a run resumes from any working directory;
    built-in names stay as they are."""
    if spec is None:
        return None
    try:
        p = Path(spec)
        return str(p.resolve()) if p.exists() else spec
    except OSError:
        return spec


def as_layers(config: Any) -> list[dict[str, Any] | None]:
    """Config layers from what callers pass: ``None``, a dict of keys, a list of such dicts
    (applied in order), or a config dataclass (every key given)."""
    if config is None:
        return [{}]
    if isinstance(config, list):
        return config
    if dataclasses.is_dataclass(config) and not isinstance(config, type):
        return [to_dict(config)]
    return [config]


def read_run(out_dir: Path) -> dict[str, Any]:
    """The saved description of the run in ``out_dir`` (its ``config.json``)."""
    cfg_path = out_dir / CONFIG_FILE
    if not cfg_path.is_file():
        raise RdmdError(f"{out_dir} holds no run ({CONFIG_FILE} missing)")
    run = ckpt.read_json(cfg_path)
    if not isinstance(run, dict) or "config" not in run:
        raise RdmdError(f"{cfg_path}: not a run description (no 'config')")
    return run


def load_run_config(cls: type[C], out_dir: str | Path) -> C:
    """The validated config of a finished or running run (for evaluation and experiments)."""
    out = Path(out_dir)
    return config_from_saved(cls, read_run(out)["config"], out / CONFIG_FILE)


def prepare_run(out_dir: Path, job: str, cls: type[C], data: dict[str, str | None],
                layers: list[dict[str, Any] | None], kind: Callable[[dict[str, Any]], str],
                resume: bool) -> tuple[dict[str, Any], C]:
    """The run's description and config, without writing anything yet.

    ``data`` are the run's data arguments (``None``: not given); ``layers`` the config
    layers in order (file, ``--set``, flags or keyword arguments); ``kind`` tells vector or
    image data from the data arguments (it fills the data-dependent defaults).
    """
    if resume:
        try:
            run = read_run(out_dir)
        except RdmdError as e:
            raise RdmdError(f"--resume: {e}") from None
        if run.get("job") != job:
            raise RdmdError(f"--resume: {out_dir} holds a {run.get('job')} run, not {job}")
        for key, value in data.items():
            if value is not None and abs_if_path(value) != run.get(key):
                raise RdmdError(f"--resume continues the saved run with its saved data; its "
                                f"{key} is {run.get(key)!r}, got {value!r}")
        cfg = config_from_saved(cls, run["config"], out_dir / CONFIG_FILE)
        cfg = apply_resume_changes(cfg, layers)
        return {**run, "config": to_dict(cfg)}, cfg
    if (out_dir / CONFIG_FILE).exists() or (out_dir / CHECKPOINTS).exists():
        raise RdmdError(f"{out_dir} already holds a run; pass --resume to continue it "
                        "or choose another --out")
    resolved = {k: abs_if_path(v) for k, v in data.items()}
    cfg = resolve_config(cls, layers, kind(resolved))
    return {"job": job, **resolved, "config": to_dict(cfg)}, cfg


def start_run(out_dir: Path, run: dict[str, Any]) -> None:
    """Create the run folder once every input has been checked."""
    out_dir.mkdir(parents=True, exist_ok=True)
    ckpt.atomic_write_json(out_dir / CONFIG_FILE, run)

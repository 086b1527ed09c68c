"""A run's folder: what it holds, and how a request becomes a run description, once.

``config.json`` holds the job, its data arguments and the whole resolved config. A fresh run
refuses a folder that already holds a run; a resumed run reads the folder's description back
and may change only what :func:`rdmd.config.apply_resume_changes` allows. The CLI, the Python
API, the sweep and the experiments all go through :func:`prepare_run`.
"""

from __future__ import annotations

import dataclasses
import shlex
import shutil
import signal
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rdmd import checkpoint as ckpt
from rdmd.config import (
    C,
    apply_resume_changes,
    config_from_saved,
    layered_config,
    resolve_config,
    to_dict,
    validate,
)
from rdmd.distributed import env_world
from rdmd.errors import RdmdError, RunInterrupted
from rdmd.training.lock import RunLock
from rdmd.training.stop import StopSignals, raise_on_sigterm

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


def check_layers(cls: type[C], layers: list[dict[str, Any] | None]) -> None:
    """Keys, types and ranges of the given layers alone, checked before the run folder is
    touched (the full config is resolved later, once the data kind is known)."""
    validate(layered_config(cls, layers), whole=False)


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
        if ckpt.latest_checkpoint(out_dir / CHECKPOINTS) is None:
            raise RdmdError(f"{out_dir} holds a run that stopped before its first "
                            "checkpoint; pass --resume to start it again with its saved "
                            f"settings, or delete {out_dir} to start afresh")
        raise RdmdError(f"{out_dir} already holds a run; pass --resume to continue it "
                        "or choose another --out")
    resolved = {k: abs_if_path(v) for k, v in data.items()}
    cfg = resolve_config(cls, layers, kind(resolved))
    return {"job": job, **resolved, "config": to_dict(cfg)}, cfg


def start_run(out_dir: Path, run: dict[str, Any]) -> None:
    """Create the run folder once every input has been checked."""
    out_dir.mkdir(parents=True, exist_ok=True)
    ckpt.atomic_write_json(out_dir / CONFIG_FILE, run)


#: the CLI sub-command of each job, for the "continue with" line
COMMANDS = {"teacher": "train-teacher", "distill": "distill"}
#: what a run writes before its first checkpoint; removed again if it fails before one
_EARLY_FILES = (CONFIG_FILE, LOG_FILE, CHECKPOINTS)


@dataclass
class Claim:
    """A run folder held by this process: its lock, and the stop signals the loop polls."""

    out_dir: Path
    job: str
    stop: StopSignals

    @property
    def resume_command(self) -> str:
        cmd = f"rdmd {COMMANDS[self.job]} --out {shlex.quote(str(self.out_dir))} --resume"
        if env_world().active:
            cmd += " (launched by torchrun as before)"
        return cmd


@contextmanager
def claim_run(out_dir: Path, job: str, resume: bool, main: bool = True) -> Iterator[Claim]:
    """Hold ``out_dir`` for one run: the lock (on rank 0, ``main``), stop signals, and the
    clean-up of a fresh run that fails before its first checkpoint.

    A second process into the same folder is refused here, before it reads or writes
    anything. A fresh run that stops before its first checkpoint (a bad value, a NaN at
    step 1, Ctrl-C while loading data) removes the files it wrote, and the folder if it made
    it, so the same command can simply be run again.
    """
    out_dir = Path(out_dir)
    lock = RunLock(out_dir) if main else None
    if lock is not None:
        lock.acquire()
    existed = {name for name in _EARLY_FILES if (out_dir / name).exists()}
    claim = Claim(out_dir, job, StopSignals(announce=main))
    term = raise_on_sigterm()  # SIGTERM before the steps (loading, RDMD's OT start) and
    try:  # after them unwinds like Ctrl-C, so the clean-up below runs
        yield claim  # the loop installs claim.stop around its steps
    except BaseException as e:
        removed = main and not resume and _forget_unstarted(out_dir, existed)
        if isinstance(e, KeyboardInterrupt):  # Ctrl-C outside the steps included
            raise _interrupted(e, claim, resume) from None
        if removed and isinstance(e, RdmdError):
            raise RdmdError(f"{e}; nothing of this run was kept in {out_dir}, so the same "
                            "command can be run again") from None
        raise
    finally:
        claim.stop.__exit__()  # the handlers, if the loop raised with them installed
        term()
        if lock is not None:
            lock.release()


def _forget_unstarted(out_dir: Path, existed: set[str]) -> bool:
    """Remove what a fresh run wrote if it has no checkpoint; True if anything was removed."""
    if ckpt.latest_checkpoint(out_dir / CHECKPOINTS) is not None:
        return False
    removed = False
    for name in _EARLY_FILES:
        p = out_dir / name
        if name in existed or not p.exists():
            continue
        if p.is_dir():
            shutil.rmtree(p, ignore_errors=True)
        else:
            p.unlink(missing_ok=True)
        removed = True
    return removed


def _interrupted(e: KeyboardInterrupt, claim: Claim, resume: bool) -> RunInterrupted:
    """The one line an interrupted run ends with: where its checkpoint is and how to go on."""
    if isinstance(e, RunInterrupted):
        signum, what = e.signum, e.message
    else:
        signum, what = signal.SIGINT, "SIGINT"
    last = ckpt.latest_checkpoint(claim.out_dir / CHECKPOINTS)
    if last is None and not resume:
        return RunInterrupted(signum, f"{what} before the first checkpoint; nothing of this "
                                      f"run was kept in {claim.out_dir}, run the same "
                                      "command again")
    where = f"checkpoint {last}" if last is not None else "no checkpoint yet"
    return RunInterrupted(signum, f"{what}; {where}; continue with: {claim.resume_command}")

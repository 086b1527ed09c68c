"""Atomic checkpoints: safetensors for tensors, JSON for everything else; no pickle anywhere.

A checkpoint is a folder ``step_00001000/`` holding ``tensors.safetensors`` and
``state.json``. It is written under a temporary name and renamed into place, so a kill during
a save leaves the previous checkpoint as the latest complete one.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from rdmd.errors import RdmdError

TENSORS = "tensors.safetensors"
STATE = "state.json"
TMP_PREFIX = ".tmp_"


def file_mode() -> int:
    """The mode ``open()`` would give a new file: 0666 less the process's umask."""
    mask = os.umask(0o022)  # reading the umask means setting it; put it straight back
    os.umask(mask)
    return 0o666 & ~mask


@contextmanager
def atomic_path(path: Path, suffix: str = ".tmp") -> Iterator[str]:
    """A temporary file beside ``path`` to write to. On success it gets the mode ``open()``
    would give (0666 less the umask, not mkstemp's 0600) and replaces ``path`` in one
    ``os.replace``, so a crash never leaves a half-written file under the final name; on
    failure it is removed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=suffix)
    os.close(fd)
    try:
        yield tmp
        os.chmod(tmp, file_mode())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    with atomic_path(path) as tmp, open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def atomic_save_tensors(path: Path, tensors: dict[str, torch.Tensor],
                        metadata: dict[str, str] | None = None) -> None:
    with atomic_path(path) as tmp:
        save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, tmp,
                  metadata=metadata)


def atomic_save_npy(path: Path, array: Any) -> None:
    """``np.save`` via a temporary file: a killed write never leaves a truncated array."""
    import numpy as np

    with atomic_path(path, suffix=".npy") as tmp, open(tmp, "wb") as f:
        np.save(f, array, allow_pickle=False)


def load_tensors(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise RdmdError(f"missing weights file: {path}")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError) as e:
        raise RdmdError(f"{path}: not a valid safetensors file ({e})") from None


def read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise RdmdError(f"missing file: {path}")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise RdmdError(f"{path}: invalid JSON ({e})") from None


# -- optimizer state <-> (tensors, json) --------------------------------------------------

def optimizer_to_flat(opt: torch.optim.Optimizer, prefix: str
                      ) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    sd = opt.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, Any] = {}
    for idx, st in sd["state"].items():
        for k, v in st.items():
            if torch.is_tensor(v):
                tensors[f"{prefix}.state.{idx}.{k}"] = v
            else:
                scalars[f"{idx}.{k}"] = v
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars}


def optimizer_from_flat(opt: torch.optim.Optimizer, prefix: str,
                        tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
    state: dict[int, dict[str, Any]] = {}
    head = f"{prefix}.state."
    for key, v in tensors.items():
        if key.startswith(head):
            idx, k = key[len(head):].split(".", 1)
            state.setdefault(int(idx), {})[k] = v
    for key, v in meta.get("scalars", {}).items():
        idx, k = key.split(".", 1)
        state.setdefault(int(idx), {})[k] = v
    opt.load_state_dict({"state": state, "param_groups": meta["param_groups"]})


# -- checkpoint folders --------------------------------------------------------------------

def _step_dirs(ckpt_root: Path) -> list[tuple[int, Path]]:
    out = []
    if ckpt_root.is_dir():
        for p in ckpt_root.iterdir():
            complete = (p / TENSORS).is_file() and (p / STATE).is_file()
            if p.name.startswith("step_") and p.name[5:].isdigit() and complete:
                out.append((int(p.name[5:]), p))
    return sorted(out)


def _fsync_dir(path: Path) -> None:
    """Make a rename in ``path`` durable (a no-op where directories cannot be opened)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _test_pause(step: int) -> None:
    """Test hook: ``RDMD_TEST_PAUSE_IN_SAVE=<step>`` sleeps inside the save of that step, after
    the tensors are written and before the checkpoint is renamed into place, so a test can kill
    the process mid-save. Unset in normal use."""
    want = os.environ.get("RDMD_TEST_PAUSE_IN_SAVE")
    if want and want.isdigit() and int(want) == step:
        import time

        (Path(os.environ.get("RDMD_TEST_PAUSE_FLAG", os.devnull))).write_text(str(step))
        time.sleep(float(os.environ.get("RDMD_TEST_PAUSE_S", "60")))


def save_checkpoint(ckpt_root: Path, step: int, tensors: dict[str, torch.Tensor],
                    state: dict[str, Any], keep: int = 3) -> Path:
    """Write ``step_<8 digits>/`` atomically, then prune all but the newest ``keep``.

    The folder is filled under a temporary name and renamed into place; old checkpoints are
    renamed out of the way before they are deleted. A kill at any point leaves the newest
    complete checkpoint loadable (leftover temporary folders are removed on resume).
    """
    ckpt_root.mkdir(parents=True, exist_ok=True)
    final = ckpt_root / f"step_{step:08d}"
    tmp = Path(tempfile.mkdtemp(dir=ckpt_root, prefix=f"{TMP_PREFIX}step_{step:08d}_"))
    try:
        save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()},
                  str(tmp / TENSORS))
        _test_pause(step)
        (tmp / STATE).write_text(json.dumps({**state, "step": step}, indent=1))
        for f in (TENSORS, STATE):
            with open(tmp / f, "rb") as fh:
                os.fsync(fh.fileno())
        if final.exists():
            _remove(final)
        os.replace(tmp, final)
        _fsync_dir(ckpt_root)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    for _, old in _step_dirs(ckpt_root)[:-keep] if keep > 0 else []:
        _remove(old)
    return final


def _remove(path: Path) -> None:
    """Rename out of the way (atomic), then delete: never a half-deleted ``step_*`` folder."""
    doomed = path.with_name(f"{TMP_PREFIX}del_{path.name}")
    os.replace(path, doomed)
    shutil.rmtree(doomed, ignore_errors=True)


def remove_stale(ckpt_root: Path) -> None:
    """Delete what a killed save or prune left behind (only the writer, rank 0, calls this)."""
    if ckpt_root.is_dir():
        for p in ckpt_root.iterdir():
            if p.name.startswith(TMP_PREFIX):
                shutil.rmtree(p, ignore_errors=True)


def latest_checkpoint(ckpt_root: Path) -> Path | None:
    dirs = _step_dirs(ckpt_root)
    return dirs[-1][1] if dirs else None


def load_checkpoint(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Tensors and state of one checkpoint folder; a damaged file is a one-line error that
    names it (and the previous checkpoint to fall back to, if any)."""
    try:
        state = read_json(path / STATE)
        if not isinstance(state, dict) or not isinstance(state.get("step"), int):
            raise RdmdError(f"{path / STATE}: not a checkpoint state (no integer 'step')")
        return load_tensors(path / TENSORS), state
    except RdmdError as e:
        older = [p for _, p in _step_dirs(path.parent) if p.name < path.name]
        hint = (f"; move it aside to resume from {older[-1].name}" if older else "")
        raise RdmdError(f"{e}{hint}") from None

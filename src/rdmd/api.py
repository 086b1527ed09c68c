"""The Python API beside the CLI: train, distil, load, translate, evaluate.

>>> import rdmd
>>> rdmd.train_teacher("8gaussians", "runs/teacher")                      # doctest: +SKIP
>>> rdmd.distill("gaussian", "runs/teacher", "runs/rdmd", lam=0.02)        # doctest: +SKIP
>>> y = rdmd.translate("runs/rdmd", x)   # x: (N, d) array or tensor, data units

All paths are run directories; models load from ``model.safetensors`` + ``model.json``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from rdmd import training
from rdmd.config import DistillConfig, TeacherConfig, build_config
from rdmd.errors import RdmdError
from rdmd.models import Model, load_model


def train_teacher(target: str, out_dir: str | Path, resume: bool = False,
                  progress: bool = True, **config: Any) -> Path:
    """Train a diffusion model of ``target`` (``.npy``, image folder or built-in name);
    keyword arguments are :class:`rdmd.config.TeacherConfig` fields (e.g. ``steps=5000``).
    With ``resume=True`` the saved settings are used; only ``steps`` may be given."""
    cfg = None if resume and "steps" not in config else build_config(TeacherConfig, config)
    return training.train_teacher(target, out_dir, cfg, resume=resume, progress=progress)


def distill(source: str, teacher_dir: str | Path, out_dir: str | Path,
            target: str | None = None, resume: bool = False, progress: bool = True,
            **config: Any) -> Path:
    """RDMD from ``source`` with the teacher in ``teacher_dir``; keyword arguments are
    :class:`rdmd.config.DistillConfig` fields (``lam=0.02``, ``steps=...``, ``cost="l1"``).
    With ``resume=True`` the saved settings are used; only ``steps`` may be given."""
    cfg = None if resume and "steps" not in config else build_config(DistillConfig, config)
    return training.distill(source, teacher_dir, out_dir, cfg, target=target, resume=resume,
                            progress=progress)


def translate(model: str | Path | Model, x: np.ndarray | torch.Tensor,
              chunk: int = 4096) -> np.ndarray | torch.Tensor:
    """Map source samples (data units) to the target in one network call per chunk.

    Returns the same type as ``x`` (numpy in, numpy out).
    """
    from rdmd.evaluation import apply_generator

    m = model if isinstance(model, Model) else load_model(model)
    if m.role != "generator":
        raise RdmdError("translate needs a distilled generator, got a teacher "
                        f"(model from {m.meta.get('target')!r})")
    is_np = isinstance(x, np.ndarray)
    t = torch.from_numpy(np.asarray(x, dtype=np.float32)) if is_np else x
    shape = tuple(m.meta["data_shape"])
    if tuple(t.shape[1:]) != shape:
        raise RdmdError(f"input samples have shape {tuple(t.shape[1:])}, the model expects "
                        f"{shape}")
    if not torch.isfinite(t).all():
        raise RdmdError("input contains NaN or infinite values")
    out = apply_generator(m.net, m.normalizer, t, chunk)
    return out.numpy() if is_np else out


__all__ = ["DistillConfig", "Model", "TeacherConfig", "distill", "load_model",
           "train_teacher", "translate"]

"""The Python API beside the CLI: train, distil, load, translate, evaluate.

>>> import rdmd
>>> rdmd.train_teacher("8gaussians", "runs/teacher")                      # doctest: +SKIP
>>> rdmd.distill("gaussian", "runs/teacher", "runs/rdmd", lam=0.02)        # doctest: +SKIP
>>> y = rdmd.translate("runs/rdmd", x)   # x: (N, d) array or tensor, data units
>>> rdmd.distill("gaussian", "runs/teacher", "runs/cond", lam_range=(0.01, 0.3))  # doctest: +SKIP
>>> y = rdmd.translate("runs/cond", x, lam=0.05)   # one generator, any lambda in its range

All paths are run directories; models load from ``model.safetensors`` + ``model.json``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from rdmd import training
from rdmd.config import DistillConfig, TeacherConfig
from rdmd.errors import RdmdError
from rdmd.models import Model, load_model


def train_teacher(target: str, out_dir: str | Path, resume: bool = False,
                  progress: bool = True, **config: Any) -> Path:
    """Train a diffusion model of ``target`` (``.npy``, image folder or built-in name);
    keyword arguments are :class:`rdmd.config.TeacherConfig` fields (e.g. ``steps=5000``).
    With ``resume=True`` the saved settings are used; a keyword that differs from them is
    refused, except ``steps`` (see :func:`rdmd.config.apply_resume_changes`)."""
    return training.train_teacher(target, out_dir, config, resume=resume, progress=progress)


def distill(source: str, teacher_dir: str | Path, out_dir: str | Path,
            target: str | None = None, resume: bool = False, progress: bool = True,
            **config: Any) -> Path:
    """RDMD from ``source`` with the teacher in ``teacher_dir``; keyword arguments are
    :class:`rdmd.config.DistillConfig` fields (``lam=0.02``, ``steps=...``, ``cost="l1"``;
    ``lam_range=(0.01, 0.3)`` trains one lambda-conditioned generator, docs/lambda.md).
    With ``resume=True`` the saved settings are used; a keyword that differs from them is
    refused, except ``steps``."""
    return training.distill(source, teacher_dir, out_dir, config, target=target,
                            resume=resume, progress=progress)


def translate(model: str | Path | Model, x: Any, chunk: int = 512, method: str = "rdmd",
              seed: int = 0, lam: float | None = None, **params: Any) -> Any:
    """Map source samples to the target: in one network call per chunk with RDMD (the
    default), or with a multi-step baseline on a teacher.

    ``x`` is an (N, d) array or tensor of vectors in data units, an (N, C, H, W) tensor or
    array of images in [-1, 1], or a list of PIL images (resized and centre-cropped to the
    model's size). Returns the same kind: numpy in, numpy out; PIL in, PIL out.

    ``method`` is ``rdmd`` (``model``: a distilled run) or ``sdedit``, ``ilvr``, ``egsde``
    (``model``: a teacher run), with the baseline's hyperparameters as keywords, e.g.
    ``translate("runs/teacher", x, method="sdedit", sigma_start=2.0, n_steps=18)``;
    ``seed`` fixes the baselines' noise.

    ``lam`` turns the faithfulness knob of a lambda-conditioned generator (``distill
    --lam-range``): required for one, and inside its trained range
    (``load_model(dir).lam_range``); a fixed generator accepts only its own ``lambda``.
    """
    from rdmd.translators import make_translator

    if lam is not None:
        params["lam"] = lam
    tr = make_translator(method, model, **params)
    shape = tuple(tr.meta["data_shape"])
    if isinstance(x, list):
        from rdmd.data.images import pil_to_tensor, tensor_to_pil

        if len(shape) != 3:
            raise RdmdError("a list of PIL images needs an image model")
        t = torch.stack([pil_to_tensor(im, shape[-1], shape[0]) for im in x])
        return [tensor_to_pil(o) for o in tr.translate(t, seed, chunk)]
    is_np = isinstance(x, np.ndarray)
    t = torch.from_numpy(np.asarray(x, dtype=np.float32)) if is_np else x
    if tuple(t.shape[1:]) != shape:
        raise RdmdError(f"input samples have shape {tuple(t.shape[1:])}, the model expects "
                        f"{shape}")
    if not torch.isfinite(t).all():
        raise RdmdError("input contains NaN or infinite values")
    out = tr.translate(t, seed, chunk)  # images come back clamped to [-1, 1]
    return out.numpy() if is_np else out


def translate_folder(model: str | Path | Model, input_dir: str | Path,
                     output_dir: str | Path, chunk: int = 64, progress: bool = True,
                     method: str = "rdmd", seed: int = 0, lam: float | None = None, *,
                     overwrite: bool = False,
                     keep_size: bool = False, recursive: bool = False,
                     announce: bool = True, **params: Any) -> list[Path]:
    """One PNG per input image, under the input's relative name with ``.png``.

    Inputs go through the folder policy at the model's shape (:mod:`rdmd.data.folders`):
    conversions are counted and, with ``announce``, printed; images far smaller than the model
    are refused. Existing outputs are refused unless ``overwrite``. Each file is written
    atomically with the usual permissions. ``keep_size`` writes each output at its input's
    width and height (bicubic); a non-square input's output is then its translated centre
    square stretched to the input's aspect (counted and printed). ``method``, ``lam`` and
    keywords as in :func:`translate`."""
    from PIL import Image
    from tqdm.auto import tqdm

    from rdmd.data.folders import open_image, plan_folder, prepare_pil
    from rdmd.data.images import save_pil, tensor_to_pil
    from rdmd.translators import make_translator

    if lam is not None:
        params["lam"] = lam
    tr = make_translator(method, model, **params)
    shape = tuple(tr.meta["data_shape"])
    if len(shape) != 3:
        raise RdmdError("this model translates vectors: pass .npy files, not folders")
    src, dst = Path(input_dir), Path(output_dir)
    if dst.resolve() == src.resolve():
        raise RdmdError("--output must be another folder than --input (inputs would be "
                        "overwritten)")
    where = model if isinstance(model, str | Path) else "the model"
    listing, _, policy = plan_folder(src, shape[0], shape[-1], recursive,
                                     purpose=f"the model in {where}")
    names = [Path(n).with_suffix(".png").as_posix() for n in listing.names()]
    if len(set(names)) != len(names):
        dup = next(n for n in names if names.count(n) > 1)
        raise RdmdError(f"{src}: several images would be written as {dup!r} (e.g. .png and "
                        ".jpg of one name); outputs would overwrite each other")
    existing = [n for n in names if (dst / n).exists()]
    if existing and not overwrite:
        raise RdmdError(f"--output {dst} already holds {len(existing)} of the {len(names)} "
                        f"files to write (e.g. {existing[0]}); pass --overwrite to replace "
                        "them")
    if announce:
        print(f"input folder {src}: {policy.line()}", flush=True)
    written, stretched = [], 0
    for i in tqdm(range(0, len(listing.files), chunk), desc="translate", disable=not progress):
        ims = [open_image(f) for f in listing.files[i:i + chunk]]
        batch = torch.stack([prepare_pil(im, shape[-1], shape[0]) for im in ims])
        out = tr.translate(batch, seed + i, chunk)
        for name, im, o in zip(names[i:i + chunk], ims, out, strict=True):
            pil = tensor_to_pil(o)
            if keep_size and pil.size != im.size:
                stretched += im.size[0] != im.size[1]
                pil = pil.resize(im.size, Image.Resampling.BICUBIC)
            save_pil(pil, dst / name)
            written.append(dst / name)
    if announce and stretched:
        print(f"--keep-size: {stretched} non-square input(s): the translated centre square "
              "was stretched to the input's width and height", flush=True)
    return written


from rdmd.translators import make_translator  # noqa: E402  (re-exported)

__all__ = ["DistillConfig", "Model", "TeacherConfig", "distill", "load_model",
           "make_translator", "train_teacher", "translate", "translate_folder"]

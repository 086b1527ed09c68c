"""Model directories: ``model.safetensors`` + ``model.json``, loadable without our source tree
on a pickle path, and checked against the architecture before any weight is copied."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from rdmd.backbones import build_backbone
from rdmd.checkpoint import atomic_save_tensors, atomic_write_json, load_tensors, read_json
from rdmd.data.normalizer import Normalizer
from rdmd.edm import EDMDenoiser
from rdmd.errors import RdmdError
from rdmd.methods.potential import GRADIENT_GENERATORS, GRADIENT_KINDS, build_potential
from rdmd.methods.rdmd import OneStepGenerator

WEIGHTS = "model.safetensors"
META = "model.json"
FORMAT_VERSION = 1
DIFFUSERS_BACKBONE = "diffusers_vp"  # rdmd.interop.diffusers.BACKBONE_NAME, without importing it


def build_denoiser(backbone: dict[str, Any], sigma_data: float) -> EDMDenoiser:
    if backbone.get("name") == DIFFUSERS_BACKBONE:  # a VP network from a diffusers teacher
        from rdmd.interop.diffusers import build_vp_denoiser

        return build_vp_denoiser(backbone, sigma_data)  # type: ignore[return-value]
    return EDMDenoiser(build_backbone(backbone), sigma_data)


@dataclass
class Model:
    """A loaded model directory: a teacher denoiser or a one-step generator."""

    net: torch.nn.Module  # EDMDenoiser (teacher) or OneStepGenerator
    meta: dict[str, Any]
    #: a teacher's autoguidance guide (rdmd.guidance), if it keeps one
    guide: torch.nn.Module | None = None

    @property
    def normalizer(self) -> Normalizer:
        return Normalizer.from_dict(self.meta["normalizer"])

    @property
    def role(self) -> str:
        return str(self.meta["role"])

    @property
    def lam_range(self) -> tuple[float, float] | None:
        """The trained ``lambda`` range of a lambda-conditioned generator; None otherwise."""
        r = self.meta.get("lam_range")
        return None if r is None else (float(r[0]), float(r[1]))

    @property
    def lam(self) -> float | None:
        """A fixed-``lambda`` generator's ``lambda``; None for a conditioned one (and for a
        teacher)."""
        v = self.meta.get("lam")
        return None if v is None or self.lam_range is not None else float(v)

    @property
    def denoiser(self) -> EDMDenoiser:
        net = self.net
        if isinstance(net, OneStepGenerator):
            return net.denoiser
        if isinstance(net, GRADIENT_GENERATORS):
            raise RdmdError(f"this {self.role} has no denoiser (a gradient-field generator); "
                            "pass a teacher")
        return net

    @property
    def guidance(self) -> float:
        """The teacher's autoguidance weight (1: unguided)."""
        return float(self.meta.get("guidance", 1.0)) if self.guide is not None else 1.0

    @property
    def churn(self) -> Any:
        """EDM's stochasticity the teacher is sampled with (a :class:`rdmd.sampler.Churn`:
        ``sample_churn`` up to ``churn_sigma_max``), None for the deterministic sampler."""
        from rdmd.sampler import Churn

        s = float(self.meta.get("sample_churn") or 0.0)
        top = float(self.meta.get("churn_sigma_max", math.inf))
        return Churn(s, 0.0, top) if s else None

    def score(self, guidance: float | None = None) -> torch.nn.Module:
        """The denoiser the teacher is sampled and distilled with: guided by its guide at
        ``guidance`` (None: its own weight; 1: the plain network)."""
        w = self.guidance if guidance is None else float(guidance)
        if not (math.isfinite(w) and w > 0):
            raise RdmdError(f"guidance must be a finite weight > 0, got {guidance}")
        if self.guide is None and w != 1.0:
            raise RdmdError(f"guidance {w:g} needs an autoguided teacher; this {self.role} keeps "
                            "no guide (train it with guide_at, or `rdmd attach-guide`)")
        if self.guide is None or w == 1.0:
            return self.denoiser
        from rdmd.guidance import AutoGuided

        return AutoGuided(self.denoiser, self.guide, w,
                          float(self.meta.get("guidance_sigma_max", math.inf)))


def save_model(out_dir: Path, net: torch.nn.Module, meta: dict[str, Any]) -> None:
    """Weights first, metadata last: a folder with ``model.json`` is always complete."""
    den = net.denoiser if isinstance(net, OneStepGenerator) else net
    atomic_save_tensors(out_dir / WEIGHTS, dict(den.state_dict()))
    atomic_write_json(out_dir / META, {"format_version": FORMAT_VERSION, **meta})


def store_half(model_dir: str | Path, name: str = WEIGHTS) -> None:
    """Rewrite a model folder's weights (or another weights file in it, e.g. a teacher's
    guide) in float16 (half the bytes; shipped models, whose total the repository caps).
    :func:`load_model` reads them back into float32 networks; images translate under bf16
    autocast anyway, a coarser rounding than float16 weights."""
    path = Path(model_dir) / name
    state = load_tensors(path)
    atomic_save_tensors(path, {k: v.half() if v.is_floating_point() else v
                               for k, v in state.items()})


def load_model(model_dir: str | Path, map_location: str | torch.device = "cpu") -> Model:
    d = Path(model_dir)
    if not d.is_dir():
        raise RdmdError(f"model directory not found: {d}")
    if not (d / META).is_file():
        from rdmd.interop.diffusers import is_diffusers_dir

        if is_diffusers_dir(d):  # a diffusers pipeline folder: a teacher (docs/diffusers.md)
            from rdmd.interop.diffusers import load_diffusers_teacher

            den, dmeta = load_diffusers_teacher(d)
            return Model(den.to(map_location).eval().requires_grad_(False), dmeta)
        raise RdmdError(f"{d} is not a model directory (no {META}); "
                        "pass the run directory written by train-teacher or distill, or a "
                        "diffusers DDPMPipeline folder")
    meta = read_json(d / META)
    for key in ("role", "backbone", "sigma_data", "normalizer", "data_shape"):
        if key not in meta:
            raise RdmdError(f"{d / META}: missing key {key!r}")
    if meta["backbone"].get("name") in GRADIENT_KINDS:  # a gradient-field generator
        if meta["role"] != "generator":
            raise RdmdError(f"{d / META}: a potential network is a generator, not a "
                            f"{meta['role']}")
        den = build_potential(meta["backbone"])
    else:
        den = build_denoiser(meta["backbone"], meta["sigma_data"])
    state = load_tensors(d / WEIGHTS)
    expected = den.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = [k for k in expected if k in state and state[k].shape != expected[k].shape]
    if missing or unexpected or wrong:
        what = (f"missing {missing[:3]}" if missing else f"unexpected {unexpected[:3]}"
                if unexpected else f"shape mismatch in {wrong[:3]}")
        raise RdmdError(f"{d / WEIGHTS} does not fit the architecture in {META}: {what}")
    den.load_state_dict(state)
    den.to(map_location).eval().requires_grad_(False)
    net: torch.nn.Module = den
    if meta["role"] == "generator" and not isinstance(den, GRADIENT_GENERATORS):
        net = OneStepGenerator(den, float(meta["sigma_g"]))
    elif meta["role"] not in ("teacher", "generator"):
        raise RdmdError(f"{d / META}: unknown role {meta['role']!r}")
    guide = None
    if meta["role"] == "teacher" and meta.get("guide_step") is not None:
        from rdmd.guidance import GUIDE_WEIGHTS, load_guide

        if not (d / GUIDE_WEIGHTS).is_file():
            raise RdmdError(f"{d / META} names a guide but {GUIDE_WEIGHTS} is missing")
        guide = load_guide(d, den).to(map_location)
    return Model(net.eval(), meta, guide)

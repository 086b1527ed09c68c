"""Autoguidance: a teacher guided by an earlier, weaker version of itself.

Why: a diffusion model trained for a few thousand steps draws 2-D modes with a thin fill
between them (the 4000-step teacher puts 1.75% of its samples off 8 Gaussians' modes, true
samples 1.1%), and its probability-flow samples draw each mode about 10% too narrow. Karras
et al. 2024 ("Guiding a diffusion model with a bad version of itself") extrapolate from a
weaker model of the same data towards the good one, ``D_w = D_guide + w (D - D_guide)``: the
errors both make, the weaker one more (the fill between modes), are pushed out, while the
modes themselves, which both draw, keep their spread. Here the guide is the teacher's own EMA
at part of its training (``guide_at``, kept for free during the run), and EDM's stochastic
sampler (``sample_churn``) restores the width the deterministic one loses. docs/twod.md,
"A guided teacher", measures both.

The guided denoiser is what the teacher *is* for everything downstream that samples it or
distils it: its evaluation, RDMD's real score, the OT start's atoms. Networks that are
initialised from the teacher (the generator, the fake score) copy the plain network.
"""

from __future__ import annotations

import copy
import math
from pathlib import Path
from typing import Any

import torch
from torch import nn

from rdmd.checkpoint import atomic_save_tensors, load_tensors
from rdmd.errors import RdmdError

#: the guide's weights, beside the teacher's ``model.safetensors``
GUIDE_WEIGHTS = "guide.safetensors"


class AutoGuided(nn.Module):
    """``D_w(x, sigma) = D_guide + w (D - D_guide)`` at noise levels up to ``sigma_max``, the
    plain teacher above (a guidance interval, Kynkaanniemi et al. 2024: at high levels
    guidance moves mass between whole regions, e.g. along a curve, which W2 sees); ``w = 1``
    is the plain teacher everywhere."""

    def __init__(self, net: nn.Module, guide: nn.Module, weight: float,
                 sigma_max: float = math.inf) -> None:
        super().__init__()
        if not weight > 0:
            raise ValueError(f"guidance weight must be > 0, got {weight}")
        if not sigma_max > 0:
            raise ValueError(f"guidance sigma_max must be > 0, got {sigma_max}")
        self.net, self.guide = net, guide
        self.weight, self.sigma_max = float(weight), float(sigma_max)

    @property
    def sigma_data(self) -> float:
        return float(self.net.sigma_data)  # type: ignore[arg-type]

    def forward(self, x: torch.Tensor, sigma: torch.Tensor | float,
                cond: torch.Tensor | None = None) -> torch.Tensor:
        d = self.net(x, sigma) if cond is None else self.net(x, sigma, cond)
        s = torch.as_tensor(sigma, device=x.device).reshape(-1)
        inside = s <= self.sigma_max
        if not bool(inside.any()):  # a sampler's step above the interval: one network
            return d
        d_guide = self.guide(x, sigma) if cond is None else self.guide(x, sigma, cond)
        out = torch.lerp(d_guide.float(), d.float(), self.weight)
        if not bool(inside.all()):  # per-sample levels (a training batch)
            keep = inside.reshape(-1, *([1] * (x.dim() - 1))).expand_as(out)
            out = torch.where(keep, out, d.float())
        return out.to(d.dtype)


class GuideSnapshot(nn.Module):
    """The guide while a teacher trains: a copy of the network, filled from the EMA at the
    guide step. ``step`` (a buffer, so checkpoints carry it) is -1 until then."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = copy.deepcopy(net).requires_grad_(False)
        self.register_buffer("step", torch.tensor(-1, dtype=torch.long))

    @torch.no_grad()
    def take(self, source: nn.Module, step: int) -> None:
        self.net.load_state_dict(source.state_dict())
        self.step.fill_(step)

    @property
    def taken(self) -> bool:
        return int(self.step) >= 0


def guide_step(guide_at: float, steps: int) -> int | None:
    """The step (0-based, before which the EMA is kept) of a run of ``steps``; None: none."""
    if not guide_at:
        return None
    return max(1, min(steps - 1, round(guide_at * steps)))


def save_guide(out_dir: Path, guide: nn.Module) -> None:
    atomic_save_tensors(out_dir / GUIDE_WEIGHTS, dict(guide.state_dict()))


def load_guide(model_dir: Path, like: nn.Module) -> nn.Module:
    """The guide of a teacher folder, in the teacher's architecture (``like``)."""
    state = load_tensors(model_dir / GUIDE_WEIGHTS)
    guide = copy.deepcopy(like)
    expected = guide.state_dict()
    if set(state) != set(expected) or any(state[k].shape != expected[k].shape for k in state):
        raise RdmdError(f"{model_dir / GUIDE_WEIGHTS} does not fit the teacher's architecture")
    guide.load_state_dict(state)
    return guide.eval().requires_grad_(False)


def sampling_meta(cfg: Any, has_guide: bool) -> dict[str, Any]:
    """What a teacher's ``model.json`` records of how it is sampled: the guidance weight and
    interval (with a guide only), the stochastic sampler's ``s_churn`` (0: deterministic)
    and its interval."""
    meta: dict[str, Any] = {"sample_churn": float(cfg.sample_churn or 0.0),
                            "churn_sigma_max": float(cfg.churn_sigma_max)}
    if has_guide:
        meta["guidance"] = float(cfg.guidance)
        meta["guidance_sigma_max"] = float(cfg.guidance_sigma_max)
        meta["guide_step"] = guide_step(cfg.guide_at, cfg.steps)
    return meta


def attach_guide(teacher_dir: str | Path, guide_dir: str | Path, out_dir: str | Path,
                 guidance: float, sigma_max: float = math.inf) -> Path:
    """A copy of ``teacher_dir`` guided by another teacher of the same data and architecture
    (Karras et al. 2024's own setting: the guide a shorter-trained model), written to the new
    folder ``out_dir``.

    Why: a teacher trained without ``guide_at`` kept no guide, and retraining it to keep
    one costs its whole training; a short run of the same network is a fraction of that.
    The weights are copied unchanged; ``model.json`` is written last, so an interrupted call
    leaves no loadable half-folder.
    """
    from rdmd.checkpoint import atomic_write_json, read_json
    from rdmd.models import META, WEIGHTS

    if not (guidance > 0 and math.isfinite(guidance)):
        raise RdmdError(f"guidance must be a finite weight > 0, got {guidance}")
    if not sigma_max > 0:
        raise RdmdError(f"guidance sigma_max must be > 0, got {sigma_max}")
    metas = {}
    for what, d in (("teacher", Path(teacher_dir)), ("guide", Path(guide_dir))):
        if not (d / META).is_file() or not (d / WEIGHTS).is_file():
            raise RdmdError(f"{what} {d} is not a model directory ({META} and {WEIGHTS})")
        metas[what] = read_json(d / META)
        if metas[what].get("role") != "teacher":
            raise RdmdError(f"{what} {d} is a {metas[what].get('role')}, not a teacher")
    t, g = metas["teacher"], metas["guide"]
    for key in ("backbone", "data_shape", "sigma_data", "normalizer", "target"):
        if t.get(key) != g.get(key):
            raise RdmdError(f"the guide {guide_dir} differs from the teacher in {key!r} "
                            f"({g.get(key)} against {t.get(key)}): a guide is the same "
                            "network trained on the same data")
    out = Path(out_dir)
    if out.exists() and any(out.iterdir()):
        raise RdmdError(f"{out} exists and is not empty; pick a new folder")
    out.mkdir(parents=True, exist_ok=True)
    state = load_tensors(Path(guide_dir) / WEIGHTS)
    atomic_save_tensors(out / WEIGHTS, load_tensors(Path(teacher_dir) / WEIGHTS))
    atomic_save_tensors(out / GUIDE_WEIGHTS, state)
    meta = {k: v for k, v in t.items()
            if k not in ("guide_step", "guide_from", "guidance_sigma_max")}
    meta.update(guidance=float(guidance), guide_step=int(g.get("steps") or 0),
                guide_from={"path": str(guide_dir), "steps": g.get("steps")})
    if math.isfinite(sigma_max):  # absent: no interval (JSON has no infinity)
        meta["guidance_sigma_max"] = float(sigma_max)
    atomic_write_json(out / META, meta)
    return out

"""A diffusers ``DDPMPipeline`` folder as an rdmd teacher: a VP network seen as an EDM denoiser.

The VP forward process at timestep ``t`` is ``x_t = sqrt(ab_t) x + sqrt(1 - ab_t) eps``
(``ab`` = the scheduler's ``alphas_cumprod``). Dividing by ``sqrt(ab_t)`` gives the VE state
``y = x + sigma_t eps`` with ``sigma_t = sqrt((1 - ab_t) / ab_t)``, so a VE state ``y`` at
level ``sigma`` is the VP state ``y / sqrt(1 + sigma^2)`` at the timestep whose ``sigma_t`` is
``sigma`` (EDM's ``VPPrecond``). The denoiser is then ``D(y; sigma) = y - sigma * eps_hat``.

Noise levels between the scheduler's discrete timesteps: the timestep is interpolated
linearly in ``log sigma`` between the two neighbouring integer timesteps and fed to the UNet as
a fractional (float) timestep; its sinusoidal embedding is smooth in ``t``, so ``D`` is
continuous in ``sigma``. At exactly ``sigma_t`` the timestep is exactly ``t``. Below the
first level (``sigma_0``) or above the last the timestep is held at ``0`` or ``T - 1`` while
the input scaling keeps the exact ``1 / sqrt(1 + sigma^2)``; :func:`clip_to_teacher` keeps
RDMD's own noise levels inside ``[sigma_0, sigma_{T-1}]``.

Every prediction type becomes the same form as EDM's preconditioning,
``D = c_skip * y + c_out * F(c_in * y, t)`` (see :func:`vp_preconditioning`), which is also
what an exported pipeline applies.
"""

from __future__ import annotations

import contextlib
import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn

from rdmd.edm import _bcast
from rdmd.errors import RdmdError

#: the ``backbone`` name in ``model.json`` of a model whose network came from diffusers
BACKBONE_NAME = "diffusers_vp"
SCHEDULERS = ("DDPMScheduler", "DDIMScheduler")
PREDICTIONS = ("epsilon", "v_prediction", "sample")
#: model_index.json components that mean a latent or text-conditioned pipeline
_LATENT = ("vae", "vqvae", "movq")
_TEXT = ("text_encoder", "tokenizer", "text_encoder_2", "image_encoder")
_DOCS = "see docs/diffusers.md"


def vp_preconditioning(sigma: Any, prediction_type: str) -> tuple[Any, Any, Any]:
    """``(c_skip, c_out, c_in)`` with ``D(y; sigma) = c_skip*y + c_out*F(c_in*y, t(sigma))``.

    epsilon: ``D = y - sigma * eps``; v: ``eps = a v + b x_t`` with ``a = 1/sqrt(1+s^2)``,
    ``b = s/sqrt(1+s^2)``, ``x_t = a y``, hence ``D = y/(1+s^2) - s/sqrt(1+s^2) * v``;
    sample: ``D = x0_hat``. Tensors in, tensors out; numbers in, numbers out.
    """
    sqrt = torch.sqrt if isinstance(sigma, torch.Tensor) else math.sqrt
    c_in = 1.0 / sqrt(1.0 + sigma**2)
    if prediction_type == "epsilon":
        return 1.0, -sigma, c_in
    if prediction_type == "v_prediction":
        return 1.0 / (1.0 + sigma**2), -sigma * c_in, c_in
    if prediction_type == "sample":
        return 0.0, 1.0, c_in
    raise ValueError(f"unknown prediction type {prediction_type!r}")


class _UNetF(nn.Module):
    """``F(x, t) = unet(x, t).sample``: the plain network, named ``backbone`` in the denoiser
    so the generic helpers that wrap a teacher's backbone (bf16 weights) work unchanged."""

    def __init__(self, unet: nn.Module) -> None:
        super().__init__()
        self.unet = unet
        self.config = {"name": BACKBONE_NAME}

    def forward(self, x: torch.Tensor, t: torch.Tensor, **kw: Any) -> torch.Tensor:
        if kw.get("cond") is not None:
            raise ValueError("a diffusers VP network takes no conditioning input")
        return self.unet(x, t.to(x.dtype)).sample


class VPDenoiser(nn.Module):
    """``D(y; sigma)`` of a VP ``UNet2DModel`` (see the module docstring).

    ``alphas_cumprod`` is the scheduler's table (one value per training timestep).
    ``sigma_data`` is only the EDM loss weight used when this network is fine-tuned as RDMD's
    fake score (0.5: images in [-1, 1]).
    """

    def __init__(self, unet: nn.Module, alphas_cumprod: torch.Tensor, prediction_type: str,
                 sigma_data: float = 0.5) -> None:
        super().__init__()
        if prediction_type not in PREDICTIONS:
            raise RdmdError(f"prediction_type {prediction_type!r} is not supported; rdmd "
                            f"wraps {', '.join(PREDICTIONS)}")
        ab = alphas_cumprod.double()
        sig = ((1 - ab) / ab).sqrt()
        keep = torch.isfinite(sig) & (sig > 0)  # zero-terminal-SNR ends have no finite level
        n_keep = int(keep.sum())
        if n_keep < 2 or not bool(keep[:n_keep].all()):
            raise RdmdError("the scheduler's alphas_cumprod do not define a usable noise table")
        sig = sig[:n_keep]
        if not bool((sig[1:] > sig[:-1]).all()):
            raise RdmdError("the scheduler's noise levels do not increase with the timestep; "
                            "not a VP schedule rdmd can wrap")
        self.backbone = _UNetF(unet)
        self.prediction_type = prediction_type
        self.sigma_data = float(sigma_data)
        self.register_buffer("log_sigmas", sig.log(), persistent=False)  # float64
        self.sigma_min, self.sigma_max = float(sig[0]), float(sig[-1])

    @property
    def unet(self) -> nn.Module:
        return self.backbone.unet

    def timestep(self, sigma: torch.Tensor) -> torch.Tensor:
        """The fractional timestep of each ``sigma``: linear in ``log sigma`` between the two
        neighbouring integer timesteps, held at the ends (float64 in, float64 out)."""
        tab = self.log_sigmas
        ls = sigma.to(tab.device, torch.float64).clamp_min(1e-30).log()
        hi = torch.searchsorted(tab, ls).clamp(1, len(tab) - 1)
        lo = hi - 1
        frac = (ls - tab[lo]) / (tab[hi] - tab[lo])
        return (lo.double() + frac).clamp(0, len(tab) - 1)

    def forward(self, y: torch.Tensor, sigma: torch.Tensor | float,
                cond: torch.Tensor | None = None) -> torch.Tensor:
        if cond is not None:
            raise ValueError("a diffusers VP network takes no conditioning input")
        if isinstance(sigma, torch.Tensor):
            s = _bcast(sigma, y)
            t = self.timestep(sigma.reshape(-1).expand(y.shape[0])
                              if sigma.ndim == 0 else sigma.reshape(-1))
            coefs = vp_preconditioning(s, self.prediction_type)
        else:  # one fixed level (the one-step generator): plain numbers, one timestep
            t = self.timestep(torch.tensor([float(sigma)]))
            coefs = vp_preconditioning(float(sigma), self.prediction_type)
        c_skip, c_out, c_in = coefs
        f = self.backbone(c_in * y, t.to(device=y.device, dtype=torch.float32))
        return c_skip * y + c_out * f.to(y.dtype)

    def score(self, y: torch.Tensor, sigma: torch.Tensor | float,
              cond: torch.Tensor | None = None) -> torch.Tensor:
        s = _bcast(sigma, y)
        return (self(y, sigma, cond) - y) / s**2


# -- reading a diffusers folder ---------------------------------------------------------------


def is_diffusers_dir(d: Path) -> bool:
    """A ``save_pretrained`` pipeline folder, or a ``unet/`` (+ ``scheduler/``) pair."""
    return (d / "model_index.json").is_file() or (d / "unet" / "config.json").is_file()


def _read(p: Path) -> dict[str, Any]:
    try:
        data = json.loads(p.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise RdmdError(f"cannot read {p}: {e}") from None
    if not isinstance(data, dict):
        raise RdmdError(f"{p}: not a JSON object")
    return data


def _plain(config: Any) -> dict[str, Any]:
    """A diffusers config as plain JSON (no private keys, tuples as lists), so it compares
    equal to itself after a save and load."""
    return json.loads(json.dumps({k: v for k, v in dict(config).items()
                                  if not k.startswith("_")}))


def _check_index(d: Path) -> None:
    """Refuse what rdmd cannot wrap, naming the reason, before any weight is read."""
    idx = _read(d / "model_index.json")
    name = idx.get("_class_name", "?")
    if name == "RDMDPipeline":
        raise RdmdError(f"{d} is an exported rdmd generator (RDMDPipeline), not a teacher; "
                        "load it with rdmd.RDMDPipeline.from_pretrained")

    def present(key: str) -> bool:
        v = idx.get(key)
        return isinstance(v, list) and len(v) == 2 and v[0] is not None

    latent = [k for k in _LATENT if present(k)]
    if latent:
        raise RdmdError(f"{d} is a latent diffusion model ({name} with a {latent[0]}): rdmd "
                        f"distils pixel-space models only ({_DOCS})")
    text = [k for k in _TEXT if present(k)]
    if text:
        raise RdmdError(f"{d} is a text/image-conditioned pipeline ({name} with a {text[0]}): "
                        f"rdmd distils unconditional pixel-space models only ({_DOCS})")
    for key, allowed in (("unet", ("UNet2DModel",)), ("scheduler", SCHEDULERS)):
        if not present(key):
            raise RdmdError(f"{d}/model_index.json names no {key}; rdmd needs a UNet2DModel "
                            f"and a {' or '.join(SCHEDULERS)} (the DDPMPipeline layout)")
        cls = idx[key][1]
        if cls not in allowed:
            raise RdmdError(f"{d}: {key} {cls} is not supported; rdmd wraps "
                            f"{' / '.join(allowed)} ({_DOCS})")


def _check_unet_config(cfg: dict[str, Any], where: Path) -> tuple[int, int]:
    """(channels, size) of a UNet2DModel config that rdmd can wrap, else a one-line error."""
    cls = cfg.get("_class_name", "UNet2DModel")
    if cls != "UNet2DModel":
        raise RdmdError(f"{where}: {cls} is not supported; rdmd wraps pixel-space "
                        f"UNet2DModel networks ({_DOCS})")
    c_in, c_out = cfg.get("in_channels", 3), cfg.get("out_channels", 3)
    if c_in != c_out:
        raise RdmdError(f"{where}: in_channels {c_in} != out_channels {c_out} (a learned-"
                        "variance or conditioned model); rdmd wraps plain noise predictors")
    if cfg.get("time_embedding_type", "positional") != "positional":
        raise RdmdError(f"{where}: time_embedding_type {cfg['time_embedding_type']!r} is not "
                        "supported (rdmd feeds fractional timesteps to a positional embedding)")
    if cfg.get("class_embed_type") is not None or cfg.get("num_class_embeds") is not None:
        raise RdmdError(f"{where}: class-conditional UNets are not supported yet ({_DOCS})")
    size = cfg.get("sample_size")
    if isinstance(size, list | tuple):
        if len(size) != 2 or size[0] != size[1]:
            raise RdmdError(f"{where}: sample_size {size}: rdmd handles square images only")
        size = size[0]
    if not isinstance(size, int) or size < 1:
        raise RdmdError(f"{where}: sample_size {size!r} is not an image size")
    if c_in not in (1, 3):
        raise RdmdError(f"{where}: {c_in} channels; rdmd's images have 1 or 3")
    return int(c_in), int(size)


def _scheduler_class(name: str) -> Any:
    import diffusers

    if name not in SCHEDULERS:
        raise RdmdError(f"scheduler {name} is not supported; rdmd wraps "
                        f"{' / '.join(SCHEDULERS)} ({_DOCS})")
    return getattr(diffusers, name)


def build_vp_denoiser(spec: dict[str, Any], sigma_data: float = 0.5) -> VPDenoiser:
    """The (randomly initialised) denoiser a ``diffusers_vp`` backbone description stands
    for: a model directory's weights are loaded into it afterwards (``rdmd.models``)."""
    from diffusers import UNet2DModel

    try:
        unet_cfg, sched = dict(spec["unet"]), dict(spec["scheduler"])
        pred = str(spec["prediction_type"])
    except (KeyError, TypeError):
        raise RdmdError(f"bad {BACKBONE_NAME} backbone description: needs unet, scheduler "
                        "and prediction_type") from None
    sched_cls = _scheduler_class(str(sched.pop("class", "DDPMScheduler")))
    unet = UNet2DModel.from_config(unet_cfg)
    return VPDenoiser(unet, sched_cls.from_config(sched).alphas_cumprod, pred, sigma_data)


@contextlib.contextmanager
def _quiet_diffusers() -> Iterator[None]:
    """diffusers warns about optional packages (accelerate) and config keys it ignores while
    loading; neither is the user's concern here. The caller's verbosity is restored."""
    from diffusers.utils import logging as dlog

    prev = dlog.get_verbosity()
    dlog.set_verbosity_error()
    try:
        yield
    finally:
        dlog.set_verbosity(prev)


def load_diffusers_teacher(d: Path) -> tuple[VPDenoiser, dict[str, Any]]:
    """The denoiser and ``model.json``-like metadata of a diffusers folder (a teacher).

    Reads safetensors only: a folder with only ``diffusion_pytorch_model.bin`` is refused
    (a pickle can run code).
    """
    if (d / "model_index.json").is_file():
        _check_index(d)
    unet_dir, sched_dir = d / "unet", d / "scheduler"
    if not (unet_dir / "config.json").is_file():
        raise RdmdError(f"{d}: no unet/config.json (expected the DDPMPipeline.save_pretrained "
                        "layout: unet/ and scheduler/)")
    if not (sched_dir / "scheduler_config.json").is_file():
        raise RdmdError(f"{d}: no scheduler/scheduler_config.json; rdmd needs the noise "
                        "schedule the UNet was trained with")
    unet_cfg = _read(unet_dir / "config.json")
    channels, size = _check_unet_config(unet_cfg, unet_dir)
    sched_cfg = _read(sched_dir / "scheduler_config.json")
    sched_name = str(sched_cfg.get("_class_name", "?"))
    sched_cls = _scheduler_class(sched_name)
    weights = unet_dir / "diffusion_pytorch_model.safetensors"
    if not weights.is_file():
        found = sorted(p.name for p in unet_dir.iterdir() if p.is_file())
        raise RdmdError(f"{unet_dir}: no diffusion_pytorch_model.safetensors (found "
                        f"{', '.join(found) or 'nothing'}); rdmd loads safetensors only, "
                        "never pickles")
    from diffusers import UNet2DModel

    with _quiet_diffusers():
        unet = UNet2DModel.from_pretrained(d, subfolder="unet", use_safetensors=True)
        scheduler = sched_cls.from_pretrained(d, subfolder="scheduler")
    pred = str(scheduler.config.prediction_type)
    if pred not in PREDICTIONS:
        raise RdmdError(f"{sched_dir}: prediction_type {pred!r} is not supported; rdmd wraps "
                        f"{', '.join(PREDICTIONS)}")
    den = VPDenoiser(unet, scheduler.alphas_cumprod, pred)
    backbone = {"name": BACKBONE_NAME, "unet": _plain(unet.config),
                "scheduler": {"class": sched_name, **_plain(scheduler.config)},
                "prediction_type": pred}
    meta = {"role": "teacher", "format": "diffusers", "backbone": backbone,
            "sigma_data": 0.5, "normalizer": {"mean": [], "scale": 1.0},
            "data_shape": [channels, size, size], "kind": "image", "target": None,
            "sigma_range": [den.sigma_min, den.sigma_max],
            "diffusers_dir": str(d.resolve())}
    return den, meta


def clip_to_teacher(cfg: Any, meta: dict[str, Any]) -> str | None:
    """Clip ``sigma_g`` and the DM term's noise range to the levels a diffusers teacher's
    scheduler covers (in place); returns the message to show, or ``None`` if nothing moved.

    Outside ``[sigma_0, sigma_{T-1}]`` the wrapped network only sees its end timesteps, so
    RDMD would be matching scores the teacher never learnt.
    """
    rng = meta.get("sigma_range")
    if not rng:
        return None
    lo, hi = float(rng[0]), float(rng[1])
    moved = []
    for key in ("sigma_g", "dm_sigma_min", "dm_sigma_max"):
        v = getattr(cfg, key, None)
        if v is None:
            continue
        c = min(max(float(v), lo), hi)
        if c != v:
            setattr(cfg, key, c)
            moved.append(f"{key} {v:g} -> {c:.4g}")
    if cfg.dm_sigma_min >= cfg.dm_sigma_max:
        raise RdmdError(f"dm_sigma_min {cfg.dm_sigma_min:g} >= dm_sigma_max "
                        f"{cfg.dm_sigma_max:g} after clipping to the teacher's scheduler range "
                        f"[{lo:.4g}, {hi:.4g}]")
    if not moved:
        return None
    return (f"the teacher's scheduler covers sigma in [{lo:.4g}, {hi:.4g}]; clipped "
            + ", ".join(moved))

"""A distilled generator out in the diffusers format: ``rdmd export`` and :class:`RDMDPipeline`.

The exported folder is what ``RDMDPipeline.save_pretrained`` writes: ``unet/`` (a plain
``UNet2DModel``, safetensors) and ``model_index.json``, which also holds the generator's
constants. Every generator rdmd makes is ``G(x) = c_skip*x + c_out*F(c_in*x, t)`` at its one
noise level ``sigma_g``:

* rdmd's own EDM networks: EDM's ``c_skip, c_out, c_in`` at ``sigma_g`` and
  ``t = c_noise = ln(sigma_g)/4`` (the UNet was trained with that continuous timestep);
* networks distilled from a diffusers VP teacher: :func:`rdmd.interop.diffusers.
  vp_preconditioning` at ``sigma_g`` and the (fractional) timestep whose level is ``sigma_g``.

So the pipeline needs four numbers and no rdmd network code; it reuses rdmd's image
preparation so its outputs equal ``rdmd translate``'s.

A lambda-conditioned generator (``rdmd_lam``) adds ``G(x, lambda)``'s conditioning path:
``lambda -> code`` (:class:`rdmd.methods.rdmd_lam.LamCode`, its constants ``lam_range`` and
``lam_shift`` in ``model_index.json``) ``-> LamEmbedding`` (rdmd's small MLP, saved as the
pipeline component ``lam_embedding/``, safetensors) ``->`` the UNet's ``class_labels`` (its
``class_embed_type="identity"`` slot adds them to the time embedding).
"""

from __future__ import annotations

import copy
import math
import os
import shutil
from pathlib import Path
from typing import Any

import torch
from diffusers import ConfigMixin, DiffusionPipeline, ImagePipelineOutput, ModelMixin, UNet2DModel
from diffusers.configuration_utils import register_to_config

from rdmd.backbones.mlp import CondEmbedding
from rdmd.errors import RdmdError


class PipelineInputError(RdmdError, ValueError):
    """Bad arguments to :class:`RDMDPipeline`: an :class:`RdmdError` (rdmd's one-line
    errors) that is also the ``ValueError`` diffusers pipelines raise."""


class LamEmbedding(ModelMixin, ConfigMixin):
    """A conditioned generator's ``lambda`` embedding as a diffusers model component:
    ``code (N, cond_dim) -> class_labels (N, out_dim)`` for the UNet's identity class
    embedding. Wraps rdmd's :class:`CondEmbedding` so the weights are the very ones trained;
    saved and loaded by diffusers (``config.json`` + safetensors), never pickled."""

    @register_to_config
    def __init__(self, out_dim: int, cond_dim: int = 1, emb_dim: int = 16,
                 hidden: int = 64) -> None:
        super().__init__()
        self.embed = CondEmbedding(cond_dim, out_dim, emb_dim=emb_dim, hidden=hidden)

    @classmethod
    def of(cls, c_enc: CondEmbedding) -> LamEmbedding:
        """The component holding a trained ``CondEmbedding``'s weights (copied)."""
        first, last = c_enc.net[0], c_enc.net[-1]
        emb = cls(out_dim=last.out_features, cond_dim=c_enc.cond_dim,
                  emb_dim=first.in_features // c_enc.cond_dim, hidden=first.out_features)
        emb.embed.load_state_dict(c_enc.state_dict())
        return emb

    def forward(self, code: torch.Tensor) -> torch.Tensor:
        if self.dtype == torch.float32:
            return self.embed(code)
        # a pipeline moved to half precision: the sinusoid is computed in float32 (as rdmd
        # does), then fed to the layers in their own dtype
        e = self.embed
        return e.net(e.pos(code.reshape(-1)).reshape(code.shape[0], -1).to(self.dtype))


class RDMDPipeline(DiffusionPipeline):
    """One-step unpaired translation: ``pipe(images, lam=...).images``.

    Args:
        unet: the generator's network (``UNet2DModel``).
        c_skip, c_out, c_in: ``G(x) = c_skip*x + c_out*unet(c_in*x, timestep)``.
        timestep: the UNet's (continuous) timestep at the generator's noise level.
        preconditioning: how the constants were derived (``edm``, ``vp_epsilon``,
            ``vp_v_prediction``, ``vp_sample``): information only.
        sigma_g: the generator's noise level; sigma_data: EDM's data std (``edm`` only).
        lam: the transport-cost weight the generator was distilled with.
        lam_range: for lambda-conditioned generators, the range they were trained on
            (``lam`` is then None and ``lam_embedding`` is required).
        lam_shift: the shift of the conditioned generator's ``log(lambda + shift)`` code.
        lam_embedding: the conditioned generator's ``lambda`` embedding (None when fixed).
    """

    model_cpu_offload_seq = "lam_embedding->unet"
    _optional_components = ["lam_embedding"]

    def __init__(self, unet: UNet2DModel, c_skip: float = 1.0, c_out: float = 1.0,
                 c_in: float = 1.0, timestep: float = 0.0, preconditioning: str = "edm",
                 sigma_g: float = 1.0, sigma_data: float = 0.5, lam: float | None = None,
                 lam_range: list[float] | None = None, lam_shift: float = 0.0,
                 lam_embedding: LamEmbedding | None = None) -> None:
        super().__init__()
        if (lam_range is None) != (lam_embedding is None):
            raise PipelineInputError("a lambda-conditioned generator needs both lam_range "
                                     "and lam_embedding; a fixed one neither")
        self.register_modules(unet=unet, lam_embedding=lam_embedding)
        self.register_to_config(c_skip=float(c_skip), c_out=float(c_out), c_in=float(c_in),
                                timestep=float(timestep), preconditioning=preconditioning,
                                sigma_g=float(sigma_g), sigma_data=float(sigma_data),
                                lam=None if lam is None else float(lam),
                                lam_range=None if lam_range is None else list(lam_range),
                                lam_shift=float(lam_shift))

    def _class_labels(self, lam: float | None) -> torch.Tensor | None:
        """The UNet's ``class_labels`` at ``lam`` (one row, broadcast over the batch, as
        rdmd's ``AtLambda`` does), or None for a fixed generator after checking ``lam``."""
        fixed, rng = self.config.lam, self.config.lam_range
        if rng is not None:
            from rdmd.methods.rdmd_lam import LamCode

            code = LamCode(float(rng[0]), float(rng[1]), float(self.config.lam_shift))
            try:
                lam = code.check(lam)
            except RdmdError as e:
                raise PipelineInputError(str(e)) from None
            emb = self.lam_embedding
            c = code.code(torch.tensor([lam])).to(self.device)
            return emb(c.to(emb.dtype)).to(self.unet.dtype)
        if lam is not None and fixed is not None and not math.isclose(
                float(lam), fixed, rel_tol=1e-6, abs_tol=1e-12):
            raise PipelineInputError(f"this generator was distilled at lambda={fixed:g} only; "
                                     f"got lam={lam:g}")
        return None

    def _as_batch(self, images: Any) -> torch.Tensor:
        """PIL image(s), prepared exactly as rdmd prepares them, or an (N, C, H, W) tensor
        in [-1, 1]."""
        if isinstance(images, torch.Tensor):
            return images if images.ndim == 4 else images[None]
        from rdmd.data.images import pil_to_tensor

        size = self.unet.config.sample_size
        size = size if isinstance(size, int) else size[0]
        ims = images if isinstance(images, list | tuple) else [images]
        return torch.stack([pil_to_tensor(im, size, self.unet.config.in_channels)
                            for im in ims])

    @torch.no_grad()
    def __call__(self, images: Any, lam: float | None = None, output_type: str = "pil",
                 batch_size: int = 256, return_dict: bool = True) -> Any:
        """Translate ``images`` (a PIL image, a list of them, or a tensor in [-1, 1]).

        ``lam``: required for a lambda-conditioned generator, inside its ``lam_range``; for a
        fixed one it may repeat the generator's own lambda (checked). ``output_type`` is ``pil``
        or ``pt`` (a tensor in [-1, 1]). Outputs are clamped to [-1, 1] as a saved image
        holds them.
        """
        labels = self._class_labels(lam)
        if output_type not in ("pil", "pt"):
            raise PipelineInputError(f"output_type must be 'pil' or 'pt', got {output_type!r}")
        x_all = self._as_batch(images)
        cfg = self.config
        outs = []
        for x in torch.split(x_all, batch_size):
            x = x.to(self.device, self.unet.dtype)
            t = torch.full((1,), cfg.timestep, dtype=torch.float32,
                           device=self.device).to(x.dtype)
            f = self.unet(cfg.c_in * x, t, class_labels=labels).sample
            outs.append((cfg.c_skip * x + cfg.c_out * f.to(x.dtype)).float().cpu())
        y = torch.cat(outs).clamp(-1, 1) if outs else x_all.float()
        if output_type == "pil":
            from rdmd.data.images import tensor_to_pil

            result: Any = [tensor_to_pil(o) for o in y]
        else:
            result = y
        return ImagePipelineOutput(images=result) if return_dict else (result,)


def generator_constants(model: Any) -> tuple[UNet2DModel, dict[str, Any]]:
    """The generator's ``UNet2DModel`` and the other :class:`RDMDPipeline` arguments of a
    loaded rdmd model: the constants, and for a lambda-conditioned generator its
    ``lam_embedding`` (the trained ``CondEmbedding`` as a diffusers component)."""
    from rdmd.edm import EDMDenoiser, preconditioning
    from rdmd.interop.diffusers import VPDenoiser, vp_preconditioning

    meta = model.meta
    if model.role != "generator":
        raise RdmdError(f"export writes one-step generators; this model is a {model.role} "
                        "(pass a distill run)")
    if len(meta["data_shape"]) != 3:
        raise RdmdError("only image generators can be exported to diffusers; this one maps "
                        "vectors (an MLP, which diffusers has no model class for)")
    sg = float(model.net.sigma_g)
    den = model.denoiser
    c_enc = None
    if isinstance(den, VPDenoiser):
        unet = den.unet
        c_skip, c_out, c_in = vp_preconditioning(sg, den.prediction_type)
        t = float(den.timestep(torch.tensor([sg]))[0])
        kind = "vp_" + den.prediction_type
    elif isinstance(den, EDMDenoiser) and isinstance(getattr(den.backbone, "unet", None),
                                                     UNet2DModel):
        unet = den.backbone.unet
        c_enc = getattr(den.backbone, "c_enc", None)
        c_skip, c_out, c_in, t = preconditioning(sg, den.sigma_data)
        kind = "edm"
    else:
        raise RdmdError(f"backbone {meta['backbone'].get('name')!r} is not a UNet2DModel; "
                        "it cannot be exported to diffusers")
    lam_range = meta.get("lam_range")
    if (c_enc is None) != (not lam_range):
        raise RdmdError("model.json and the network disagree on lambda conditioning "
                        "(lam_range without a conditioning input, or the reverse)")
    consts: dict[str, Any] = {
        "c_skip": float(c_skip), "c_out": float(c_out), "c_in": float(c_in),
        "timestep": float(t), "preconditioning": kind, "sigma_g": sg,
        "sigma_data": float(meta["sigma_data"]),
        "lam": None if lam_range or meta.get("lam") is None else float(meta["lam"]),
        "lam_range": None, "lam_shift": 0.0, "lam_embedding": None}
    if c_enc is not None:
        from rdmd.methods.rdmd_lam import LamCode

        code = LamCode.from_meta(meta)
        consts.update(lam_range=[code.lo, code.hi], lam_shift=code.shift,
                      lam_embedding=LamEmbedding.of(c_enc))
    return unet, consts


def export_model(model_dir: str | Path, out_dir: str | Path) -> Path:
    """Write the generator in ``model_dir`` as a diffusers folder ``out_dir`` (safetensors
    only): ``UNet2DModel.from_pretrained(out_dir, subfolder="unet")`` loads its network and
    ``RDMDPipeline.from_pretrained(out_dir)`` the whole translator (a conditioned generator
    adds ``lam_embedding/``)."""
    from rdmd.models import load_model

    out = Path(out_dir)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise RdmdError(f"{out} exists and is not an empty folder; choose another --out")
    unet, consts = generator_constants(load_model(model_dir))
    pipe = RDMDPipeline(unet=copy.deepcopy(unet).float(), **consts)
    # written beside, then renamed: an interrupted export leaves no half folder under OUT
    tmp = out.parent / f".{out.name}.export-tmp"
    try:
        shutil.rmtree(tmp, ignore_errors=True)
        pipe.save_pretrained(tmp, safe_serialization=True)
        if out.exists():
            out.rmdir()
        os.replace(tmp, out)
    except OSError as e:
        raise RdmdError(f"cannot write {out}: {e.strerror or e}") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out

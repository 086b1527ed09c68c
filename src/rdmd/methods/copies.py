"""A teacher's network rebuilt with extra, zero-initialised inputs (the lambda embedding, a
Fourier-feature branch), loaded with the teacher's weights: the copy computes the teacher's
function at step 0, so distillation still starts from the teacher (paper §5)."""

from __future__ import annotations

import copy
from typing import Any

from torch import nn

from rdmd.edm import EDMDenoiser
from rdmd.errors import RdmdError

_BACKBONE_NAMES = {"MLPBackbone": "mlp", "UNetBackbone": "unet"}
#: extra inputs a copy may add: the description key, the new modules' prefix, the backbones
EXTRAS = {"cond_dim": ("c_enc.", ("mlp", "unet")), "fourier_branch": ("ff_branch.", ("mlp",))}


#: what asks for each extra, for the one-line error when the teacher's network cannot
PURPOSE = {"cond_dim": "lambda-conditioned RDMD needs a backbone with a conditioning input",
           "fourier_branch": "generator_fourier needs the MLP backbone (vector data)"}


def backbone_spec_of(backbone: nn.Module, purpose: str) -> dict[str, Any]:
    """The registry description of a built backbone (its ``config`` plus its name)."""
    name = _BACKBONE_NAMES.get(type(backbone).__name__)
    if name is None or not hasattr(backbone, "config"):
        raise RdmdError(f"{purpose} ({', '.join(_BACKBONE_NAMES.values())}); the teacher's "
                        f"is {type(backbone).__name__}")
    return {"name": name, **copy.deepcopy(backbone.config)}


def extended_copy(teacher: EDMDenoiser, **extras: Any) -> tuple[EDMDenoiser, dict]:
    """The teacher rebuilt with ``extras`` (keys of :data:`EXTRAS`) and its weights; only the
    new, zero-initialised modules are not the teacher's. Returns the network and its backbone
    description (what a saved model rebuilds from)."""
    from rdmd.backbones import build_backbone

    spec = backbone_spec_of(teacher.backbone, PURPOSE[next(iter(extras))])
    for key, value in extras.items():
        if spec["name"] not in EXTRAS[key][1]:
            raise RdmdError(f"{PURPOSE[key]}; this teacher's is {spec['name']}")
        spec[key] = value
    backbone = build_backbone(spec)
    res = backbone.load_state_dict(teacher.backbone.state_dict(), strict=False)
    new = tuple(EXTRAS[k][0] for k in extras)
    if res.unexpected_keys or not all(k.startswith(new) for k in res.missing_keys):
        raise RuntimeError(f"extended copy does not match the teacher: {res}")
    device = next(teacher.parameters()).device
    den = EDMDenoiser(backbone, teacher.sigma_data).to(device)
    return den.requires_grad_(True).train(), spec


def conditioned_copy(teacher: EDMDenoiser, cond_dim: int = 1, **extras: Any
                     ) -> tuple[EDMDenoiser, dict]:
    """The teacher with a conditioning input (``cond``) that starts without effect."""
    return extended_copy(teacher, cond_dim=cond_dim, **extras)

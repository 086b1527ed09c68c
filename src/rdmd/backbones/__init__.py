"""Backbones ``F(x, c_noise, cond=None)`` that sit inside :class:`rdmd.edm.EDMDenoiser`, and
their one registry.

A backbone is saved as a JSON description ``{"name": ..., **kwargs}`` (in ``model.json`` and
in checkpoints). Each registry entry says which data it is for, how to describe itself for a
data set (``describe``), and how to build itself from its description (``build``). A new
backbone is one module plus one :func:`register` call.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from torch import nn

from rdmd.backbones.mlp import MLPBackbone
from rdmd.errors import RdmdError

__all__ = ["BACKBONES", "MLPBackbone", "backbone_spec", "build_backbone", "register"]


@dataclass(frozen=True)
class BackboneEntry:
    kind: str  # the data it is for: "vector" or "image"
    build: Callable[..., nn.Module]  # from the description's keyword arguments
    describe: Callable[[str, tuple[int, ...], dict[str, Any]], dict[str, Any]]


BACKBONES: dict[str, BackboneEntry] = {}


def register(name: str, kind: str, build: Callable[..., nn.Module],
             describe: Callable[[str, tuple[int, ...], dict[str, Any]], dict[str, Any]]
             ) -> None:
    BACKBONES[name] = BackboneEntry(kind, build, describe)


def _build_unet(channels: int, size: int, preset: str = "small32", cond_dim: int = 0,
                **overrides: Any) -> nn.Module:
    from rdmd.backbones.unet import UNetBackbone  # diffusers is imported only for images

    return UNetBackbone(channels, size, preset, cond_dim, **overrides)


def _describe_mlp(variant: str, shape: tuple[int, ...], opts: dict[str, Any]) -> dict[str, Any]:
    if variant:
        raise RdmdError(f"the mlp backbone has no presets (got mlp:{variant})")
    spec = {"dim": shape[0], "encoder": opts.get("encoder")}
    if opts.get("decoder"):  # only when set: the paper's decoder keeps older descriptions
        spec["decoder"] = [int(w) for w in opts["decoder"]]
    if opts.get("fourier"):
        n, scale = opts["fourier"]
        spec["fourier"] = [int(n), float(scale)]
    return spec


def _describe_unet(variant: str, shape: tuple[int, ...], opts: dict[str, Any]
                   ) -> dict[str, Any]:
    return {"channels": shape[0], "size": shape[-1], "preset": variant or "small32"}


register("mlp", "vector", MLPBackbone, _describe_mlp)
register("unet", "image", _build_unet, _describe_unet)


def default_backbone(kind: str, shape: tuple[int, ...]) -> str:
    """``auto``: the paper's MLP for vectors; a UNet preset by image size (``tiny8`` up to
    16 px, ``small32`` above)."""
    if kind == "vector":
        return "mlp"
    return "unet:tiny8" if shape[-1] < 16 else "unet:small32"


def backbone_spec(name: str, kind: str, shape: tuple[int, ...], **opts: Any) -> dict[str, Any]:
    """The JSON description of backbone ``name`` (``auto``, ``mlp``, ``unet:<preset>``) for
    data of ``kind`` and ``shape``; ``opts`` are data-independent options (``encoder``,
    ``decoder``, ``fourier``, ``cond_dim``)."""
    if name == "auto":
        name = default_backbone(kind, shape)
    base, _, variant = name.partition(":")
    entry = BACKBONES.get(base)
    if entry is None:
        known = [n + (":<preset>" if e.kind == "image" else "") for n, e in BACKBONES.items()]
        raise RdmdError(f"unknown backbone {name!r}; use auto or one of {', '.join(known)}")
    if entry.kind != kind:
        raise RdmdError(f"the {base} backbone is for {entry.kind} data; this data is {kind}s "
                        f"(use {default_backbone(kind, shape)})")
    spec = {"name": base, **entry.describe(variant, shape, opts)}
    if opts.get("cond_dim"):
        spec["cond_dim"] = int(opts["cond_dim"])
    return spec


def build_backbone(spec: dict[str, Any]) -> nn.Module:
    """A backbone from its JSON description. Keys the builder does not take are the
    description's error (one line); anything the constructor raises after that is a bug and
    propagates."""
    spec = dict(spec)
    name = spec.pop("name", None)
    entry = BACKBONES.get(str(name))
    if entry is None:
        raise RdmdError(f"unknown backbone {name!r}; known: {', '.join(BACKBONES)}")
    params = inspect.signature(entry.build).parameters
    missing = [n for n, p in params.items() if p.default is p.empty
               and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL) and n not in spec]
    if missing:
        raise RdmdError(f"bad backbone description for {name}: missing key(s) "
                        f"{', '.join(missing)}")
    if not any(p.kind is p.VAR_KEYWORD for p in params.values()):
        unknown = sorted(set(spec) - set(params))
        if unknown:
            raise RdmdError(f"bad backbone description for {name}: unknown key(s) "
                            f"{', '.join(unknown)}")
    return entry.build(**spec)

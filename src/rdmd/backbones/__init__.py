"""Backbones ``F(x, c_noise)`` that sit inside :class:`rdmd.edm.EDMDenoiser`."""

from rdmd.backbones.mlp import MLPBackbone

__all__ = ["MLPBackbone"]

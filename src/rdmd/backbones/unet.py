"""diffusers' ``UNet2DModel`` as an EDM backbone, with named configurations.

The UNet receives ``c_in * y`` and ``c_noise = ln(sigma)/4`` as its (continuous) timestep;
its sinusoidal embedding of that scalar is EDM's DDPM++ choice.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

# name -> UNet2DModel keyword arguments (sample_size and channels are filled in per data set)
UNET_CONFIGS: dict[str, dict[str, Any]] = {
    # ~1.06M parameters at 3 channels, no attention: trains on CPU (32x32).
    "small32": {"layers_per_block": 1, "block_out_channels": [32, 64, 64],
                "down_block_types": ["DownBlock2D"] * 3, "up_block_types": ["UpBlock2D"] * 3,
                "norm_num_groups": 8},
    # ~0.3M, for 8x8 tests and quick demos.
    "tiny8": {"layers_per_block": 1, "block_out_channels": [16, 32],
              "down_block_types": ["DownBlock2D"] * 2, "up_block_types": ["UpBlock2D"] * 2,
              "norm_num_groups": 8},
    # ~58.7M: EDM's DDPM++ size for 64x64 (the paper's Cat -> Wild, 55M); attention at 16x16.
    "edm64": {"layers_per_block": 4, "block_out_channels": [128, 256, 256, 256],
              "down_block_types": ["DownBlock2D", "DownBlock2D", "AttnDownBlock2D",
                                   "DownBlock2D"],
              "up_block_types": ["UpBlock2D", "AttnUpBlock2D", "UpBlock2D", "UpBlock2D"],
              "norm_num_groups": 32},
}


class UNetBackbone(nn.Module):
    """``F(x, c_noise)`` for images (N, C, H, W)."""

    def __init__(self, channels: int, size: int, preset: str = "small32",
                 **overrides: Any) -> None:
        super().__init__()
        from diffusers import UNet2DModel

        if preset not in UNET_CONFIGS:
            raise ValueError(f"unknown UNet preset {preset!r}; choose from {sorted(UNET_CONFIGS)}")
        kw = {**UNET_CONFIGS[preset], **overrides}
        self.config = {"channels": channels, "size": size, "preset": preset, **overrides}
        self.unet = UNet2DModel(sample_size=size, in_channels=channels, out_channels=channels,
                                **{k: tuple(v) if isinstance(v, list) else v
                                   for k, v in kw.items()})

    def forward(self, x: torch.Tensor, c_noise: torch.Tensor) -> torch.Tensor:
        return self.unet(x, c_noise.to(x.dtype)).sample

"""diffusers' ``UNet2DModel`` as an EDM backbone, with named configurations.

The UNet receives ``c_in * y`` and ``c_noise = ln(sigma)/4`` as its (continuous) timestep;
its sinusoidal embedding of that scalar is EDM's DDPM++ choice.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from rdmd.backbones.mlp import CondEmbedding
from rdmd.errors import RdmdError

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


def check_overrides(overrides: dict[str, Any]) -> None:
    """Keys that ``UNet2DModel`` does not take are the user's error; everything diffusers
    raises after this is not, and is left alone."""
    import inspect

    from diffusers import UNet2DModel

    known = set(inspect.signature(UNet2DModel.__init__).parameters) - {
        "self", "sample_size", "in_channels", "out_channels", "class_embed_type"}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise RdmdError(f"UNet2DModel takes no argument(s) {', '.join(unknown)}")


class UNetBackbone(nn.Module):
    """``F(x, c_noise[, cond])`` for images (N, C, H, W).

    Any size works: the UNet needs sides divisible by ``2^(blocks - 1)`` (4 for ``small32``
    and 8 for ``edm64``), so other sizes are padded (edge pixels repeated, split evenly
    between the sides) and the output cropped back; sizes that divide run as before.

    ``cond_dim > 0`` adds a conditioning input: embedded by :class:`CondEmbedding` (last layer
    zero) and fed to the UNet's class-embedding slot (``class_embed_type="identity"``), which
    adds it to the time embedding; 0 leaves the UNet and its ``state_dict`` as before.
    """

    def __init__(self, channels: int, size: int, preset: str = "small32", cond_dim: int = 0,
                 **overrides: Any) -> None:
        super().__init__()
        from diffusers import UNet2DModel

        if preset not in UNET_CONFIGS:
            raise RdmdError(f"unknown UNet preset {preset!r}; choose from "
                            f"{', '.join(sorted(UNET_CONFIGS))}")
        check_overrides(overrides)
        kw = {**UNET_CONFIGS[preset], **overrides}
        self.config = {"channels": channels, "size": size, "preset": preset, **overrides}
        if cond_dim:
            self.config["cond_dim"] = cond_dim
            kw["class_embed_type"] = "identity"
        self.unet = UNet2DModel(sample_size=size, in_channels=channels, out_channels=channels,
                                **{k: tuple(v) if isinstance(v, list) else v
                                   for k, v in kw.items()})
        ted = self.unet.time_embedding.linear_2.out_features
        self.c_enc = CondEmbedding(cond_dim, ted) if cond_dim else None
        # each down block but the last halves the image: sides must divide by 2^(blocks-1)
        self.multiple = 2 ** (len(kw["down_block_types"]) - 1)

    def forward(self, x: torch.Tensor, c_noise: torch.Tensor,
                cond: torch.Tensor | None = None) -> torch.Tensor:
        labels = None
        if self.c_enc is not None:
            if cond is None:
                raise ValueError("this network is conditioned: pass cond")
            labels = self.c_enc(cond.float())
        elif cond is not None:
            raise ValueError("this network takes no conditioning input (cond_dim = 0)")
        h, w = x.shape[-2:]
        ph, pw = -h % self.multiple, -w % self.multiple
        if ph or pw:  # e.g. 30x30 in small32 (multiples of 4): pad, run, crop back
            x = F.pad(x, (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2), mode="replicate")
        out = self.unet(x, c_noise.to(x.dtype), class_labels=labels).sample
        return out[..., ph // 2:ph // 2 + h, pw // 2:pw // 2 + w] if ph or pw else out

"""What every translator shares: data units in and out, an input-shape check, outputs as a
saved image holds them, chunking, seeded noise, a cost count.

The one-step RDMD generator and the multi-step baselines are peers behind this interface, so
the sweep, the CLI and the API treat them alike and measure them on the same footing.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from rdmd.data.normalizer import Normalizer
from rdmd.edm import EDMDenoiser
from rdmd.errors import RdmdError
from rdmd.guidance import AutoGuided
from rdmd.precision import default_precision


def low_pass(x: torch.Tensor, factor: int) -> torch.Tensor:
    """Average-pool by ``factor`` and upsample back (nearest): ILVR's and EGSDE's filter.

    Box pooling plus nearest upsampling is an orthogonal projection, so ``low_pass`` is
    idempotent and ``x - low_pass(x)`` holds exactly the detail it removes (the originals use
    a bicubic resizer, which is neither).
    """
    if factor == 1:
        return x
    h, w = x.shape[-2:]
    if h % factor or w % factor:
        raise RdmdError(f"low-pass factor {factor} must divide the image size {h}x{w}")
    return F.interpolate(F.avg_pool2d(x, factor), scale_factor=factor, mode="nearest")


def check_factor(factor: int, shape: tuple[int, ...]) -> int:
    """A down-sampling factor that fits images of ``shape`` (C, H, W), else a clear error."""
    if len(shape) != 3:
        raise RdmdError("this method needs image data (a low-pass filter over pixels)")
    factor = int(factor)
    if factor < 1 or shape[-1] % factor or shape[-2] % factor:
        raise RdmdError(f"down-sampling factor must be >= 1 and divide the image size "
                        f"{shape[-2]}x{shape[-1]}, got {factor}")
    return factor


def _fmt(shape: tuple[int, ...]) -> str:
    return "x".join(str(s) for s in shape) or "()"


class Translator(ABC):
    """Maps a batch of source samples (data units) to the target domain.

    ``shape`` is one sample's shape, the model's ``data_shape``: inputs of another shape are
    refused (a convolutional network would otherwise translate them silently at the wrong
    size). ``nfe`` counts evaluations of the diffusion network per sample (1 for RDMD);
    ``aux_evals`` counts extra forward+backward passes of other networks (EGSDE's domain
    classifier), so tables can show the whole price of a method.
    """

    method: str = ""
    # "bf16": the networks run under bf16 autocast; "fp32"; None: bf16 for images where the
    # hardware computes in bf16 (1.6-2.2x faster there, outputs within 3/255 of fp32:
    # bench/bf16_translate.py; 14x slower on AVX2-only CPUs), else fp32 (rdmd.precision).
    # Set by the factory (``precision=``).
    precision: str | None = None

    def __init__(self, normalizer: Normalizer, device: torch.device,
                 shape: tuple[int, ...]) -> None:
        self.normalizer = normalizer
        self.device = device
        self.shape = tuple(int(s) for s in shape)
        self.meta: dict[str, Any] = {}  # the model directory's model.json, set by the factory

    @property
    @abstractmethod
    def nfe(self) -> int: ...

    @property
    def aux_evals(self) -> int:
        return 0

    @property
    @abstractmethod
    def params(self) -> dict[str, Any]:
        """The method's hyperparameters as JSON-ready values (a sweep table's columns)."""

    @abstractmethod
    def _map(self, z: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        """Translate one chunk in network units; noise comes from ``gen`` (CPU)."""

    def noise(self, like: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        """Standard normal noise shaped like ``like``, drawn on the CPU so runs reproduce on
        any device."""
        return torch.randn(like.shape, generator=gen).to(like.device, like.dtype)

    @property
    def resolved_precision(self) -> str:
        return self.precision or default_precision(len(self.shape) == 3, self.device)

    def translate(self, x: torch.Tensor, seed: int = 0, chunk: int = 256,
                  progress: bool = False) -> torch.Tensor:
        """Outputs for ``x`` (N samples of ``self.shape``) in data units on the CPU; the same
        ``seed`` and ``chunk`` give the same outputs. Images come back clamped to [-1, 1],
        the values a saved image holds, so every caller scores and shows the same numbers."""
        if tuple(x.shape[1:]) != self.shape:
            raise RdmdError(f"{self.method}: inputs have shape {_fmt(tuple(x.shape[1:]))}, the "
                            f"model takes {_fmt(self.shape)}")
        gen = torch.Generator().manual_seed(seed)
        outs = []
        bf16 = self.resolved_precision == "bf16"
        for part in tqdm(torch.split(x, chunk), desc=self.method, disable=not progress):
            z = self.normalizer.encode(part.to(self.device).float())
            with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=bf16):
                out = self._map(z, gen).float()
            outs.append(self.normalizer.decode(out).float().cpu())
        y = torch.cat(outs) if outs else x.new_zeros((0, *x.shape[1:])).float()
        return y.clamp(-1, 1) if len(self.shape) == 3 else y

    def describe(self) -> str:
        ps = ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}"
                       for k, v in self.params.items())
        return f"{self.method}({ps})"


class SamplerTranslator(Translator):
    """A baseline: the teacher's denoiser run through ``n_steps`` Heun steps."""

    def __init__(self, teacher: EDMDenoiser, normalizer: Normalizer, shape: tuple[int, ...],
                 n_steps: int) -> None:
        super().__init__(normalizer, next(teacher.parameters()).device, shape)
        if int(n_steps) < 1:
            raise RdmdError(f"n_steps must be >= 1, got {n_steps}")
        self.teacher = teacher
        self.n_steps = int(n_steps)

    @property
    def denoiser_calls(self) -> int:
        """Heun's evaluations of the teacher's denoiser per sample."""
        return 2 * self.n_steps - 1

    @property
    def nfe(self) -> int:
        # an autoguided teacher runs its guide beside the network at every call (an upper
        # bound where its guidance interval ends below the start: the guide then sits out)
        return self.denoiser_calls * (2 if isinstance(self.teacher, AutoGuided) else 1)

    @property
    def guidance(self) -> float:
        """The teacher's autoguidance weight as sampled here (1: the plain network)."""
        return self.teacher.weight if isinstance(self.teacher, AutoGuided) else 1.0

    def describe(self) -> str:
        guided = f", guidance={self.guidance:g}" if self.guidance != 1.0 else ""
        return super().describe()[:-1] + guided + ")"

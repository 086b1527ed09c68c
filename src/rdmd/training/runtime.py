"""Where and how a run computes: processes and devices, precision, batches, per-rank draws."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import nullcontext
from typing import Any

import torch
from torch import nn

from rdmd import distributed
from rdmd.distributed import Dist
from rdmd.errors import RdmdError


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise RdmdError(f"device {name!r} requested but CUDA is not available")
    return torch.device(name)


def setup_dist(device: str, batch_size: int) -> tuple[Dist, torch.device]:
    """Join the torchrun job (if any) and pick this rank's device; the global batch must split
    evenly over the ranks."""
    d = distributed.setup(device)
    if batch_size % d.world:
        raise RdmdError(f"batch_size {batch_size} (the global batch) does not split over "
                        f"{d.world} processes; use a multiple of {d.world}")
    return d, resolve_device(distributed.local_device(device, d))


def autocast(device: torch.device, precision: str) -> Any:
    """bf16 autocast of forward passes (about 2x faster image steps on CPU, SPEC §5)."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16")


def batches(data: torch.Tensor, batch: int, rng: torch.Generator, d: Dist | None = None
            ) -> Iterator[torch.Tensor]:
    """Global batches of ``batch`` indices drawn with replacement; each rank keeps its slice.
    Drawn from the run generator, whose state is therefore also the data position."""
    d = d or Dist()
    local = batch // d.world
    while True:
        idx = torch.randint(0, data.shape[0], (batch,), generator=rng)
        idx = idx[d.rank * local:(d.rank + 1) * local]
        yield data[idx.to(data.device)]


def data_batches(dom: Any, norm: Any, data: torch.Tensor, cfg: Any, rng: torch.Generator,
                 d: Dist, device: torch.device) -> Iterator[torch.Tensor]:
    """Fresh draws for a built-in distribution when ``cfg.fresh_data``; else the finite
    training set ``data`` (already encoded, on ``device``)."""
    if getattr(cfg, "fresh_data", False) and dom.kind == "vector" and dom.sampler is not None:
        from rdmd.data.vectors import fresh_batches

        return fresh_batches(dom.sampler, norm.encode, cfg.batch_size, rng, d.rank, d.world,
                             device)
    return batches(data, cfg.batch_size, rng, d)


def augmented(batches_: Iterator[torch.Tensor], augment: str, dom: Any,
              rng: torch.Generator) -> Iterator[torch.Tensor]:
    """``augment = "hue"``: every batch's images with their hues rotated by fresh uniform
    angles, drawn from the run generator (so a resumed run draws the same). Only for data
    whose hues are uniform (coloured MNIST), where the rotation keeps the distribution."""
    if augment == "none":
        return batches_
    if "hue_train" not in dom.info:
        raise RdmdError(f"augment 'hue' keeps the distribution only of coloured MNIST (one "
                        f"uniform random hue per image); {dom.name!r} is not")
    from rdmd.classifier import random_hue_rotation

    return (random_hue_rotation(x, rng) for x in batches_)


def source_draw(dom: Any, norm: Any, data: torch.Tensor, cfg: Any, device: torch.device
                ) -> Any:
    """``draw(n)``: ``n`` encoded source inputs for a method's start
    (:meth:`rdmd.methods.base.Method.start`), as training draws them (fresh from a built-in
    when ``cfg.fresh_data``, else rows of the encoded set ``data``), from a generator of the
    run's seed of its own: the same on every rank, and the run's batches are untouched."""
    g = torch.Generator().manual_seed(cfg.seed + 7919)
    if getattr(cfg, "fresh_data", False) and dom.kind == "vector" and dom.sampler is not None:
        from rdmd.data.vectors import fresh_draw

        return lambda n: fresh_draw(dom.sampler, norm.encode, n, g, device)
    return lambda n: data[torch.randint(len(data), (n,), generator=g).to(data.device)]


def sharded(rng: torch.Generator, d: Dist, local_batch: int) -> Any:
    """Per-sample noise of the global batch, sliced to this rank (no-op in one process)."""
    return distributed.ShardedDraws(rng, d, local_batch) if d.active else nullcontext()


class _LowPrecisionBackbone(nn.Module):
    """A frozen backbone whose weights are stored in bf16 (half the memory); it runs under bf16
    autocast and returns float32, so the preconditioning around it stays in float32."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner
        self.config = getattr(inner, "config", {})
        for p in inner.parameters():  # parameters only: buffers (frequencies) stay float32
            p.data = p.data.to(torch.bfloat16)

    def forward(self, x: torch.Tensor, c_noise: torch.Tensor, **kw: Any) -> torch.Tensor:
        with torch.autocast(x.device.type, dtype=torch.bfloat16):
            return self.inner(x, c_noise, **kw).float()


def hold_in_bf16(teacher: nn.Module) -> None:
    """Keep the frozen teacher's weights in bf16 (``teacher_dtype = "bf16"``)."""
    teacher.backbone = _LowPrecisionBackbone(teacher.backbone)
    teacher.requires_grad_(False)

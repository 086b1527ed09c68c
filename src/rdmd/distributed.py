"""Data-parallel training with torch.distributed (DDP), launched by ``torchrun``.

One process per device. Every rank holds the whole data set and the same run generator, draws
the same *global* batch indices and noise, and keeps its own slice of the batch: rank ``r`` of
``w`` gets samples ``r*b .. (r+1)*b - 1`` of each global batch of ``w*b``. Losses are means over
the local slice, and DDP averages the gradients, so a step on ``w`` ranks equals a step of one
process on the global batch (up to the order of floating-point sums). A run therefore does not
depend on how many processes it is spread over, and resumes on another count.

Without ``torchrun`` (no ``WORLD_SIZE`` in the environment, or ``WORLD_SIZE=1``) everything here
is a no-op and training runs exactly as a single process.

Backend: NCCL on CUDA (one GPU per process, ``cuda:LOCAL_RANK``), gloo on CPU.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.overrides import TorchFunctionMode

from rdmd.errors import RdmdError

#: a collective waits this long for the slowest rank (rank 0 evaluates while the others wait)
TIMEOUT_MIN = float(os.environ.get("RDMD_DIST_TIMEOUT_MIN", "120"))


@dataclass(frozen=True)
class Dist:
    """This process's place in the job."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world > 1


def env_world() -> Dist:
    """Rank and world size as ``torchrun`` sets them (a single process without it)."""
    try:
        world = int(os.environ.get("WORLD_SIZE", "1"))
        rank = int(os.environ.get("RANK", "0"))
        local = int(os.environ.get("LOCAL_RANK", "0"))
    except ValueError:
        raise RdmdError("WORLD_SIZE, RANK and LOCAL_RANK must be integers (set by torchrun)"
                        ) from None
    return Dist(rank, world, local)


def is_main() -> bool:
    """True on rank 0 (and in a single process): the rank that writes files and prints."""
    return env_world().rank == 0


def setup(device: str) -> Dist:
    """Join the process group when launched by torchrun with more than one process.

    ``device`` is the run's setting (``auto``, ``cpu``, ``cuda``...): NCCL when it resolves to
    CUDA, gloo otherwise. Safe to call twice (the second call reuses the group).
    """
    d = env_world()
    if not d.active:
        return d
    if not dist.is_available():
        raise RdmdError("this torch build has no torch.distributed; run a single process")
    if dist.is_initialized():
        if dist.get_world_size() != d.world:
            raise RdmdError("an existing process group does not match WORLD_SIZE")
        return d
    cuda = device != "cpu" and torch.cuda.is_available()
    if cuda:
        torch.cuda.set_device(d.local_rank)
    dist.init_process_group("nccl" if cuda else "gloo",
                            timeout=timedelta(minutes=TIMEOUT_MIN))
    return d


def shutdown() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def local_device(name: str, d: Dist) -> str:
    """``cuda`` (or ``auto`` on a GPU machine) means this rank's GPU under torchrun."""
    if d.active and name in ("auto", "cuda") and torch.cuda.is_available():
        return f"cuda:{d.local_rank}"
    return name


def barrier() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def all_gather_object(obj: Any) -> list[Any]:
    """Every rank's ``obj``, in rank order (a one-element list in a single process)."""
    if not (dist.is_available() and dist.is_initialized()):
        return [obj]
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def broadcast_object(obj: Any) -> Any:
    """Rank 0's ``obj`` on every rank."""
    if not (dist.is_available() and dist.is_initialized()):
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def mean_over_ranks(stats: dict[str, float]) -> dict[str, float]:
    """The average of each logged scalar over ranks: the global-batch mean of a local mean."""
    if not (dist.is_available() and dist.is_initialized()) or not stats:
        return stats
    keys = list(stats)  # the same insertion order on every rank: the log's column order
    t = torch.tensor([float(stats[k]) for k in keys], dtype=torch.float64)
    if dist.get_backend() == "nccl":
        t = t.cuda()
    dist.all_reduce(t)
    t = t.cpu() / dist.get_world_size()
    return {k: float(v) for k, v in zip(keys, t.tolist(), strict=True)}


def any_rank(flag: bool) -> bool:
    """True on every rank if ``flag`` is true on any (a collective)."""
    if not (dist.is_available() and dist.is_initialized()):
        return flag
    t = torch.tensor([1.0 if flag else 0.0])
    if dist.get_backend() == "nccl":
        t = t.cuda()
    dist.all_reduce(t)
    return bool(t.item() > 0)


class DDP(nn.parallel.DistributedDataParallel):
    """DistributedDataParallel that also exposes the wrapped module's plain attributes
    (``sigma_data``, ``sigma_g``, ``denoiser``), so losses written for the bare module work."""

    def __getattr__(self, name: str) -> Any:
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(self.module, name)


def wrap(module: nn.Module, d: Dist, device: torch.device) -> nn.Module:
    """``module`` under DDP when the job has several ranks, else unchanged.

    Gradients are averaged across ranks during ``backward``, so gradient clipping and the
    optimiser step see the global-batch gradient on every rank. Buffers are synchronised once,
    at wrapping (they never change while training). Gradients live in the all-reduce buckets
    (``gradient_as_bucket_view``): no second copy of them.
    """
    if not d.active:
        return module
    ids = [device.index] if device.type == "cuda" else None
    return DDP(module, device_ids=ids, forward_sync_buffers=False, gradient_as_bucket_view=True)


class ShardedDraws(TorchFunctionMode):
    """Inside a step on rank ``r`` of ``w``: every per-sample draw from the run's generator is
    made at the global batch size and sliced to this rank's samples.

    The losses draw noise levels ``rand(b)``/``randn(b)`` and noise ``randn(b, ...)`` from the
    run generator; with this mode active each such draw becomes ``randn(w*b, ...)[r*b:(r+1)*b]``,
    the very numbers one process with the global batch would draw for those samples, and the
    generator advances identically on every rank. Draws whose first dimension is not the local
    batch ``b`` are left alone (identical on all ranks, as in one process); ``randint`` (the
    global batch indices) passes through; any other draw from the run generator is an error
    rather than a silent difference from one process.
    """

    _FUNCS = (torch.randn, torch.rand)

    def __init__(self, rng: torch.Generator, d: Dist, local_batch: int) -> None:
        super().__init__()
        self.rng, self.d, self.b = rng, d, local_batch

    def __torch_function__(self, func: Any, types: Any, args: tuple = (),
                           kwargs: dict | None = None) -> Any:
        kwargs = kwargs or {}
        if func in self._FUNCS and kwargs.get("generator") is self.rng:
            size = kwargs.pop("size", None)
            if size is None:
                size = args[0] if len(args) == 1 and not isinstance(args[0], int) else args
                args = ()
            size = tuple(int(s) for s in size)
            if size and size[0] == self.b and not args:
                full = func((self.b * self.d.world, *size[1:]), **kwargs)
                lo = self.d.rank * self.b
                return full[lo:lo + self.b]
            return func(size, *args, **kwargs)
        if kwargs.get("generator") is self.rng and func is not torch.randint:
            # a new kind of draw in the losses: slicing it is not known to be right
            raise RuntimeError(f"rdmd.distributed.ShardedDraws: unhandled draw {func} from the "
                               "run generator; teach ShardedDraws to shard it")
        return func(*args, **kwargs)


class Gathered(nn.Module):
    """Evaluation across ranks: every rank calls ``forward`` with the same full batch, computes
    its contiguous slice, and gets every rank's outputs back in order (an all-gather).

    Used for the held-out translation pass and the teacher's sampling, so evaluation work is
    split over the ranks; tensor arguments with the batch as first dimension (per-sample
    noise levels) are sliced alike. In one process it is the module itself.
    """

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = module

    def forward(self, x: torch.Tensor, *args: Any) -> torch.Tensor:
        if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
            return self.module(x, *args)
        n, w, r = x.shape[0], dist.get_world_size(), dist.get_rank()
        per = -(-n // w)
        lo, hi = min(r * per, n), min((r + 1) * per, n)
        local = [a[lo:hi] if torch.is_tensor(a) and a.ndim and a.shape[0] == n else a
                 for a in args]
        out = self.module(x[lo:hi], *local)
        pad = out.new_zeros((per, *out.shape[1:]))
        pad[:hi - lo] = out
        parts = [torch.empty_like(pad) for _ in range(w)]
        dist.all_gather(parts, pad.contiguous())
        return torch.cat(parts)[:n]


def gathered(module: nn.Module) -> nn.Module:
    """``module`` whose forward is split over the ranks (see :class:`Gathered`); unchanged in a
    single process."""
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        return Gathered(module)
    return module

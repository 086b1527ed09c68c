"""The method interface: what the generic run loop needs from anything it trains.

A method declares its networks (``modules``: the bare modules a checkpoint holds) and their
optimisers, and does one ``train_step(batch, rng) -> dict of losses``. The run loop
(:mod:`rdmd.training.loop`) checkpoints, resumes, logs, schedules learning rates, keeps EMAs
and wraps for DDP whatever a method declares, so a new method is one module and one registry
entry (:mod:`rdmd.methods`), with no edit to the loop.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from typing import Any, ClassVar

import torch
from torch import nn

from rdmd import distributed


class NonFiniteLossError(RuntimeError):
    """Raised when a loss turns NaN/inf, so the run stops before a checkpoint is poisoned."""


def adam(params: Any, lr: float, betas: tuple[float, float] = (0.9, 0.999)
         ) -> torch.optim.Adam:
    """Adam with the fused kernel: 4x cheaper steps than the default on CPU, which matters
    for small networks where the optimizer is a tenth of an iteration."""
    return torch.optim.Adam(params, lr=lr, betas=betas, fused=True)


class Method(ABC):
    """Networks, optimisers and one training step.

    ``modules`` are the bare modules (never DDP wrappers), so a checkpoint is the same for any
    number of processes; ``nets`` are what ``train_step`` calls: the same modules, or their DDP
    wrappers once the loop has called :meth:`wrap`. ``ema_of`` (required) names the module a
    run exports; the loop keeps its moving average when the config asks for one.
    """

    #: registry name (distillation methods are listed in :data:`rdmd.methods.METHODS`)
    name: ClassVar[str] = ""
    ema_of: ClassVar[str]
    #: the method trains on real target samples too: the recipe calls ``attach_target``
    needs_target: ClassVar[bool] = False

    def __init__(self) -> None:
        self.modules: dict[str, nn.Module] = {}
        self.optimizers: dict[str, torch.optim.Optimizer] = {}
        self.nets: dict[str, nn.Module] = {}
        self.grad_clip: float = 0.0
        #: the moving average of ``modules[ema_of]`` the loop keeps (None: no EMA)
        self.ema: Any = None

    def result(self) -> nn.Module:
        """The trained result: the EMA of ``modules[ema_of]`` if one is kept, else itself."""
        return self.ema.model if self.ema is not None else self.modules[self.ema_of]

    def declare(self, name: str, module: nn.Module, lr: float | None = None,
                betas: tuple[float, float] = (0.9, 0.999), params: Any = None) -> nn.Module:
        """Register a module (trained with Adam when ``lr`` is given) and return it;
        ``params``: Adam's parameter groups when some of the module's parameters need a rate
        of their own (default: all of them at ``lr``)."""
        self.modules[name] = module
        self.nets[name] = module
        if lr is not None:
            self.optimizers[name] = adam(module.parameters() if params is None else params,
                                         lr, betas)
        return module

    def wrap(self, fn: Callable[[nn.Module], nn.Module]) -> None:
        """Replace each trained module's entry in ``nets`` by ``fn(module)`` (DDP)."""
        for name in self.optimizers:
            self.nets[name] = fn(self.modules[name])

    def update(self, name: str, loss: torch.Tensor) -> None:
        """One optimiser step of module ``name`` on ``loss`` (clipped if configured)."""
        opt = self.optimizers[name]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if self.grad_clip:
            nn.utils.clip_grad_norm_(self.modules[name].parameters(), self.grad_clip)
        opt.step()

    @staticmethod
    def check_finite(what: str, value: float) -> None:
        """Stop every rank at the same step when a loss is not finite on any of them: the
        others would otherwise wait inside the gradient all-reduce (a collective under
        torchrun; a plain check in one process)."""
        bad = not math.isfinite(value)
        if distributed.any_rank(bad):
            raise NonFiniteLossError(f"{what} loss is {value}" if bad
                                     else f"{what} loss is non-finite on another rank")

    @classmethod
    def from_config(cls, teacher: Any, cfg: Any, cost: Any) -> Method:
        """The method a distill run's config describes (frozen teacher, config, cost)."""
        return cls(teacher, cfg, cost)  # type: ignore[call-arg]

    def attach_target(self, batches: Iterator[torch.Tensor]) -> None:
        """Real target batches, for a method that ``needs_target`` (others draw none)."""
        raise TypeError(f"method {self.name} takes no target batches")

    def model_meta(self) -> dict[str, Any]:
        """Extra keys the exported ``model.json`` records about the method."""
        return {}

    def use_teacher(self, sampled: nn.Module, churn: Any = None,
                    real: nn.Module | None = None) -> None:
        """How a distillation should use a teacher that is more than the bare network it
        copies (an autoguided teacher, :mod:`rdmd.guidance`): ``sampled`` and ``churn`` (a
        :class:`rdmd.sampler.Churn`, None: deterministic) draw the teacher's samples,
        ``real`` (None: the bare network) is the score it distils. A method without a
        teacher ignores it."""
        return None

    def start(self, draw: Callable[[int], torch.Tensor], progress: bool = False
              ) -> dict[str, float]:
        """Called once before the first step of a new run (never on resume: the checkpoint
        holds the weights), with ``draw(n)``, ``n`` encoded training inputs; a method may
        initialise its networks from data here (RDMD's ``ot_start``; ``progress``: show a
        bar). Returns what it wants reported; the default does nothing."""
        return {}

    def begin_step(self, step: int, total: int) -> None:
        """Called by the loop before each ``train_step`` (0-based ``step`` of ``total``), so a
        method can follow a schedule of its own that a resumed run picks up at the same
        point; the default follows none."""
        return None

    @abstractmethod
    def train_step(self, batch: torch.Tensor, rng: torch.Generator) -> dict[str, float]:
        """One iteration on a (local) batch; noise from ``rng``; returns the losses."""

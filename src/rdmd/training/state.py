"""What a checkpoint holds, so that ``--resume`` continues exactly: every module, every
optimiser, the run generator and each rank's torch generators."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from rdmd import checkpoint as ckpt
from rdmd import distributed
from rdmd.distributed import Dist
from rdmd.errors import RdmdError


def fmt_shape(shape: tuple[int, ...]) -> str:
    return "x".join(str(s) for s in shape)


@dataclass
class RunState:
    """What a checkpoint must hold to continue exactly: every module (weights and EMA copies),
    every optimiser, the run generator (batches and noise, i.e. also the data position) and
    each rank's torch (and CUDA) generator.

    ``modules`` are the bare modules, never their DDP wrappers, so a checkpoint is the same
    whatever the number of ranks; any module added here is checkpointed and restored.
    """

    modules: dict[str, nn.Module]
    optimizers: dict[str, torch.optim.Optimizer]
    rng: torch.Generator
    dist: Dist = field(default_factory=Dist)
    #: what the checkpoint must match to be resumed here (job, backbone, data shape)
    signature: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.signature = json.loads(json.dumps(self.signature))  # as saved: lists, not tuples

    def to_checkpoint(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]] | None:
        """The checkpoint's tensors and JSON metadata, on rank 0; ``None`` on other ranks.
        A collective under DDP (the ranks' generator states are gathered): call it on all."""
        local = {"torch": torch.get_rng_state()}
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            local["cuda"] = torch.cuda.get_rng_state()
        states = distributed.all_gather_object(local)
        if not self.dist.main:
            return None
        tensors: dict[str, torch.Tensor] = {}
        meta: dict[str, Any] = {"optimizers": {}, "world_size": self.dist.world,
                                "run": self.signature}
        for name, m in self.modules.items():
            for k, v in m.state_dict().items():
                tensors[f"module.{name}.{k}"] = v
        for name, opt in self.optimizers.items():
            t, m = ckpt.optimizer_to_flat(opt, f"opt.{name}")
            tensors.update(t)
            meta["optimizers"][name] = m
        tensors["rng.run"] = self.rng.get_state()
        tensors["rng.torch"] = states[0]["torch"]
        for r, st in enumerate(states):
            if r:
                tensors[f"rng.rank{r}.torch"] = st["torch"]
            if "cuda" in st:
                tensors[f"rng.rank{r}.cuda"] = st["cuda"]
        return tensors, meta

    def from_checkpoint(self, tensors: dict[str, torch.Tensor], meta: dict[str, Any],
                        where: Path | str = "checkpoint") -> None:
        saved = meta.get("run")
        if saved and self.signature and saved != self.signature:
            diff = [k for k in self.signature if saved.get(k) != self.signature[k]]
            k = diff[0] if diff else "run"
            raise RdmdError(f"{where} belongs to another run: its {k} is "
                            f"{_fmt_sig(saved.get(k))}, this run's is "
                            f"{_fmt_sig(self.signature.get(k))}")
        for name, m in self.modules.items():
            _load_module(m, _module_state(tensors, name), f"{where} does not fit module "
                         f"{name!r} of this run")
        for name, opt in self.optimizers.items():
            if name not in meta.get("optimizers", {}):
                raise RdmdError(f"{where} holds no state for optimiser {name!r}")
            _load_optimizer(opt, name, tensors, meta, f"{where}: optimiser {name!r} state "
                            "does not fit")
        if "rng.run" not in tensors:
            raise RdmdError(f"{where} holds no run generator state (rng.run)")
        self.rng.set_state(tensors["rng.run"])
        r = self.dist.rank
        own = "rng.torch" if r == 0 else f"rng.rank{r}.torch"
        if own in tensors:  # a rank the saved run did not have keeps its seeded generator
            torch.set_rng_state(tensors[own])
        if f"rng.rank{r}.cuda" in tensors and torch.cuda.is_available():
            torch.cuda.set_rng_state(tensors[f"rng.rank{r}.cuda"])


def _module_state(tensors: dict[str, torch.Tensor], name: str) -> dict[str, torch.Tensor]:
    head = f"module.{name}."
    return {k[len(head):]: v for k, v in tensors.items() if k.startswith(head)}


def _load_module(m: nn.Module, sd: dict[str, torch.Tensor], what: str) -> None:
    """Load ``sd`` into ``m``; a mismatch is one line (torch's first specific complaint)."""
    try:
        m.load_state_dict(sd)
    except RuntimeError as e:
        lines = [ln.strip() for ln in str(e).strip().splitlines() if ln.strip()]
        first = lines[1] if len(lines) > 1 else lines[0] if lines else "mismatch"
        raise RdmdError(f"{what}: {first[:300]}") from None


def _load_optimizer(opt: torch.optim.Optimizer, name: str, tensors: dict[str, torch.Tensor],
                    meta: dict[str, Any], what: str) -> None:
    try:
        ckpt.optimizer_from_flat(opt, f"opt.{name}", tensors, meta["optimizers"][name])
    except (KeyError, ValueError, RuntimeError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise RdmdError(f"{what}: {first}") from None


def _fmt_sig(v: Any) -> str:
    if isinstance(v, list) and all(isinstance(x, int) for x in v):
        return fmt_shape(tuple(v))
    return json.dumps(v, sort_keys=True) if isinstance(v, dict) else str(v)


def warm_start(modules: dict[str, nn.Module], optimizers: dict[str, torch.optim.Optimizer],
               path: str | Path, signature: dict[str, Any]) -> dict[str, Any]:
    """Start a new run from another run's checkpoint: the networks (and the optimisers'
    moments) both runs have, nothing else.

    Why: a finished run's schedule cannot be extended (a cosine rate has reached 0; resume
    refuses to change it), yet its networks are the best start for a longer or different
    run (another schedule, the GAN term). Unlike ``--resume`` this keeps neither the step,
    nor the generators, nor the learning rates: the new run's own rates and draws apply from
    its step 0. A module of this run that the checkpoint lacks (the GAN head) keeps its
    initialisation; one the checkpoint has and this run lacks is ignored.
    """
    src = Path(path)
    if not src.exists():
        raise RdmdError(f"init_from: {src} does not exist")
    if not (src / ckpt.STATE).is_file():  # a run folder: its latest checkpoint
        last = ckpt.latest_checkpoint(src / "checkpoints")
        if last is None:
            raise RdmdError(f"init_from: {src} is neither a checkpoint folder nor a run "
                            "folder with checkpoints")
        src = last
    tensors, meta = ckpt.load_checkpoint(src)
    saved = meta.get("run") or {}
    for key in ("job", "backbone", "data_shape"):
        if key in signature and key in saved and saved[key] != json.loads(
                json.dumps(signature[key])):
            raise RdmdError(f"init_from: {src} belongs to a run with another {key} "
                            f"({_fmt_sig(saved[key])}; this run: {_fmt_sig(signature[key])})")
    loaded, fresh = [], []
    for name, m in modules.items():
        sd = _module_state(tensors, name)
        if not sd:
            fresh.append(name)
            continue
        _load_module(m, sd, f"init_from: {src} does not fit module {name!r}")
        loaded.append(name)
    if not loaded:
        raise RdmdError(f"init_from: {src} holds none of this run's networks "
                        f"({', '.join(modules)})")
    moments = []
    for name, opt in optimizers.items():
        if name not in meta.get("optimizers", {}) or name not in loaded:
            continue
        groups = [{k: v for k, v in g.items() if k != "params"} for g in opt.param_groups]
        _load_optimizer(opt, name, tensors, meta,
                        f"init_from: {src}: optimiser {name!r} does not fit")
        for g, own in zip(opt.param_groups, groups, strict=True):
            g.update(own)  # this run's rates and betas, not the checkpoint's decayed rate
        moments.append(name)
    return {"path": str(src), "step": int(meta["step"]), "modules": loaded,
            "optimizers": moments, "fresh": fresh}

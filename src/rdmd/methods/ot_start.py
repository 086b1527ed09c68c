"""Start a one-step generator at the semi-discrete OT map onto the teacher's samples.

Why: on multi-modal 2-D targets the distilled map's smear between modes is made by the DM
term's slow drawing of the jumps between modes (docs/twod.md). The map RDMD tends to as
``lambda -> 0`` is the OT map (Theorem 3.1), and a regression onto a known map draws those
jumps far faster than the DM gradient does. So before RDMD's first step the generator is
fitted, by plain least squares, to the semi-discrete OT map from the source onto ``K`` of the
teacher's own samples (32 Heun steps): each source point goes to the atom of its power
(Laguerre) cell, the cells holding ``1/K`` of the source each. RDMD then trains from there.

The atoms come from the teacher, never from the target set, so the start knows nothing a
distillation may not know. Images are flattened for the cost, so their cells are those of the
pixel-space squared distance, the cost RDMD's ``l2`` term pays: the start is a translation
that keeps what pixels keep (a digit's hue), which the DM term then sharpens (docs/images.md,
"Starting images at the pixel OT map"). On a finite training set the source draws repeat
rows, so fewer atoms than training images give every atom a cell.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from rdmd.methods.base import adam

#: source points per atom in the discrete problem whose duals define the cells
SOURCE_PER_ATOM = 4


def cell_potentials(source: torch.Tensor, atoms: torch.Tensor) -> torch.Tensor:
    """Dual potentials ``v`` of the OT problem from ``source`` (uniform) onto ``atoms``
    (uniform) for the cost ``|x - y|^2 / 2``: a new point ``x`` belongs to the cell
    ``argmax_k x.y_k - |y_k|^2 / 2 + v_k``, and the cells split the source evenly."""
    import ot

    cost = 0.5 * torch.cdist(_flat(source).double(), _flat(atoms).double()).pow(2).numpy()
    n, k = cost.shape
    _, log = ot.emd(np.full(n, 1.0 / n), np.full(k, 1.0 / k), cost, log=True,
                    numItermax=max(100_000, 200 * n * k // 100))
    return torch.as_tensor(log["v"], dtype=torch.float32)


def cell_of(x: torch.Tensor, atoms: torch.Tensor, potentials: torch.Tensor) -> torch.Tensor:
    """The index of each row of ``x``'s cell (see :func:`cell_potentials`)."""
    x, atoms = _flat(x), _flat(atoms)
    return (x @ atoms.T - 0.5 * atoms.pow(2).sum(1) + potentials).argmax(1)


def _flat(t: torch.Tensor) -> torch.Tensor:
    """Samples of any shape (vectors, images) as rows."""
    return t.reshape(len(t), -1)


def fit_to_ot_map(generator: nn.Module, teacher: nn.Module,
                  draw: Callable[[int], torch.Tensor], steps: int, atoms: int = 1024,
                  lr: float = 1e-3, batch: int = 128, seed: int = 0,
                  call: Callable[[nn.Module, torch.Tensor], torch.Tensor] | None = None,
                  progress: bool = False, churn: Any = None) -> dict[str, float]:
    """Fit ``generator`` (in place) to the semi-discrete OT map from the source onto
    ``atoms`` teacher samples, by ``steps`` Adam steps of mean squared error at rate ``lr``
    decaying to 0 (cosine). ``draw(n)`` returns ``n`` encoded source inputs (fresh draws of a
    built-in, or rows of the training set), on the generator's device.

    The teacher's samples use their own generator seeded by ``seed`` (the run's is
    untouched), and ``draw`` is deterministic in the run's seed, so every DDP rank starts
    from the same weights. ``call`` evaluates the generator (default ``generator(x)``);
    ``churn``: the teacher's stochastic sampler (a :class:`rdmd.sampler.Churn` or an
    ``s_churn``; None: deterministic).
    Returns the final loss and the share of the atoms whose cells a fresh source sample of
    the solve's size leaves empty (a check on the solve: near ``exp(-4)``, 2%, when right,
    as for any cell of mass ``1/K`` in ``4K`` draws)."""
    from rdmd.sampler import sample

    probe = draw(SOURCE_PER_ATOM * atoms).float()
    device = probe.device
    g = torch.Generator().manual_seed(seed)
    y = sample(teacher, (atoms, *probe.shape[1:]), n_steps=32, generator=g, device=device,
               churn=churn).float()
    v = cell_potentials(probe.cpu(), y.cpu()).to(device)
    fresh = cell_of(draw(SOURCE_PER_ATOM * atoms).float(), y, v)
    empty = 1.0 - torch.unique(fresh).numel() / atoms
    call = call or (lambda net, x: net(x))
    opt = adam(generator.parameters(), lr)
    was = generator.training
    generator.train()
    loss = torch.zeros(())
    for i in tqdm(range(steps), desc="ot_start", disable=not progress, dynamic_ncols=True,
                  mininterval=1.0):
        for group in opt.param_groups:
            group["lr"] = lr * 0.5 * (1 + math.cos(math.pi * i / steps))
        x = draw(batch).float()
        with torch.no_grad():
            target = y[cell_of(x, y, v)]
        loss = (call(generator, x).float() - target).pow(2).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    generator.train(was)
    return {"ot_start_loss": float(loss.item()), "ot_start_empty_cells": float(empty)}

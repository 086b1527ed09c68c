"""Which weights a run ships: the last, or (``select = "best_val"``) those of the evaluation
with the best score on a validation split of the training sources (``val_size``).

The validation sources are never trained on and are scored against target data the test
never compares with (:func:`rdmd.evaluation.validation_metrics`), so the test metrics of the
chosen weights are not chosen on the test. The best weights live in a module of the run's
checkpoints: a resumed run remembers the best of its past exactly.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from rdmd.errors import RdmdError

#: offsets the split's generator from the run seed (batches and the OT start use others)
SPLIT_SEED_OFFSET = 104_729


def split_validation(train: torch.Tensor, val_size: int, seed: int, name: str
                     ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The training sources left to train on, and ``val_size`` of them held out (a seeded
    random choice: the files' order may follow a label or a hue). Both keep the data's
    order."""
    if not val_size:
        return train, None
    if val_size >= len(train):
        raise RdmdError(f"val_size {val_size} leaves no training sources: {name!r} has "
                        f"{len(train)}")
    perm = torch.randperm(len(train), generator=torch.Generator().manual_seed(
        seed + SPLIT_SEED_OFFSET))
    held = perm[:val_size].sort().values
    kept = perm[val_size:].sort().values
    return train[kept], train[held]


class BestWeights(nn.Module):
    """A copy of the network at its best validation score so far, with that score and its
    step as buffers (infinity and -1 before any evaluation): checkpointed with the run."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = copy.deepcopy(net).eval().requires_grad_(False)
        self.register_buffer("value", torch.tensor(float("inf"), dtype=torch.float64))
        self.register_buffer("step", torch.tensor(-1, dtype=torch.int64))

    @torch.no_grad()
    def offer(self, net: nn.Module, value: float, step: int) -> bool:
        """Keep ``net``'s weights if ``value`` is lower than the best so far (a NaN never
        is); True if kept."""
        if not value < float(self.value):
            return False
        self.net.load_state_dict(net.state_dict())
        self.value.fill_(value)
        self.step.fill_(step)
        return True

    def chosen(self) -> dict[str, float | int] | None:
        """What the model's metadata says of the choice (None before any evaluation)."""
        if int(self.step) < 0:
            return None
        return {"step": int(self.step), "value": float(self.value)}

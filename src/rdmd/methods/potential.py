"""A one-step generator that is the gradient of a scalar potential: ``G(x) = x + grad s(x)``.

Why: for the squared-L2 cost the paper's objective is ``D(G#p, q) + lambda E||G(x) - x||^2``
with ``D`` a function of the output law alone. Whatever law ``nu`` the optimum reaches, its
map is the cheapest one onto ``nu``, the Brenier map, which is the gradient of a convex
function. So the optimum is a gradient field, and a generator built as one loses nothing
there. What it removes is the family of maps the DM term cannot tell apart: a rotation of a
Gaussian source leaves the output law unchanged, so only the small cost term can undo one
(docs/twod.md, "What bounds the d = 8 map"); a gradient field has a symmetric Jacobian and
cannot rotate at all.

The potential is a small SiLU MLP (smooth, so the map is; a LeakyReLU potential's gradient
would be piecewise constant) on the input or on its random Fourier features, with a last
layer that starts at zero: the generator starts as the identity (the ``sigma_g -> 0`` limit of
the denoiser generator). Vector data only; the map needs autograd at inference, so the
forward pass turns it on locally (also under ``torch.no_grad`` and ``torch.inference_mode``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from rdmd.backbones.mlp import FourierFeatures
from rdmd.edm import EDMDenoiser
from rdmd.errors import RdmdError

#: the backbone name a potential generator is saved under (rdmd.models rebuilds it)
POTENTIAL = "potential"
#: hidden widths of the potential's MLP unless a run says otherwise
DEFAULT_WIDTHS = (256, 256, 256)


class PotentialGenerator(nn.Module):
    """``G(x) = x + grad_x s(x)`` with ``s`` a scalar MLP (zero at step 0)."""

    def __init__(self, dim: int, widths: Sequence[int] = DEFAULT_WIDTHS,
                 fourier: Sequence[float] | None = None) -> None:
        super().__init__()
        self.dim = int(dim)
        self.config: dict[str, Any] = {"dim": self.dim, "widths": [int(w) for w in widths]}
        self.features: FourierFeatures | None = None
        in_dim = self.dim
        if fourier:
            self.features = FourierFeatures(self.dim, int(fourier[0]), float(fourier[1]))
            in_dim = self.features.out_dim
            self.config["fourier"] = [int(fourier[0]), float(fourier[1])]
        layers: list[nn.Module] = []
        for a, b in zip([in_dim, *widths[:-1]], widths, strict=True):
            layers += [nn.Linear(a, b), nn.SiLU()]
        last = nn.Linear(widths[-1], 1)
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)
        self.net = nn.Sequential(*layers, last)

    def potential(self, x: torch.Tensor) -> torch.Tensor:
        """``s(x)`` per sample (without the ``|x|^2 / 2`` whose gradient is the identity)."""
        h = self.features(x) if self.features is not None else x
        return self.net(h).squeeze(-1)

    def forward(self, x: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        if cond is not None:
            raise ValueError("a potential generator takes no conditioning input")
        keep_graph = torch.is_grad_enabled()  # training: the update needs d(grad s)/d(theta)
        with torch.inference_mode(False), torch.enable_grad():
            z = x if x.requires_grad else x.detach().clone().requires_grad_(True)
            (grad,) = torch.autograd.grad(self.potential(z).sum(), z, create_graph=keep_graph)
        return x + grad if keep_graph else (x + grad).detach()


def build_potential(spec: dict[str, Any]) -> PotentialGenerator:
    """A potential generator from its saved description (``model.json``'s ``generator``)."""
    return PotentialGenerator(spec["dim"], spec.get("widths", DEFAULT_WIDTHS),
                              spec.get("fourier"))


def potential_generator(teacher: EDMDenoiser, extras: dict | None,
                        widths: list[int] | None) -> tuple[PotentialGenerator, dict[str, Any]]:
    """A potential generator for the teacher's data (its MLP gives the dimension), on the
    teacher's device, and its saved description; ``extras``' Fourier branch becomes the
    potential's input features."""
    dim = getattr(teacher.backbone, "dim", None)
    if type(teacher.backbone).__name__ != "MLPBackbone" or dim is None:
        raise RdmdError("generator = 'potential' is for vector data (a teacher with the MLP "
                        f"backbone); this teacher's is {type(teacher.backbone).__name__}")
    ff = (extras or {}).get("fourier_branch")
    gen = PotentialGenerator(dim, widths or DEFAULT_WIDTHS, ff)
    gen.to(next(teacher.parameters()).device).train()
    return gen, {"name": POTENTIAL, **gen.config}

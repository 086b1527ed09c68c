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

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from rdmd.backbones.mlp import FourierFeatures
from rdmd.edm import EDMDenoiser
from rdmd.errors import RdmdError

#: the backbone name a potential generator is saved under (rdmd.models rebuilds it)
POTENTIAL = "potential"
#: the backbone name of the convex piecewise-quadratic potential (:class:`ConvexGenerator`)
CONVEX = "convex"
#: hidden widths of the potential's MLP unless a run says otherwise
DEFAULT_WIDTHS = (256, 256, 256)
#: quadratic pieces of the convex potential unless a run says otherwise
DEFAULT_PIECES = 64
#: the generator kinds (config key ``generator``) that are gradient fields, built here
GRADIENT_KINDS = (POTENTIAL, CONVEX)


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


class ConvexGenerator(nn.Module):
    """``G(x) = grad phi(x)`` with ``phi = tau * logsumexp_k(q_k(x) / tau)`` and convex
    quadratic pieces ``q_k(x) = |L_k^T x|^2 / 2 + b_k . x + c_k``:
    ``G(x) = sum_k p_k(x) (L_k L_k^T x + b_k)``, ``p = softmax(q / tau)``.

    Why: ``phi`` is convex, so ``G`` is monotone, the form of every squared-L2 OT map
    (Brenier), and among the maps that push the source onto a law it is the cheapest (its
    segments may still cross, as the OT map's do: experiments/twod_ot_crossings.py). A map
    onto separated modes jumps between them; here a jump is a change of the winning piece, as
    sharp as ``tau`` (learned) makes it, where an MLP must grow steep boundaries slowly
    (docs/twod.md). Each piece is an affine map, so
    ``K`` pieces draw a target as ``K`` affine images of the source (a Gaussian -> Gaussian
    map needs one). Built near the identity (``L_k = I``, ``c_k = 0``, small random ``b_k``);
    the method then starts it at teacher samples (:func:`start_at_teacher_samples`).
    """

    def __init__(self, dim: int, pieces: int = DEFAULT_PIECES, tau: float = 0.1,
                 spread: float = 0.1, widths: Sequence[int] | None = None) -> None:
        super().__init__()
        self.dim, self.pieces = int(dim), int(pieces)
        self.config: dict[str, Any] = {"dim": self.dim, "pieces": self.pieces}
        #: optional smooth term ``grad s(x)`` (an MLP potential, zero at step 0): it bends
        #: what the affine pieces can only stretch; the sum is no longer monotone for sure
        self.smooth: PotentialGenerator | None = None
        if widths:
            self.smooth = PotentialGenerator(self.dim, widths)
            self.config["widths"] = [int(w) for w in widths]
        self.L = nn.Parameter(torch.eye(self.dim).repeat(self.pieces, 1, 1))
        self.b = nn.Parameter(spread * torch.randn(self.pieces, self.dim))
        self.c = nn.Parameter(torch.zeros(self.pieces))
        self.log_tau = nn.Parameter(torch.tensor(math.log(tau)))

    def weights(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The pieces' softmax weights ``p`` (N x K) and ``L_k^T x`` (N x K x d)."""
        lx = torch.einsum("nd,kde->nke", x, self.L)
        q = 0.5 * lx.square().sum(-1) + x @ self.b.T + self.c
        return torch.softmax(q / self.log_tau.exp(), dim=1), lx

    def forward(self, x: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        if cond is not None:
            raise ValueError("a convex generator takes no conditioning input")
        p, lx = self.weights(x)
        ax = torch.einsum("nke,kde->nkd", lx, self.L) + self.b
        out = torch.einsum("nk,nkd->nd", p, ax)
        if self.smooth is not None:
            out = out + (self.smooth(x) - x)
        return out


@torch.no_grad()
def start_at_teacher_samples(gen: ConvexGenerator, teacher: EDMDenoiser, n_steps: int = 32,
                             n_source: int = 16384, iters: int = 500, spread: float = 0.1,
                             tau: float = 0.05, seed: int = 0) -> None:
    """Start the convex map at the semi-discrete OT map onto ``K`` of the teacher's samples.

    Why: from near the identity the pieces compete, and the first to move outward win whole
    sectors (rich get richer): the DM term, mode-seeking, does not make them give mass back
    to a mode left uncovered. Here piece ``k`` is set to output teacher sample ``y_k``
    (``b_k = y_k``, ``L_k = sqrt(spread) I``, so each atom starts as a blob of that scale),
    and ``c_k`` solves the semi-discrete dual (``c_k += (1/K - mass_k)``) so each cell holds
    ``1/K`` of ``N(0, I)`` (the source, normalised, stands in for itself: the DM term then
    corrects what the cells get wrong for a non-Gaussian source).
    """
    from rdmd.sampler import sample

    dev = gen.b.device
    g = torch.Generator().manual_seed(seed)
    k, d = gen.pieces, gen.dim
    y = sample(teacher, (k, d), n_steps=n_steps, generator=g, device=dev).float()
    gen.b.copy_(y)
    gen.L.copy_(spread ** 0.5 * torch.eye(d, device=dev).expand(k, d, d))
    gen.log_tau.fill_(math.log(tau))
    x = torch.randn(n_source, d, generator=g).to(dev)
    xy = x @ y.T  # the quadratic term is the same in every piece: the cells are power cells
    c = torch.zeros(k, device=dev)
    for i in range(iters):
        mass = torch.bincount((xy + c).argmax(1), minlength=k).float() / n_source
        c += (1.0 / k - mass) * (1.0 if i < iters // 2 else 0.3)
    gen.c.copy_(c)


#: the generator modules built here (no denoiser inside, no noise level)
GRADIENT_GENERATORS = (PotentialGenerator, ConvexGenerator)


def build_potential(spec: dict[str, Any]) -> PotentialGenerator | ConvexGenerator:
    """A gradient-field generator from its saved description (``model.json``'s
    ``backbone``)."""
    if spec["name"] == CONVEX:
        return ConvexGenerator(spec["dim"], spec.get("pieces", DEFAULT_PIECES),
                               widths=spec.get("widths"))
    return PotentialGenerator(spec["dim"], spec.get("widths", DEFAULT_WIDTHS),
                              spec.get("fourier"))


def potential_generator(teacher: EDMDenoiser, extras: dict | None,
                        widths: list[int] | None, kind: str = POTENTIAL,
                        pieces: int | None = None,
                        ) -> tuple[PotentialGenerator | ConvexGenerator, dict[str, Any]]:
    """A gradient-field generator of ``kind`` (``potential`` or ``convex``) for the teacher's
    data (its MLP gives the dimension), on the teacher's device, and its saved description;
    ``extras``' Fourier branch becomes the MLP potential's input features."""
    dim = getattr(teacher.backbone, "dim", None)
    if type(teacher.backbone).__name__ != "MLPBackbone" or dim is None:
        raise RdmdError(f"generator = {kind!r} is for vector data (a teacher with the MLP "
                        f"backbone); this teacher's is {type(teacher.backbone).__name__}")
    gen: PotentialGenerator | ConvexGenerator
    if kind == CONVEX:
        gen = ConvexGenerator(dim, pieces or DEFAULT_PIECES, widths=widths)
    else:
        gen = PotentialGenerator(dim, widths or DEFAULT_WIDTHS,
                                 (extras or {}).get("fourier_branch"))
    gen.to(next(teacher.parameters()).device).train()
    if isinstance(gen, ConvexGenerator):
        start_at_teacher_samples(gen, teacher)
    return gen, {"name": kind, **gen.config}

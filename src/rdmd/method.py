"""RDMD, the paper's Eq. 15, in one place.

Coordinate descent on two objectives:

* generator ``theta``:  ``int w_t KL(p_t^theta || p_t^T) dt + lambda * E c(x, G(x))``, whose
  gradient is ``w_t (s_fake - s_real) dG/dtheta + lambda * grad c`` (Eq. 11 plus the cost);
* fake score ``phi``:   denoising score matching on the generator's detached outputs.

Both generator terms are means over elements, so ``lambda`` keeps its meaning across
dimensions and resolutions. ``lambda = 0`` is plain DMD applied to translation.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import torch
from torch import nn

from rdmd.costs import Cost, squared_l2
from rdmd.edm import EDMDenoiser, EDMLoss, LogUniformSigma, _bcast


class OneStepGenerator(nn.Module):
    """``G(x) = D_theta(x; sigma_g)``: a denoiser frozen at one noise level.

    Initialised from the teacher, it already maps inputs towards the target at step 0;
    ``sigma_g`` sets how much of the input survives (Appendix B ablates it).
    """

    def __init__(self, denoiser: EDMDenoiser, sigma_g: float = 1.0) -> None:
        super().__init__()
        self.denoiser = denoiser
        self.sigma_g = float(sigma_g)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.denoiser(x, self.sigma_g)


@dataclass
class StepStats:
    """What one iteration measured, for the log and the progress bar."""

    loss_dm: float
    loss_cost: float
    loss_gen: float
    loss_fake: float

    def as_dict(self) -> dict[str, float]:
        return dict(self.__dict__)


class NonFiniteLossError(RuntimeError):
    """Raised when a loss turns NaN/inf, so the run stops before a checkpoint is poisoned."""


class RDMD:
    """The method: a frozen teacher ``D_real``, a generator ``G_theta``, a fake score ``D_phi``.

    ``normalize=True`` divides the score difference by DMD's per-sample
    ``mean |y - D_real(y_sigma)|``; ``False`` leaves the plain Eq. 11 weight (used by the
    gradient test, where the weighted KL integral is known in closed form).
    """

    def __init__(self, teacher: EDMDenoiser, generator: OneStepGenerator, fake: EDMDenoiser,
                 lam: float, cost: Cost = squared_l2,
                 dm_sigma: LogUniformSigma | None = None, fake_loss: EDMLoss | None = None,
                 normalize: bool = True, share_sigma: bool = False) -> None:
        if lam < 0:
            raise ValueError(f"lambda must be >= 0, got {lam}")
        self.teacher = teacher.eval().requires_grad_(False)
        self.generator = generator
        self.fake = fake
        self.lam = float(lam)
        self.cost = cost
        self.dm_sigma = dm_sigma or LogUniformSigma()
        self.fake_loss_fn = fake_loss or EDMLoss()
        self.normalize = normalize
        #: train the fake score on the DM term's own noise levels (FastGen's shared draw)
        self.share_sigma = share_sigma

    @classmethod
    def from_teacher(cls, teacher: EDMDenoiser, lam: float, sigma_g: float = 1.0,
                     **kwargs: object) -> RDMD:
        """Generator and fake score both start as copies of the teacher (paper §5)."""
        generator = OneStepGenerator(copy.deepcopy(teacher).requires_grad_(True), sigma_g)
        fake = copy.deepcopy(teacher).requires_grad_(True).train()
        return cls(teacher, generator, fake, lam, **kwargs)  # type: ignore[arg-type]

    @torch.no_grad()
    def score_difference(self, y: torch.Tensor, sigma: torch.Tensor,
                         eps: torch.Tensor) -> torch.Tensor:
        """``g = (D_phi - D_real)(y + sigma*eps) / w``, proportional to ``s_fake - s_real``."""
        y_s = torch.addcmul(y, _bcast(sigma, y), eps)
        d_real = self.teacher(y_s, sigma).float()
        g = self.fake(y_s, sigma).float().sub_(d_real)  # fresh outputs: in place is safe
        if self.normalize:
            w = d_real.sub_(y.float()).abs_().reshape(y.shape[0], -1).mean(dim=1)
            g.div_(_bcast(w.clamp_min_(1e-8), g))
        return g

    def generator_loss(self, x: torch.Tensor, generator: torch.Generator | None = None,
                       sigma: torch.Tensor | None = None, eps: torch.Tensor | None = None,
                       ) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
        """Eq. 15, first line: distribution matching plus ``lambda`` times the transport cost.

        The DM term is ``0.5*mean((y - stopgrad(y - g))^2)``: its gradient in ``y`` is ``g``
        per element, i.e. Eq. 11, without differentiating through either score network.
        Returns the loss, the (attached) outputs ``y = G(x)`` and the two terms (detached
        0-d tensors; read them with ``.item()`` only when needed, each read is a sync).
        """
        y = self.generator(x)
        if sigma is None:
            sigma = self.dm_sigma(x.shape[0], generator).to(x.device)
        if eps is None:
            eps = torch.randn(y.shape, generator=generator).to(device=y.device, dtype=y.dtype)
        g = self.score_difference(y.detach(), sigma, eps)
        yf = y.float()
        loss_dm = 0.5 * ((yf - (yf - g).detach()) ** 2).mean()
        loss_cost = self.cost(x.float(), yf).mean()
        loss = loss_dm + self.lam * loss_cost if self.lam else loss_dm
        return loss, y, {"loss_dm": loss_dm.detach(), "loss_cost": loss_cost.detach()}

    def fake_loss(self, y: torch.Tensor, generator: torch.Generator | None = None
                  ) -> torch.Tensor:
        """Eq. 15, second line: DSM of ``D_phi`` on the generator's detached outputs."""
        return self.fake_loss_fn(self.fake, y.detach(), generator=generator)

    def train_step(self, x: torch.Tensor, opt_generator: torch.optim.Optimizer,
                   opt_fake: torch.optim.Optimizer, fake_steps: int = 1,
                   generator: torch.Generator | None = None,
                   grad_clip: float | None = None) -> StepStats:
        """One generator update, then ``fake_steps`` fake-score updates on the same outputs.

        The losses are read back once per update (one ``.tolist()``): that read is also the
        finiteness check, so a NaN stops the run before the optimizer step applies it.
        """
        sigma = self.dm_sigma(x.shape[0], generator).to(x.device)
        loss, y, parts = self.generator_loss(x, generator, sigma=sigma)
        vals = torch.stack([loss.detach(), parts["loss_dm"], parts["loss_cost"]]).tolist()
        _check_finite(vals[0], "generator")
        opt_generator.zero_grad(set_to_none=True)
        loss.backward()
        if grad_clip:
            nn.utils.clip_grad_norm_(self.generator.parameters(), grad_clip)
        opt_generator.step()

        y = y.detach()
        fake_val = 0.0
        for _ in range(fake_steps):
            lf = (self.fake_loss_fn(self.fake, y, generator=generator, sigma=sigma)
                  if self.share_sigma else self.fake_loss(y, generator))
            fake_val = lf.item()
            _check_finite(fake_val, "fake score")
            opt_fake.zero_grad(set_to_none=True)
            lf.backward()
            if grad_clip:
                nn.utils.clip_grad_norm_(self.fake.parameters(), grad_clip)
            opt_fake.step()
        return StepStats(vals[1], vals[2], vals[0], fake_val)


def _check_finite(value: float, what: str) -> None:
    if not math.isfinite(value):
        raise NonFiniteLossError(f"{what} loss is {value}")

"""RDMD, the paper's Eq. 15, in one place.

Coordinate descent on two objectives:

* generator ``theta``:  ``int w_t KL(p_t^theta || p_t^T) dt + lambda * E c(x, G(x))``, whose
  gradient is ``w_t (s_fake - s_real) dG/dtheta + lambda * grad c`` (Eq. 11 plus the cost);
* fake score ``phi``:   denoising score matching on the generator's detached outputs.

Both generator terms are means over elements, so ``lambda`` keeps its meaning across
dimensions and resolutions. ``lambda = 0`` is plain DMD applied to translation.

Optionally ``lambda`` follows a continuation (``lam_start``): it decays geometrically from
``lam_start`` to ``lam`` over the first ``lam_anneal`` share of the steps, then stays. A large
``lambda`` picks the coupling fast; lowering it slowly keeps the map on the path of the
regularised solutions, where a small ``lambda`` alone selects among the maps that push the
source onto the target only slowly (docs/twod.md, "Lambda continuation").
"""

from __future__ import annotations

import copy
import math
from typing import Any

import torch
from torch import nn

from rdmd.costs import Cost, squared_l2
from rdmd.edm import EDMDenoiser, EDMLoss, LogNormalSigma, LogUniformSigma, _bcast
from rdmd.errors import RdmdError
from rdmd.methods.base import Method
from rdmd.methods.potential import GRADIENT_KINDS, potential_generator


class OneStepGenerator(nn.Module):
    """``G(x) = D_theta(x; sigma_g)``: a denoiser frozen at one noise level.

    Initialised from the teacher, it already maps inputs towards the target at step 0;
    ``sigma_g`` sets how much of the input survives (Appendix B ablates it).
    """

    def __init__(self, denoiser: EDMDenoiser, sigma_g: float = 1.0) -> None:
        super().__init__()
        self.denoiser = denoiser
        self.sigma_g = float(sigma_g)

    def forward(self, x: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        return self.denoiser(x, self.sigma_g, cond)


FAKE_SIGMAS = ("lognormal", "loguniform", "shared")
DM_WEIGHTS = ("sample", "sigma")


def check_continuation(lam: float, lam_start: float | None, lam_anneal: float) -> None:
    """The lambda continuation's ranges (the constructor and the config both check them)."""
    if lam_start is not None and not (lam_start > lam > 0):
        raise RdmdError(f"lam_start must exceed lam, and lam must be > 0, for a geometric "
                        f"continuation (got lam_start {lam_start:g}, lam {lam:g})")
    if not 0 < lam_anneal <= 1:
        raise RdmdError(f"lam_anneal must be in (0, 1], got {lam_anneal:g}")


def generator_extras(cfg: Any) -> dict[str, Any]:
    """The generator's extra inputs a run's config asks for (none by default)."""
    ff = getattr(cfg, "generator_fourier", None)
    return {"fourier_branch": [int(ff[0]), float(ff[1])]} if ff else {}


def fake_sigma_dist(name: str, lo: float, hi: float) -> LogNormalSigma | LogUniformSigma:
    """The fake score's training noise levels: EDM's log-normal, or the DM term's log-uniform
    range (``shared`` also reuses the DM term's own draw; see :class:`RDMD`)."""
    if name not in FAKE_SIGMAS:
        raise RdmdError(f"fake_sigma must be one of {', '.join(FAKE_SIGMAS)}, got {name!r}")
    return LogNormalSigma() if name == "lognormal" else LogUniformSigma(lo, hi)


def gaussian_dm_weight(sigma: torch.Tensor, sigma_data: float) -> torch.Tensor:
    """``E|y - D*(y + sigma*eps)|`` per element for ``y ~ N(0, sigma_data^2)`` and its exact
    denoiser ``D*``: ``sqrt(2/pi) * sigma * sigma_data / sqrt(sigma^2 + sigma_data^2)``
    (EDM's ``c_out`` times the mean absolute value of a unit normal)."""
    return (2 / math.pi) ** 0.5 * sigma * sigma_data / (sigma ** 2 + sigma_data ** 2).sqrt()


class RDMD(Method):
    """The method: a frozen teacher ``D_real``, a generator ``G_theta``, a fake score ``D_phi``.

    ``normalize=True`` divides the score difference by DMD's per-sample
    ``mean |y - D_real(y_sigma)|`` (``dm_weight="sample"``) or by that mean's value for
    Gaussian data of the teacher's ``sigma_data``, a function of sigma alone
    (``dm_weight="sigma"``: the DM field stays the gradient of a sigma-weighted KL, so the
    directions the DM term cannot see, e.g. rotations of a Gaussian source, are left to the
    cost term alone); ``False`` leaves the plain Eq. 11 weight (used by the gradient test,
    where the weighted KL integral is known in closed form).
    ``share_sigma=True`` trains the fake score's first update of an iteration at the DM term's
    own noise levels (FastGen's shared draw).
    """

    name = "rdmd"
    ema_of = "generator"

    def __init__(self, teacher: EDMDenoiser, generator: OneStepGenerator, fake: EDMDenoiser,
                 lam: float, cost: Cost = squared_l2,
                 dm_sigma: LogUniformSigma | None = None, fake_loss: EDMLoss | None = None,
                 normalize: bool = True, dm_weight: str = "sample", share_sigma: bool = False,
                 fake_steps: int = 1, lam_start: float | None = None,
                 lam_anneal: float = 0.5) -> None:
        super().__init__()
        if lam < 0:
            raise ValueError(f"lambda must be >= 0, got {lam}")
        check_continuation(lam, lam_start, lam_anneal)
        self.teacher = teacher.eval().requires_grad_(False)
        #: the real score D_real: the teacher, or the teacher under autoguidance
        self.real: nn.Module = self.teacher
        #: how the teacher's samples are drawn (the OT start's atoms): denoiser, s_churn
        self.sampled: nn.Module = self.teacher
        self.sample_churn: Any = None  # a rdmd.sampler.Churn, None: deterministic
        self.declare("generator", generator)
        self.declare("fake", fake)
        self.lam = float(lam)
        self.lam_start = None if lam_start is None else float(lam_start)
        self.lam_anneal = float(lam_anneal)
        #: the lambda of the current step (``lam`` unless a continuation is under way)
        self.lam_now = self.lam
        self.cost = cost
        self.dm_sigma = dm_sigma or LogUniformSigma()
        self.fake_loss_fn = fake_loss or EDMLoss()
        self.normalize = normalize
        if dm_weight not in DM_WEIGHTS:
            raise ValueError(f"dm_weight must be one of {DM_WEIGHTS}, got {dm_weight!r}")
        self.dm_weight = dm_weight
        self.share_sigma = share_sigma
        self.fake_steps = int(fake_steps)
        self.generator_backbone: dict[str, Any] | None = None  # set with extra inputs
        #: (steps, atoms, lr, batch, seed) of the OT start; steps 0: none (configure_training)
        self.ot_start: tuple[int, int, float, int, int] = (0, 0, 0.0, 0, 0)

    @property
    def generator(self) -> nn.Module:
        return self.nets["generator"]

    @property
    def fake(self) -> nn.Module:
        return self.nets["fake"]

    @classmethod
    def from_teacher(cls, teacher: EDMDenoiser, lam: float, sigma_g: float = 1.0,
                     generator_extras: dict | None = None, generator: str = "denoiser",
                     generator_widths: list[int] | None = None,
                     generator_pieces: int | None = None, **kwargs: Any) -> RDMD:
        """Generator and fake score both start as copies of the teacher (paper §5).
        ``generator_extras`` (e.g. ``{"fourier_branch": [n, scale]}``) gives the generator
        zero-initialised extra inputs (:func:`rdmd.methods.copies.extended_copy`).
        ``generator="potential"`` makes the generator the gradient of a scalar potential
        instead (:mod:`rdmd.methods.potential`; vectors only, starts as the identity), with
        the Fourier features of ``generator_extras`` on its input; ``generator="convex"`` the
        gradient of a convex piecewise-quadratic potential with ``generator_pieces`` pieces."""
        gen: nn.Module
        if generator in GRADIENT_KINDS:
            gen, spec = potential_generator(teacher, generator_extras, generator_widths,
                                            generator, generator_pieces)
        elif generator_extras:
            from rdmd.methods.copies import extended_copy

            gen_den, spec = extended_copy(teacher, **generator_extras)
            gen = OneStepGenerator(gen_den, sigma_g)
        else:
            gen_den, spec = copy.deepcopy(teacher).requires_grad_(True), None
            gen = OneStepGenerator(gen_den, sigma_g)
        fake = copy.deepcopy(teacher).requires_grad_(True).train()
        m = cls(teacher, gen, fake, lam, **kwargs)
        m.generator_backbone = spec
        return m

    @classmethod
    def from_config(cls, teacher: EDMDenoiser, cfg: Any, cost: Cost) -> RDMD:  # type: ignore[override]
        """The method a run's config describes, with its optimisers."""
        m = cls.from_teacher(teacher, cfg.lam, cfg.sigma_g, generator_extras(cfg),
                             cfg.generator, cfg.generator_widths, cfg.generator_pieces,
                             **cls.config_kwargs(cfg, cost), lam_start=cfg.lam_start,
                             lam_anneal=cfg.lam_anneal)
        return m.configure_training(cfg)

    def model_meta(self) -> dict[str, Any]:
        # a generator with extra inputs is not the teacher's network: record its own
        spec = self.generator_backbone
        if spec is None:
            return {}
        if spec.get("name") in GRADIENT_KINDS:  # no noise level: the generator is no denoiser
            return {"backbone": spec, "sigma_g": None}
        return {"backbone": spec}

    @staticmethod
    def config_kwargs(cfg: Any, cost: Cost) -> dict[str, Any]:
        """The constructor's keywords from a run's config (shared with the conditioned
        method, so both read the config the same way)."""
        return dict(cost=cost, dm_sigma=LogUniformSigma(cfg.dm_sigma_min, cfg.dm_sigma_max),
                    fake_loss=EDMLoss(fake_sigma_dist(cfg.fake_sigma, cfg.dm_sigma_min,
                                                      cfg.dm_sigma_max)),
                    normalize=cfg.normalize, dm_weight=cfg.dm_weight,
                    share_sigma=cfg.fake_sigma == "shared",
                    fake_steps=cfg.fake_steps)

    def lam_at(self, step: int, total: int) -> float:
        """``lambda`` at 0-based ``step`` of ``total``: geometric from ``lam_start`` to
        ``lam`` over ``lam_anneal * total`` steps, then ``lam``."""
        if self.lam_start is None:
            return self.lam
        n = max(1, round(self.lam_anneal * total))
        t = min(step / n, 1.0)
        return self.lam_start * (self.lam / self.lam_start) ** t

    def begin_step(self, step: int, total: int) -> None:
        self.lam_now = self.lam_at(step, total)

    def configure_training(self, cfg: Any) -> RDMD:
        """Optimisers, clipping and the generator's start from a run's config."""
        self.with_optimizers(cfg.lr_generator, cfg.lr_fake, (cfg.beta1, cfg.beta2))
        self.grad_clip = cfg.grad_clip
        self.ot_start = (int(cfg.ot_start or 0), int(cfg.ot_start_atoms),
                         float(cfg.ot_start_lr), int(cfg.ot_start_batch), int(cfg.seed))
        return self

    def generator_call(self, net: nn.Module, x: torch.Tensor) -> torch.Tensor:
        """The generator on inputs ``x`` outside a training step (the OT start); a
        conditioned method passes its conditioning here."""
        return net(x)

    def start(self, draw: Any, progress: bool = False) -> dict[str, float]:
        """``ot_start`` steps > 0: fit the generator to the semi-discrete OT map onto the
        teacher's samples before the first step (:mod:`rdmd.methods.ot_start`)."""
        steps, atoms, lr, batch, seed = self.ot_start
        if not steps:
            return {}
        from rdmd.methods.ot_start import fit_to_ot_map

        return fit_to_ot_map(self.modules["generator"], self.sampled, draw, steps, atoms,
                             lr, batch, seed=seed, call=self.generator_call,
                             progress=progress, churn=self.sample_churn)

    def use_teacher(self, sampled: nn.Module, churn: Any = None,
                    real: nn.Module | None = None) -> None:
        self.sampled = sampled.eval().requires_grad_(False)
        self.sample_churn = churn
        self.real = (real if real is not None else self.teacher).eval().requires_grad_(False)

    def with_optimizers(self, lr_generator: float, lr_fake: float,
                        betas: tuple[float, float] = (0.9, 0.999)) -> RDMD:
        self.declare("generator", self.modules["generator"], lr_generator, betas)
        self.declare("fake", self.modules["fake"], lr_fake, betas)
        return self

    @torch.no_grad()
    def score_difference(self, y: torch.Tensor, sigma: torch.Tensor,
                         eps: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        """``g = (D_phi - D_real)(y + sigma*eps) / w``, proportional to ``s_fake - s_real``.
        ``cond`` (a conditioned method's per-sample input) goes to the fake score only: the
        teacher models the target, whatever the generator is conditioned on."""
        y_s = torch.addcmul(y, _bcast(sigma, y), eps)
        d_real = self.real(y_s, sigma).float()
        d_fake = self.fake(y_s, sigma) if cond is None else self.fake(y_s, sigma, cond)
        g = d_fake.float().sub_(d_real)  # fresh outputs: in place is safe
        if self.normalize:
            if self.dm_weight == "sigma":
                w = gaussian_dm_weight(sigma.float(), self.teacher.sigma_data)
            else:
                w = d_real.sub_(y.float()).abs_().reshape(y.shape[0], -1).mean(dim=1)
            g.div_(_bcast(w.clamp_min_(1e-8), g))
        return g

    def generator_loss(self, x: torch.Tensor, generator: torch.Generator | None = None,
                       sigma: torch.Tensor | None = None, eps: torch.Tensor | None = None,
                       cond: torch.Tensor | None = None, lam: torch.Tensor | None = None,
                       ) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
        """Eq. 15, first line: distribution matching plus ``lambda`` times the transport cost.

        The DM term is ``0.5*mean((y - stopgrad(y - g))^2)``: its gradient in ``y`` is ``g``
        per element, i.e. Eq. 11, without differentiating through either score network.
        Returns the loss, the (attached) outputs ``y = G(x)`` and the two terms (detached
        0-d tensors; read them with ``.item()`` only when needed, each read is a sync).
        A conditioned method passes ``cond`` (to the generator and the fake score) and one
        ``lam`` per sample, which weights each sample's cost; ``loss_cost`` is then the
        weighted mean ``mean(lam_i c_i)``.
        """
        y = self.generator(x) if cond is None else self.generator(x, cond)
        if sigma is None:
            sigma = self.dm_sigma(x.shape[0], generator).to(x.device)
        if eps is None:
            eps = torch.randn(y.shape, generator=generator).to(device=y.device, dtype=y.dtype)
        g = self.score_difference(y.detach(), sigma, eps, cond)
        yf = y.float()
        loss_dm = 0.5 * ((yf - (yf - g).detach()) ** 2).mean()
        if lam is not None:
            loss_cost = (lam.to(yf) * self.cost(x.float(), yf)).mean()
            loss = loss_dm + loss_cost
        else:
            loss_cost = self.cost(x.float(), yf).mean()
            loss = loss_dm + self.lam_now * loss_cost if self.lam_now else loss_dm
        return loss, y, {"loss_dm": loss_dm.detach(), "loss_cost": loss_cost.detach()}

    def fake_loss(self, y: torch.Tensor, generator: torch.Generator | None = None,
                  sigma: torch.Tensor | None = None, cond: torch.Tensor | None = None
                  ) -> torch.Tensor:
        """Eq. 15, second line: DSM of ``D_phi`` on the generator's detached outputs."""
        return self.fake_loss_fn(self.fake, y.detach(), generator=generator, sigma=sigma,
                                 cond=cond)

    def conditioning(self, batch: torch.Tensor, rng: torch.Generator
                     ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """Per-sample ``(cond, lam)`` of one step: none for fixed-``lambda`` RDMD (it draws
        nothing, so its runs are unchanged); a conditioned subclass draws them here."""
        return None, None

    def train_step(self, batch: torch.Tensor, rng: torch.Generator) -> dict[str, float]:
        """One generator update, then ``fake_steps`` fake-score updates on the same outputs.

        The losses are read back once per update (one ``.tolist()``): that read is also the
        finiteness check, agreed over all ranks, so a NaN stops the run before any optimiser
        applies it.
        """
        cond, lam = self.conditioning(batch, rng)
        sigma = self.dm_sigma(batch.shape[0], rng).to(batch.device)
        loss, y, parts = self.generator_loss(batch, rng, sigma=sigma, cond=cond, lam=lam)
        vals = torch.stack([loss.detach(), parts["loss_dm"], parts["loss_cost"]]).tolist()
        self.check_finite("generator", vals[0])
        self.update("generator", loss)
        y = y.detach()
        fake_val = 0.0
        for k in range(self.fake_steps):
            lf = self.fake_loss(y, rng, sigma if self.share_sigma and k == 0 else None, cond)
            fake_val = lf.item()
            self.check_finite("fake score", fake_val)
            self.update("fake", lf)
        stats = {"loss_dm": vals[1], "loss_cost": vals[2], "loss_gen": vals[0],
                 "loss_fake": fake_val}
        if self.lam_start is not None:
            stats["lam"] = self.lam_now
        return stats

"""Lambda-conditioned RDMD: one generator for every ``lambda`` (the paper's §6 wish; SPEC §8).

Loss-conditional training (Dosovitskiy & Djolonga 2020, "You Only Train Once") applied to
Eq. 15: every sample of a batch draws its own ``lambda``, the generator
``G(x, lambda) = D_theta(x; sigma_g, lambda)`` and the fake score ``D_phi(y; sigma, lambda)``
both see it through their backbones' conditioning input, and each sample's transport cost is
weighted by its own ``lambda``. The fake score must be conditioned too: the law of the
generator's outputs depends on ``lambda``, and the fake score models that law. The teacher
models the target and is unchanged.

What the networks see is a code of ``log(lambda + shift)`` scaled to [-1, 1] over the trained
range (:class:`LamCode`). The conditioning embedding's last layer starts at zero, so at step 0
the generator is the teacher at ``sigma_g`` for every ``lambda``.

``lambda`` distribution (:class:`LamCode` plus ``zero_prob``): ``log(lambda + shift)`` uniform
on ``[log(lo + shift), log(hi + shift)]``. With ``lo > 0`` the shift is 0: plain log-uniform
on ``[lo, hi]``. ``lambda = 0`` is included by ``lo = 0`` (the range ``0:hi``); then the shift
defaults to ``hi / 10`` (small lambdas are dense but 0 is reachable) and a share ``zero_prob``
(default 0.1) of the samples take ``lambda = lo`` exactly (plain DMD).
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from rdmd.costs import Cost
from rdmd.edm import EDMDenoiser
from rdmd.errors import RdmdError
from rdmd.methods.copies import conditioned_copy
from rdmd.methods.rdmd import RDMD, OneStepGenerator, generator_extras

#: default share of exact ``lambda = lo`` draws when the range starts at 0
ZERO_PROB_DEFAULT = 0.1
#: default shift of ``log(lambda + shift)`` when the range starts at 0, as a share of ``hi``
SHIFT_OF_HI = 0.1


@dataclass(frozen=True)
class LamCode:
    """The trained range ``[lo, hi]`` and the map ``lambda -> code in [-1, 1]`` the networks
    see: ``2 (log(lambda+shift) - log(lo+shift)) / (log(hi+shift) - log(lo+shift)) - 1``.
    Saved in ``model.json`` (``lam_range``, ``lam_shift``) so a model rebuilds its own map."""

    lo: float
    hi: float
    shift: float = 0.0

    def __post_init__(self) -> None:
        if not (math.isfinite(self.lo) and math.isfinite(self.hi)) or not 0 <= self.lo < self.hi:
            raise RdmdError(f"lambda range must satisfy 0 <= min < max, got "
                            f"{self.lo:g}:{self.hi:g}")
        if self.shift < 0 or self.lo + self.shift <= 0:
            raise RdmdError(f"lam_shift must be >= 0, and > 0 when the lambda range starts at 0 "
                            f"(got {self.shift:g})")

    @classmethod
    def of_range(cls, lo: float, hi: float, shift: float | None = None) -> LamCode:
        """The code of a range, with the documented default shift."""
        if shift is None:
            shift = SHIFT_OF_HI * hi if lo == 0 else 0.0
        return cls(float(lo), float(hi), float(shift))

    @classmethod
    def from_meta(cls, meta: dict[str, Any]) -> LamCode:
        lo, hi = meta["lam_range"]
        return cls(float(lo), float(hi), float(meta.get("lam_shift", 0.0)))

    def to_meta(self) -> dict[str, Any]:
        return {"lam_range": [self.lo, self.hi], "lam_shift": self.shift}

    @property
    def log_range(self) -> tuple[float, float]:
        return math.log(self.lo + self.shift), math.log(self.hi + self.shift)

    def code(self, lam: torch.Tensor) -> torch.Tensor:
        """``(N,)`` lambdas -> ``(N, 1)`` codes (the backbones' ``cond``)."""
        a, b = self.log_range
        lam = lam.double()
        return (2 * (torch.log(lam + self.shift) - a) / (b - a) - 1).float()[:, None]

    def sample(self, n: int, rng: torch.Generator | None, zero_prob: float = 0.0
               ) -> torch.Tensor:
        """``n`` lambdas from the training distribution (module docstring). Drawn as
        per-sample ``rand(n)`` from the run generator, so torchrun ranks take their slice."""
        a, b = self.log_range
        u = torch.rand(n, generator=rng, dtype=torch.float64)
        lam = (torch.exp(a + u * (b - a)) - self.shift).clamp_(self.lo, self.hi)
        if zero_prob > 0:
            at_lo = torch.rand(n, generator=rng, dtype=torch.float64) < zero_prob
            lam = torch.where(at_lo, torch.full_like(lam, self.lo), lam)
        return lam.float()

    def check(self, lam: float | None) -> float:
        """A translation's ``lambda``: required, and inside the trained range."""
        if lam is None:
            raise RdmdError(f"this generator is lambda-conditioned: pass lam (--lam) in its "
                            f"trained range {self.lo:g}:{self.hi:g}")
        lam = float(lam)
        if not self.lo <= lam <= self.hi:
            raise RdmdError(f"lam {lam:g} is outside this generator's trained range "
                            f"{self.lo:g}:{self.hi:g}")
        return lam

    def report_lams(self) -> list[float]:
        """The lambdas a run reports at the end: both ends and the middle of the code."""
        a, b = self.log_range
        mid = float(f"{math.exp(0.5 * (a + b)) - self.shift:.3g}")
        return [self.lo, mid, self.hi]


class AtLambda(nn.Module):
    """A conditioned generator held at one ``lambda``: ``x -> G(x, lambda)``, callable where a
    fixed generator is (evaluation, translation). The code is one row that the backbones
    broadcast, so holding ``lambda`` costs nothing per sample."""

    def __init__(self, generator: nn.Module, code: LamCode, lam: float) -> None:
        super().__init__()
        self.generator = generator
        self.lam = code.check(lam)
        self.register_buffer("cond", code.code(torch.tensor([self.lam])), persistent=False)

    @property
    def sigma_g(self) -> float:
        return float(self.generator.sigma_g)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.generator(x, self.cond.to(x.device))


class RDMDLam(RDMD):
    """RDMD with ``lambda`` drawn per sample and fed to the generator and the fake score.

    Everything else (the Eq. 15 losses, the normaliser, the fake-score schedule) is
    :class:`RDMD`'s own code: this class only draws ``(cond, lambda)`` per step
    (:meth:`conditioning`) and builds the conditioned networks.
    """

    name = "rdmd_lam"
    ema_of = "generator"

    def __init__(self, teacher: EDMDenoiser, generator: nn.Module, fake: nn.Module,
                 code: LamCode, zero_prob: float = 0.0, backbone: dict | None = None,
                 lr_scale: float = 1.0, **kwargs: Any) -> None:
        super().__init__(teacher, generator, fake, 0.0, **kwargs)
        if not 0 <= zero_prob < 1:
            raise RdmdError(f"lam_zero_prob must be in [0, 1), got {zero_prob:g}")
        if not (math.isfinite(lr_scale) and lr_scale > 0):
            raise RdmdError(f"lam_lr_scale must be > 0, got {lr_scale:g}")
        self.code = code
        self.zero_prob = float(zero_prob)
        #: rate multiplier of the lambda embeddings (``lam_lr_scale``; :meth:`with_optimizers`)
        self.lr_scale = float(lr_scale)
        self.generator_backbone = backbone  # the conditioned generator's own description

    @classmethod
    def from_teacher_lam(cls, teacher: EDMDenoiser, code: LamCode, sigma_g: float = 1.0,
                         zero_prob: float = 0.0, generator_extras: dict | None = None,
                         **kwargs: Any) -> RDMDLam:
        """Generator and fake score: conditioned copies of the teacher (the teacher at every
        ``lambda`` at step 0); ``generator_extras`` as :meth:`RDMD.from_teacher`'s."""
        gen_den, spec = conditioned_copy(teacher, **(generator_extras or {}))
        fake, _ = conditioned_copy(teacher)
        return cls(teacher, OneStepGenerator(gen_den, sigma_g), fake, code, zero_prob,
                   backbone=spec, **kwargs)

    @classmethod
    def from_config(cls, teacher: EDMDenoiser, cfg: Any, cost: Cost) -> RDMDLam:  # type: ignore[override]
        code, zero_prob = lam_settings(cfg)
        m = cls.from_teacher_lam(teacher, code, cfg.sigma_g, zero_prob,
                                 generator_extras(cfg), lr_scale=cfg.lam_lr_scale,
                                 **cls.config_kwargs(cfg, cost))
        m.configure_training(cfg)
        return m

    def with_optimizers(self, lr_generator: float, lr_fake: float,
                        betas: tuple[float, float] = (0.9, 0.999)) -> RDMDLam:
        """As RDMD's, with the lambda embeddings (zero at step 0) at ``lr_scale`` times each
        network's rate: under the pixel OT start every lambda starts at one map, and at the
        networks' own rate the embedding had not moved after 200 iterations (docs/lambda.md)."""
        for name, lr in (("generator", lr_generator), ("fake", lr_fake)):
            module = self.modules[name]
            self.declare(name, module, lr, betas, params=embedding_groups(module, lr,
                                                                          self.lr_scale))
        return self

    def conditioning(self, batch: torch.Tensor, rng: torch.Generator
                     ) -> tuple[torch.Tensor, torch.Tensor]:
        lam = self.code.sample(batch.shape[0], rng, self.zero_prob)
        return self.code.code(lam).to(batch.device), lam.to(batch.device)

    def generator_call(self, net: nn.Module, x: torch.Tensor) -> torch.Tensor:
        """At the range's smallest lambda (the OT start fits the map lambda -> 0 tends to;
        larger lambdas start there too and move towards their inputs as RDMD trains)."""
        lam = torch.full((x.shape[0],), self.code.lo)
        return net(x, self.code.code(lam).to(x.device))

    def model_meta(self) -> dict[str, Any]:
        # "lam": None drops the fixed run's key: a conditioned model has a range instead
        return {**super().model_meta(), "lam": None, **self.code.to_meta(),
                "lam_zero_prob": self.zero_prob}


def embedding_groups(module: nn.Module, lr: float, scale: float) -> list[dict[str, Any]]:
    """Adam's groups for a conditioned network: its lambda embedding (``c_enc.``) at
    ``scale * lr``, the rest at ``lr``; one group when ``scale`` is 1 (as before the key)."""
    if scale == 1.0:
        return [{"params": list(module.parameters()), "lr": lr}]
    rest: list[nn.Parameter] = []
    emb: list[nn.Parameter] = []
    for n, p in module.named_parameters():  # conditioned copies always have a c_enc
        (emb if ".c_enc." in f".{n}" else rest).append(p)
    return [{"params": rest, "lr": lr}, {"params": emb, "lr": lr * scale}]


def lam_settings(cfg: Any) -> tuple[LamCode, float]:
    """The code and zero share a run's config describes (defaults resolved here, once)."""
    if not cfg.lam_range:
        raise RdmdError("method rdmd_lam needs lam_range (--lam-range MIN:MAX)")
    lo, hi = cfg.lam_range
    code = LamCode.of_range(lo, hi, cfg.lam_shift)
    zero_prob = cfg.lam_zero_prob
    if zero_prob is None:
        zero_prob = ZERO_PROB_DEFAULT if lo == 0 else 0.0
    return code, float(zero_prob)


#: the log column of the knob's turn: how far the validation L2 falls over the range
KNOB_KEY = "val_l2@fall"


def knob_turns(res: dict[str, float], least: float) -> bool:
    """Whether evaluation ``res`` may be chosen under ``select_knob = least``: its validation
    L2 at the top of the range is at least ``least`` (a share) below that at the bottom.
    Scored by FD alone, the weights of a generator that gives one map at every lambda can win
    (a conditioned image run under the pixel OT start does so for its first 100 iterations;
    docs/lambda.md). Runs without a validation L2 (vectors) are not held to it."""
    fall = res.get(KNOB_KEY)
    return least <= 0 or fall is None or fall >= least


def gmean_key(key: str) -> str:
    """The log column of ``key``'s geometric mean over the report lambdas."""
    return f"{key}@gmean"


def eval_at_lams(net: nn.Module, code: LamCode, evaluate: Any,
                 gmean: str | None = None) -> dict[str, float]:
    """Training-time metrics at the report lambdas, keyed ``metric@lambda`` (the log's
    columns), and the geometric mean of ``gmean`` over them (:func:`gmean_key`).

    One network serves every lambda, so a choice of its weights needs one score over all of
    them; the geometric mean weighs each lambda by its relative change, where an arithmetic
    mean would follow the large-lambda end alone (its distances are 10-30x the small end's
    on images). A missing or non-positive value makes it NaN, which is never chosen."""
    out: dict[str, float] = {}
    for lam in code.report_lams():
        for k, v in evaluate(AtLambda(net, code, lam)).items():
            out[f"{k}@{lam:g}"] = v
    if gmean is not None:
        vals = [out.get(f"{gmean}@{lam:g}", math.nan) for lam in code.report_lams()]
        out[gmean_key(gmean)] = (statistics.geometric_mean(vals) if all(v > 0 for v in vals)
                                 else math.nan)
        lo, hi = (out.get(f"val_l2@{lam:g}") for lam in (code.lo, code.hi))
        if lo and hi is not None:
            out[KNOB_KEY] = 1.0 - hi / lo
    return out


def write_lam_report(out_dir: Path, net: nn.Module, code: LamCode, norm: Any, src: Any,
                     tgt: Any, cfg: Any, extra: dict[str, Any] | None = None
                     ) -> dict[str, Any]:
    """``metrics.json`` of a conditioned run: its range and the held-out metrics at each
    report lambda (the fixed run's protocol at each), ``extra`` beside them; 2-D runs get
    one plot per lambda."""
    from rdmd.distributed import gathered, is_main
    from rdmd.evaluation import (
        apply_generator,
        evaluate_translation,
        images_as_written,
        save_pair_grid,
    )

    by_lam: dict[str, Any] = {}
    for lam in code.report_lams():
        g = gathered(AtLambda(net, code, lam))
        res = evaluate_translation(g, norm, src, tgt, cfg, floor=True)
        by_lam[f"{lam:g}"] = res
        if src.kind == "image":
            x = src.test[:32]
            gx = images_as_written(g, x)
            if is_main():
                save_pair_grid(out_dir / "plots" / f"translation_lam{lam:g}.png", x, gx)
        elif src.dim == 2:
            from rdmd.plots import plot_translation

            n = res["n_eval"]
            x = src.test[:n]
            gx = apply_generator(g, norm, x)
            if is_main():
                plot_translation(out_dir / "plots" / f"translation_lam{lam:g}.png",
                                 x.numpy(), gx.numpy(), tgt.test[:n].numpy(),
                                 title=f"lambda = {lam:g} (conditioned)")
    report = {**code.to_meta(), "by_lam": by_lam, **(extra or {})}
    if is_main():
        from rdmd.checkpoint import atomic_write_json

        atomic_write_json(out_dir / "metrics.json", report)
    return report

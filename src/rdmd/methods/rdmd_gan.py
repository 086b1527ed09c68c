"""DMD2's GAN term (Yin et al. 2024) on top of RDMD, fixed or lambda-conditioned (docs/gan.md).

A small discriminator head reads the bottleneck features of a diffusion network (the frozen
teacher, FastGen's steadier choice, or the fake score, DMD2's) at noised samples: the
generator's outputs ``G(x) + sigma*eps`` against noised real target samples
``y_real + sigma*eps'``. Non-saturating losses:

* generator:      ``+ gan_weight_gen * mean softplus(-D(G(x)_s))``
* discriminator:  ``+ gan_weight_disc * (mean softplus(-D(real_s)) + mean softplus(D(G(x)_s)))``

With ``gan_features = "fake"`` the discriminator loss also trains the fake score's encoder
(joined to its first DSM update of the iteration); with ``"teacher"`` the head trains alone.
Noise levels: the DM term's own per-sample draw (DMD2 reuses its sampled timesteps), for the
generator term and both discriminator inputs. Features are taken by a forward hook that stops
the network at its bottleneck, so the decoder half is never computed.

The GAN term is a mixin (:class:`GANTerm`) over :class:`~rdmd.methods.rdmd.RDMD` and
:class:`~rdmd.methods.rdmd_lam.RDMDLam`; neither is edited. The head is a training-only module
(``disc``, its own Adam at ``lr_fake``): checkpointed and resumed by the loop, never exported.
For the conditioned method the head also reads the lambda code (real samples are paired with
the codes of the iteration's fakes), so it judges each lambda's outputs on their own.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from rdmd.backbones.mlp import MLPBackbone
from rdmd.edm import EDMDenoiser, _bcast
from rdmd.errors import RdmdError
from rdmd.methods.rdmd import RDMD
from rdmd.methods.rdmd_lam import RDMDLam

GAN_FEATURES = ("teacher", "fake")


class _Tapped(Exception):  # noqa: N818 (a control-flow signal, not an error)
    """Raised by the bottleneck hook to stop a forward pass once the features are taken."""


def _inner(backbone: nn.Module) -> nn.Module:
    """The backbone itself, also when a bf16-held teacher wraps it."""
    return getattr(backbone, "inner", backbone)


def bottleneck(backbone: nn.Module) -> nn.Module:
    """The module whose output is the backbone's bottleneck: the UNet's mid block, or the
    MLP's last hidden activation."""
    inner = _inner(backbone)
    if isinstance(inner, MLPBackbone):
        return inner.dec[-2]
    mid = getattr(getattr(inner, "unet", None), "mid_block", None)
    if mid is None:
        raise RdmdError(f"the GAN term needs a backbone with a bottleneck (mlp, unet); this "
                        f"one is {type(inner).__name__}")
    return mid


def bottleneck_features(den: nn.Module, y: torch.Tensor, sigma: torch.Tensor,
                        cond: torch.Tensor | None = None) -> torch.Tensor:
    """``den``'s bottleneck features at ``(y, sigma)``; the forward stops there (the hook
    raises), so the decoder half costs nothing. Gradients flow to ``y`` if it needs them."""
    box: list[torch.Tensor] = []

    def hook(_m: nn.Module, _i: Any, out: torch.Tensor) -> None:
        box.append(out)
        raise _Tapped

    handle = bottleneck(den.backbone).register_forward_hook(hook)
    try:
        den(y, sigma) if cond is None else den(y, sigma, cond)
    except _Tapped:
        pass
    finally:
        handle.remove()
    if not box:
        raise RuntimeError("the bottleneck was not reached in the forward pass")
    return box[0]


def data_shape_of(backbone: nn.Module) -> tuple[int, ...]:
    """The sample shape a backbone takes (from its ``config``)."""
    cfg = getattr(_inner(backbone), "config", {})
    if "dim" in cfg:
        return (int(cfg["dim"]),)
    return (int(cfg["channels"]), int(cfg["size"]), int(cfg["size"]))


class DiscHead(nn.Module):
    """A small discriminator on bottleneck features: for maps ``(N, C, H, W)`` a 3x3 conv and
    a global average pool, then a two-layer MLP to one logit; ``cond_dim`` extra inputs (the
    lambda code) join the MLP's input, so its hidden layer can judge each lambda apart."""

    def __init__(self, channels: int, spatial: bool, cond_dim: int = 0,
                 hidden: int = 64) -> None:
        super().__init__()
        self.cond_dim = cond_dim
        self.conv = (nn.Sequential(nn.Conv2d(channels, channels, 3, padding=1),
                                   nn.LeakyReLU(0.2)) if spatial else None)
        self.mlp = nn.Sequential(nn.Linear(channels + cond_dim, hidden), nn.LeakyReLU(0.2),
                                 nn.Linear(hidden, 1))

    def forward(self, h: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        h = h.float()
        if self.conv is not None:
            h = self.conv(h).mean(dim=(2, 3))
        if self.cond_dim:
            if cond is None:
                raise ValueError("this head is conditioned: pass cond")
            h = torch.cat([h, cond.reshape(h.shape[0], -1).to(h.dtype)], dim=1)
        return self.mlp(h).squeeze(1)


@contextmanager
def frozen(*modules: nn.Module | None) -> Iterator[None]:
    """Parameters that take no gradient inside the block (restored after): the generator's
    GAN term flows through the head (and the fake score) to ``y`` only."""
    params = [p for m in modules if m is not None for p in m.parameters() if p.requires_grad]
    for p in params:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p in params:
            p.requires_grad_(True)


class GANTerm:
    """The GAN term as a mixin: ``class X(GANTerm, RDMD)``. Call :meth:`add_gan` once the
    method is built, and :meth:`attach_target` with the real target batches before training
    (the distill recipe does both)."""

    needs_target: ClassVar[bool] = True
    gan_weight_gen: float = 0.0
    gan_weight_disc: float = 0.0
    gan_features: str = "teacher"
    _target: Iterator[torch.Tensor] | None = None

    @classmethod
    def from_config(cls, teacher: EDMDenoiser, cfg: Any, cost: Any) -> Any:
        m = super().from_config(teacher, cfg, cost)  # type: ignore[misc]
        return m.add_gan(cfg.gan_weight_gen, cfg.gan_weight_disc, cfg.gan_features,
                         cfg.lr_fake, (cfg.beta1, cfg.beta2))

    def add_gan(self, weight_gen: float = 3e-3, weight_disc: float = 1e-2,
                features: str = "teacher", lr: float | None = None,
                betas: tuple[float, float] = (0.9, 0.999), hidden: int = 64) -> Any:
        """Weights, feature network and the head ``disc`` (trained with Adam when ``lr``)."""
        if features not in GAN_FEATURES:
            raise RdmdError(f"gan_features must be one of {', '.join(GAN_FEATURES)}, "
                            f"got {features!r}")
        if weight_gen < 0 or weight_disc < 0:
            raise RdmdError("gan weights must be >= 0")
        self.gan_weight_gen, self.gan_weight_disc = float(weight_gen), float(weight_disc)
        self.gan_features = features
        me: Any = self
        shape = data_shape_of(me.teacher.backbone)
        cond_dim = 1 if isinstance(self, RDMDLam) else 0
        dev = next(me.teacher.parameters()).device
        probe = torch.zeros(1, *shape, device=dev)
        with torch.no_grad():  # one sample through the encoder: the features' shape
            h = bottleneck_features(self.feature_net(), probe, torch.ones(1, device=dev),
                                    self._feature_cond(torch.zeros(1, 1, device=dev)))
        head = DiscHead(h.shape[1], h.ndim == 4, cond_dim, hidden).to(dev)
        me.declare("disc", head, lr, betas)
        return self

    def attach_target(self, batches: Iterator[torch.Tensor]) -> None:
        """Real target batches (in the model's units), drawn from the run generator so a
        resumed run draws the same ones."""
        self._target = batches

    @property
    def gan_on(self) -> bool:
        return self.gan_weight_gen > 0 or self.gan_weight_disc > 0

    def feature_net(self) -> nn.Module:
        """The network whose bottleneck the head reads (bare, never a DDP wrapper)."""
        me: Any = self
        return me.teacher if self.gan_features == "teacher" else me.modules["fake"]

    def _feature_cond(self, cond: torch.Tensor | None) -> torch.Tensor | None:
        """The teacher takes no conditioning; a conditioned fake score takes the code."""
        return cond if self.gan_features == "fake" and isinstance(self, RDMDLam) else None

    def gan_logits(self, y_s: torch.Tensor, sigma: torch.Tensor, cond: torch.Tensor | None,
                   head: nn.Module) -> torch.Tensor:
        """Head logits of noised samples ``y_s`` (one per sample)."""
        h = bottleneck_features(self.feature_net(), y_s, sigma, self._feature_cond(cond))
        return head(h, cond) if cond is not None else head(h)

    def disc_loss(self, real_s: torch.Tensor, fake_s: torch.Tensor, sigma: torch.Tensor,
                  cond: torch.Tensor | None) -> torch.Tensor:
        """Non-saturating discriminator loss (unweighted), real and fake in one forward (one
        DDP forward per backward)."""
        me: Any = self
        s2 = torch.cat([sigma, sigma])
        c2 = None if cond is None else torch.cat([cond, cond])
        both = torch.cat([real_s, fake_s])
        if self.gan_features == "teacher":
            with torch.no_grad():
                h = bottleneck_features(me.teacher, both, s2)
        else:
            h = bottleneck_features(me.modules["fake"], both, s2, self._feature_cond(c2))
        head = me.nets["disc"]
        logits = (head(h, c2) if c2 is not None else head(h)).float()
        lr_, lf_ = logits.chunk(2)
        return F.softplus(-lr_).mean() + F.softplus(lf_).mean()

    def update_joint(self, names: tuple[str, ...], loss: torch.Tensor) -> None:
        """One backward, one optimiser step for each module in ``names`` (the fake score and
        the head share the discriminator loss with ``gan_features = "fake"``)."""
        me: Any = self
        for n in names:
            me.optimizers[n].zero_grad(set_to_none=True)
        loss.backward()
        for n in names:
            if me.grad_clip:
                nn.utils.clip_grad_norm_(me.modules[n].parameters(), me.grad_clip)
            me.optimizers[n].step()

    def train_step(self, batch: torch.Tensor, rng: torch.Generator) -> dict[str, float]:
        """RDMD's step (its draws first, in its order) with the GAN terms added; with both
        weights 0 it is RDMD's step exactly."""
        me: Any = self
        if not self.gan_on:
            return super().train_step(batch, rng)  # type: ignore[misc]
        if self._target is None:
            raise RdmdError(f"method {me.name} needs real target samples (attach_target)")
        cond, lam = me.conditioning(batch, rng)
        sigma = me.dm_sigma(batch.shape[0], rng).to(batch.device)
        loss, y, parts = me.generator_loss(batch, rng, sigma=sigma, cond=cond, lam=lam)
        real = next(self._target)
        if real.shape[0] != y.shape[0]:
            raise RuntimeError(f"target batch of {real.shape[0]}, generator batch of "
                               f"{y.shape[0]}")
        eps_f = torch.randn(y.shape, generator=rng).to(device=y.device, dtype=y.dtype)
        eps_r = torch.randn(real.shape, generator=rng).to(device=real.device, dtype=real.dtype)
        s = _bcast(sigma, y)
        gan_g = torch.zeros((), device=y.device)
        if self.gan_weight_gen > 0:
            fake_net = me.modules["fake"] if self.gan_features == "fake" else None
            with frozen(me.modules["disc"], fake_net):
                logit = self.gan_logits(y + s * eps_f, sigma, cond, me.modules["disc"])
            gan_g = F.softplus(-logit.float()).mean()
            loss = loss + self.gan_weight_gen * gan_g
        vals = torch.stack([loss.detach(), parts["loss_dm"], parts["loss_cost"],
                            gan_g.detach()]).tolist()
        me.check_finite("generator", vals[0])
        me.update("generator", loss)
        y = y.detach()
        real_s, fake_s = real + _bcast(sigma, real) * eps_r, y + s * eps_f
        disc_val = 0.0
        if self.gan_weight_disc > 0 and self.gan_features == "teacher":
            ld = self.disc_loss(real_s, fake_s, sigma, cond)
            disc_val = ld.item()
            me.check_finite("discriminator", disc_val)
            me.update("disc", self.gan_weight_disc * ld)
        fake_val = 0.0
        for k in range(me.fake_steps):
            lf = me.fake_loss(y, rng, sigma if me.share_sigma and k == 0 else None, cond)
            if k == 0 and self.gan_weight_disc > 0 and self.gan_features == "fake":
                ld = self.disc_loss(real_s, fake_s, sigma, cond)
                fake_val, disc_val = torch.stack([lf.detach(), ld.detach()]).tolist()
                me.check_finite("fake score + discriminator", fake_val + disc_val)
                self.update_joint(("fake", "disc"), lf + self.gan_weight_disc * ld)
                continue
            fake_val = lf.item()
            me.check_finite("fake score", fake_val)
            me.update("fake", lf)
        return {"loss_dm": vals[1], "loss_cost": vals[2], "loss_gen": vals[0],
                "loss_fake": fake_val, "loss_gan_gen": vals[3], "loss_disc": disc_val}


class RDMDGAN(GANTerm, RDMD):
    """RDMD (fixed ``lambda``) plus DMD2's GAN term."""

    name = "rdmd_gan"
    ema_of = "generator"


class RDMDLamGAN(GANTerm, RDMDLam):
    """Lambda-conditioned RDMD plus DMD2's GAN term (the head reads the lambda code)."""

    name = "rdmd_lam_gan"
    ema_of = "generator"

"""DMD2's GAN term (rdmd_gan, rdmd_lam_gan; issue 14): the bottleneck hook, RDMD exactly when
the weights are 0, where the GAN gradients go, the discriminator learns, runs end to end and
resume bit-exact, the conditioned variant starts as the teacher, and the config keys."""

from __future__ import annotations

import copy
import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch

import rdmd
from rdmd import checkpoint as ckpt
from rdmd.backbones import MLPBackbone
from rdmd.backbones.unet import UNetBackbone
from rdmd.cli import main
from rdmd.config import GAN_KEYS, DistillConfig, config_from_saved, resolve_config
from rdmd.edm import EDMDenoiser
from rdmd.errors import RdmdError
from rdmd.methods import METHODS, RDMD, RDMDGAN, OneStepGenerator, RDMDLam, RDMDLamGAN
from rdmd.methods.rdmd_gan import bottleneck, bottleneck_features, frozen
from rdmd.methods.rdmd_lam import AtLambda, LamCode
from rdmd.models import load_model
from rdmd.training.runtime import batches, hold_in_bf16

torch.set_num_threads(1)
TINY_T = {"steps": 3, "batch_size": 32, "n_train": 100, "n_test": 50, "sample_steps": 2,
          "device": "cpu", "progress": False}
TINY = {"batch_size": 32, "n_train": 100, "n_test": 50, "floor_pairs": 1, "device": "cpu",
        "progress": False, "lr_schedule": "constant",  # constant: resumed with more steps
        "ot_start": 8}  # pinned: the 2-D default (4 x steps) differs between a run and its halves


@pytest.fixture(scope="module")
def teacher(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return rdmd.train_teacher("8gaussians", tmp_path_factory.mktemp("t") / "t", **TINY_T)


def _net(kind: str) -> tuple[EDMDenoiser, torch.Tensor]:
    """A small teacher (weights moved off their init) and a batch for it."""
    torch.manual_seed(0)
    if kind == "mlp":
        den, x = EDMDenoiser(MLPBackbone(2), 1.0), torch.randn(32, 2)
    else:
        den, x = EDMDenoiser(UNetBackbone(3, 8, "tiny8"), 0.5), torch.randn(4, 3, 8, 8)
    for p in den.parameters():
        p.data.add_(0.02 * torch.randn_like(p))
    return den, x


def _gan(kind: str, weights: tuple[float, float] = (0.1, 0.1), features: str = "teacher",
         lam: float = 0.1) -> tuple[RDMDGAN, torch.Tensor]:
    den, x = _net(kind)
    m = RDMDGAN.from_teacher(den, lam).with_optimizers(1e-3, 1e-3)
    return m.add_gan(*weights, features, lr=1e-3), x


def _target_batches(x: torch.Tensor, rng: torch.Generator) -> object:
    real = torch.randn(64, *x.shape[1:]) * 0.5 + 1.0  # a "target" unlike the source
    return batches(real, x.shape[0], rng)


# -- the hook -------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["mlp", "unet"])
def test_hook_returns_bottleneck_features(kind: str) -> None:
    """MLP: the last hidden layer (decoder[-1] wide); UNet: the mid block's map (the last
    block's channels at 1/2^(blocks-1) of the side). The decoder after it does not run."""
    den, x = _net(kind)
    n = x.shape[0]
    last = den.backbone.dec[-1] if kind == "mlp" else den.backbone.unet.conv_out
    calls: list[int] = []
    handle = last.register_forward_hook(lambda *a: calls.append(1))
    h = bottleneck_features(den, x, torch.full((n,), 0.5))
    if kind == "mlp":
        assert h.shape == (n, den.backbone.config["decoder"][-1])
    else:
        ch = den.backbone.unet.config.block_out_channels[-1]
        side = 8 // den.backbone.multiple
        assert h.shape == (n, ch, side, side)
    assert not calls  # stopped at the bottleneck
    den(x, torch.full((n,), 0.5))
    handle.remove()
    assert len(calls) == 1 and not bottleneck(den.backbone)._forward_hooks  # hook removed
    # a teacher held in bf16 wraps its backbone: the same bottleneck, close features
    low = copy.deepcopy(den)
    hold_in_bf16(low)
    h16 = bottleneck_features(low, x, torch.full((n,), 0.5))
    assert h16.shape == h.shape
    torch.testing.assert_close(h16.float(), h.float(), rtol=0.1, atol=0.1)


# -- RDMD when switched off -----------------------------------------------------------------

def _rdmd_twin(m: RDMDGAN, lam: float = 0.1) -> RDMD:
    twin = RDMD.from_teacher(copy.deepcopy(m.teacher), lam).with_optimizers(1e-3, 1e-3)
    twin.modules["generator"].load_state_dict(m.modules["generator"].state_dict())
    twin.modules["fake"].load_state_dict(m.modules["fake"].state_dict())
    return twin


@pytest.mark.parametrize("kind", ["mlp", "unet"])
def test_zero_weights_are_rdmd_exactly(kind: str) -> None:
    """Weights 0: the whole step is RDMD's (same draws, same updates). Generator weight 0
    with a live discriminator: the generator's update is still RDMD's bit for bit."""
    for weights in ((0.0, 0.0), (0.0, 0.1)):
        m, x = _gan(kind, weights)
        twin = _rdmd_twin(m)
        g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
        m.attach_target(_target_batches(x, g1))
        a = m.train_step(x, g1)
        b = twin.train_step(x, g2)
        assert a["loss_gen"] == b["loss_gen"] and a["loss_dm"] == b["loss_dm"]
        for p, q in zip(m.modules["generator"].parameters(),
                        twin.modules["generator"].parameters(), strict=True):
            assert torch.equal(p, q)
        fake_same = all(torch.equal(p, q) for p, q in zip(
            m.modules["fake"].parameters(), twin.modules["fake"].parameters(), strict=True))
        if weights == (0.0, 0.0):
            assert fake_same and a == b
            assert torch.equal(g1.get_state(), g2.get_state())
        else:  # the discriminator drew its samples: the fake score's noise moved on
            assert "loss_disc" in a and a["loss_disc"] > 0


# -- where the gradients go ------------------------------------------------------------------

@pytest.mark.parametrize("features", ["teacher", "fake"])
@pytest.mark.parametrize("kind", ["mlp", "unet"])
def test_gan_gradient_reaches_the_generator_only(kind: str, features: str) -> None:
    m, x = _gan(kind, features=features)
    n = x.shape[0]
    sigma = torch.full((n,), 0.7)
    y = m.generator(x)
    s = sigma.reshape(-1, *([1] * (x.ndim - 1)))
    fake_net = m.modules["fake"] if features == "fake" else None
    with frozen(m.modules["disc"], fake_net):
        logit = m.gan_logits(y + s * torch.randn_like(y), sigma, None, m.modules["disc"])
    torch.nn.functional.softplus(-logit).mean().backward()
    gen = [p.grad for p in m.modules["generator"].parameters()]
    assert all(g is not None for g in gen) and max(float(g.abs().max()) for g in gen) > 0
    assert all(p.grad is None for p in m.teacher.parameters())
    assert all(p.grad is None for p in m.modules["disc"].parameters())
    assert all(p.grad is None for p in m.modules["fake"].parameters())
    assert all(p.requires_grad for p in m.modules["disc"].parameters())  # restored
    # a whole step leaves the teacher as it was and moves the head
    before = copy.deepcopy(m.teacher.state_dict())
    head = copy.deepcopy(m.modules["disc"].state_dict())
    rng = torch.Generator().manual_seed(0)
    m.attach_target(_target_batches(x, rng))
    stats = m.train_step(x, rng)
    assert stats["loss_gan_gen"] > 0 and stats["loss_disc"] > 0
    assert all(torch.equal(v, m.teacher.state_dict()[k]) for k, v in before.items())
    assert any(not torch.equal(v, m.modules["disc"].state_dict()[k]) for k, v in head.items())


def test_generator_gan_term_moves_the_generator() -> None:
    """The GAN weight enters the generator's update: same draws, a different update than
    with weight 0, by an amount that grows with the weight."""
    def moved(w: float) -> torch.Tensor:
        m, x = _gan("mlp", (w, 0.1))
        start = torch.cat([p.detach().flatten() for p in m.modules["generator"].parameters()])
        rng = torch.Generator().manual_seed(1)
        m.attach_target(_target_batches(x, rng))
        m.optimizers["generator"] = torch.optim.SGD(m.modules["generator"].parameters(), 1.0)
        m.train_step(x, rng)
        end = torch.cat([p.detach().flatten() for p in m.modules["generator"].parameters()])
        return end - start

    d0, d1, d2 = moved(0.0), moved(1.0), moved(2.0)
    assert float((d1 - d0).abs().max()) > 0
    torch.testing.assert_close(d2 - d0, 2 * (d1 - d0), rtol=1e-3, atol=1e-7)


@pytest.mark.parametrize("features", ["teacher", "fake"])
@pytest.mark.parametrize("kind", ["mlp", "unet"])
def test_discriminator_step_lowers_its_loss(kind: str, features: str) -> None:
    m, x = _gan(kind, features=features)
    g = torch.Generator().manual_seed(2)
    real = torch.randn(x.shape, generator=g) * 0.5 + 1.0
    with torch.no_grad():
        fake = m.generator(x)
    sigma = torch.full((x.shape[0],), 0.3)
    names = ("disc",) if features == "teacher" else ("fake", "disc")

    def loss() -> torch.Tensor:
        return m.disc_loss(real, fake, sigma, None)

    with torch.no_grad():
        first = float(loss())
    for _ in range(5):
        m.update_joint(names, loss())
    with torch.no_grad():
        last = float(loss())
    assert last < first


# -- runs ----------------------------------------------------------------------------------

def test_run_end_to_end_and_resume_is_exact(teacher: Path, tmp_path: Path) -> None:
    kw = {**TINY, "method": "rdmd_gan", "ckpt_every": 3, "log_every": 1, "ema_decay": 0.9,
          "gan_weight_gen": 0.05}
    full = rdmd.distill("gaussian", teacher, tmp_path / "full", steps=6, **kw)
    half = rdmd.distill("gaussian", teacher, tmp_path / "half", steps=3, **kw)
    half = rdmd.distill("gaussian", teacher, half, steps=6, resume=True, progress=False)
    a, meta = ckpt.load_checkpoint(ckpt.latest_checkpoint(full / "checkpoints"))
    b = ckpt.load_checkpoint(ckpt.latest_checkpoint(half / "checkpoints"))[0]
    assert set(a) == set(b) and any(k.startswith("module.disc.") for k in a)
    assert "disc" in meta["optimizers"]
    for k in a:
        assert torch.equal(a[k], b[k]), k
    assert (full / "model.safetensors").read_bytes() == (half / "model.safetensors").read_bytes()
    log = (full / "log.csv").read_text().splitlines()
    assert "loss_disc" in log[0] and "loss_gan_gen" in log[0] and len(log) == 7
    # the export is a plain generator: loads and translates like RDMD's, no head inside
    m = load_model(full)
    assert m.meta["method"] == "rdmd_gan" and m.lam == 0.02 and m.lam_range is None
    assert isinstance(m.net, OneStepGenerator)
    assert not any("disc" in k for k in m.net.state_dict())
    x = np.random.default_rng(0).standard_normal((16, 2)).astype(np.float32)
    with torch.no_grad():
        want = m.normalizer.decode(m.net(m.normalizer.encode(torch.from_numpy(x))))
    np.testing.assert_allclose(rdmd.translate(full, x), want.numpy(), rtol=1e-5, atol=1e-6)
    saved = json.loads((full / "config.json").read_text())["config"]
    assert saved["gan_weight_gen"] == 0.05 and saved["gan_features"] == "teacher"


def test_cli_gan_flag(teacher: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
                      ) -> None:
    base = ["distill", "--source", "gaussian", "--teacher", str(teacher), "--steps", "2",
            "--no-progress", "--set", "batch_size=32", "--set", "n_train=100",
            "--set", "n_test=50", "--set", "floor_pairs=1"]
    assert main(base + ["--out", str(tmp_path / "f"), "--gan", "fake"]) == 0
    saved = json.loads((tmp_path / "f" / "config.json").read_text())["config"]
    assert saved["method"] == "rdmd_gan" and saved["gan_features"] == "fake"
    assert main(base + ["--out", str(tmp_path / "c"), "--gan", "teacher",
                        "--lam-range", "0:0.2"]) == 0
    m = load_model(tmp_path / "c")
    assert m.meta["method"] == "rdmd_lam_gan" and m.lam_range == (0.0, 0.2)
    capsys.readouterr()
    with pytest.raises(SystemExit, match="2"):  # argparse's own choice check
        main(base + ["--out", str(tmp_path / "x"), "--gan", "both"])
    assert main(base + ["--out", str(tmp_path / "y"), "--set", "gan_weight_gen=0.1"]) == 2
    err = capsys.readouterr().err
    assert "gan_weight_gen are for methods rdmd_gan" in err
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()


# -- the conditioned variant -------------------------------------------------------------------

def test_conditioned_variant_starts_as_the_teacher_and_steps() -> None:
    den, x = _net("unet")
    code = LamCode.of_range(0.0, 0.3)
    m = RDMDLamGAN.from_teacher_lam(den, code, sigma_g=0.7).with_optimizers(1e-3, 1e-3)
    m.add_gan(0.1, 0.1, "fake", lr=1e-3)
    assert isinstance(m, RDMDLam) and m.modules["disc"].cond_dim == 1
    want = OneStepGenerator(den, 0.7)(x)
    with torch.no_grad():
        for lam in (0.0, 0.05, 0.3):
            torch.testing.assert_close(AtLambda(m.generator, code, lam)(x), want, rtol=0,
                                       atol=0)
    rng = torch.Generator().manual_seed(0)
    m.attach_target(_target_batches(x, rng))
    gen0 = copy.deepcopy(m.modules["generator"].state_dict())
    stats = m.train_step(x, rng)
    assert all(np.isfinite(v) for v in stats.values()) and stats["loss_disc"] > 0
    assert any(not torch.equal(v, m.modules["generator"].state_dict()[k])
               for k, v in gen0.items())


def test_config_keys_and_method_selection() -> None:
    cfg = resolve_config(DistillConfig, [{"method": "rdmd_gan", "lam_range": "0:0.3"}],
                         "vector")
    assert cfg.method == "rdmd_lam_gan"
    cfg = resolve_config(DistillConfig, [{"method": "rdmd_gan"}], "vector")
    assert (cfg.gan_weight_gen, cfg.gan_weight_disc, cfg.gan_features) == (3e-3, 1e-2,
                                                                           "teacher")
    with pytest.raises(RdmdError, match="gan_features must be one of|'gan_features' must be"):
        resolve_config(DistillConfig, [{"method": "rdmd_gan", "gan_features": "both"}],
                       "vector")
    with pytest.raises(RdmdError, match="'gan_weight_disc' must be >= 0"):
        resolve_config(DistillConfig, [{"method": "rdmd_gan", "gan_weight_disc": -1}],
                       "vector")
    with pytest.raises(RdmdError, match="are for methods rdmd_gan"):
        resolve_config(DistillConfig, [{"gan_features": "fake"}], "vector")
    # a whole config passed back (the API's DistillConfig, defaults included) is not "given"
    full = dataclasses.asdict(resolve_config(DistillConfig, [{"lam": 0.1}], "vector"))
    assert resolve_config(DistillConfig, [full], "vector").method == "rdmd"
    with pytest.raises(RdmdError, match="rdmd_lam_gan needs lam_range"):
        resolve_config(DistillConfig, [{"method": "rdmd_lam_gan"}], "vector")
    # a run saved before the GAN keys existed loads as what it was (a method without the GAN
    # term), equal to the same run asked for today
    old = config_from_saved(DistillConfig, {"method": "rdmd", "lam": 0.1}, "old/config.json")
    new = DistillConfig(lam=0.1)
    assert old.method == "rdmd"
    assert [getattr(old, k) for k in GAN_KEYS] == [getattr(new, k) for k in GAN_KEYS]
    assert METHODS["rdmd_gan"] is RDMDGAN and METHODS["rdmd_lam_gan"] is RDMDLamGAN
    assert not RDMD.needs_target and RDMDGAN.needs_target


# -- two processes ---------------------------------------------------------------------------

def test_two_gloo_processes_match_one_process(tmp_path: Path) -> None:
    """DDP: the head (its own DDP wrapper, one forward on real+fake), the bare feature
    networks and the joint fake-score/head update give one process's result. The fake
    score's features only: they exercise every DDP path the teacher's do, and more."""
    from test_distributed import DISTILL, TEACHER, TOL, _max_diff, _single, _torchrun

    t = tmp_path / "t"
    _single(["train-teacher", "--out", str(t), *TEACHER])
    for feats in ("fake",):
        run = ["--teacher", str(t), *DISTILL, "--gan", feats, "--set", "gan_weight_gen=0.1"]
        one, two = tmp_path / f"one_{feats}", tmp_path / f"two_{feats}"
        _single(["distill", "--out", str(one), *run])
        _torchrun(["distill", "--out", str(two), *run])
        a = ckpt.load_checkpoint(ckpt.latest_checkpoint(one / "checkpoints"))[0]
        b = ckpt.load_checkpoint(ckpt.latest_checkpoint(two / "checkpoints"))[0]
        diff = _max_diff(a, b, ("module.generator.", "module.fake.", "module.disc.", "opt."))
        assert diff < TOL, f"{feats}: 2 processes differ from 1 by {diff:.3g}"
        assert torch.equal(a["rng.run"], b["rng.run"])

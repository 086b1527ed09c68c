"""Lambda-conditioned RDMD (issue 13): the teacher at every lambda at step 0, per-sample lambda
draws and weights, exact resume, the ``lam`` knob's errors, and fixed runs left as they were.
The per-sample gradient check with analytic Gaussian scores is in test_rdmd_gradient.py."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

import rdmd
from rdmd import checkpoint as ckpt
from rdmd.backbones import MLPBackbone
from rdmd.backbones.unet import UNetBackbone
from rdmd.cli import main
from rdmd.config import DistillConfig, resolve_config
from rdmd.edm import EDMDenoiser
from rdmd.errors import RdmdError
from rdmd.methods import METHODS, RDMD, OneStepGenerator, RDMDLam
from rdmd.methods.rdmd_lam import AtLambda, LamCode
from rdmd.models import load_model

torch.set_num_threads(1)
TINY_T = {"steps": 3, "batch_size": 32, "n_train": 100, "n_test": 50, "sample_steps": 2,
          "device": "cpu", "progress": False}
TINY = {"batch_size": 32, "n_train": 100, "n_test": 50, "floor_pairs": 1, "device": "cpu",
        "progress": False, "lr_schedule": "constant",  # constant: resumed with more steps
        "ot_start": 8}  # pinned: the 2-D default (4 x steps) differs between a run and its halves
SHIPPED = Path(rdmd.__file__).parent / "pretrained" / "cmnist"


@pytest.fixture(scope="module")
def teacher(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return rdmd.train_teacher("8gaussians", tmp_path_factory.mktemp("t") / "t", **TINY_T)


@pytest.fixture(scope="module")
def cond_run(teacher: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return rdmd.distill("gaussian", teacher, tmp_path_factory.mktemp("c") / "c", steps=3,
                        lam_range=(0.01, 0.3), **TINY)


@pytest.fixture(scope="module")
def fixed_run(teacher: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return rdmd.distill("gaussian", teacher, tmp_path_factory.mktemp("f") / "f", steps=2,
                        lam=0.05, **TINY)


# -- the method -----------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["mlp", "unet"])
def test_step0_generator_is_the_teacher_at_every_lambda(kind: str) -> None:
    """Zero-initialised conditioning: G(x, lambda) = D_teacher(x; sigma_g) exactly, for every
    lambda of the range (0 included), and the fake score is the teacher too."""
    torch.manual_seed(0)
    if kind == "mlp":
        teacher = EDMDenoiser(MLPBackbone(3), 0.8)
        x = torch.randn(16, 3)
    else:
        teacher = EDMDenoiser(UNetBackbone(3, 8, "tiny8"), 0.5)
        x = torch.randn(4, 3, 8, 8)
    for p in teacher.parameters():  # not a fresh init: every weight matters
        p.data.add_(0.02 * torch.randn_like(p))
    code = LamCode.of_range(0.0, 0.3)
    m = RDMDLam.from_teacher_lam(teacher, code, sigma_g=0.7)
    want = OneStepGenerator(teacher, 0.7)(x)
    sigma = torch.linspace(0.05, 20, x.shape[0])
    with torch.no_grad():
        for lam in (0.0, 0.003, 0.01, 0.05, 0.3):
            got = AtLambda(m.generator, code, lam)(x)
            torch.testing.assert_close(got, want, rtol=0, atol=0)
            cond = code.code(torch.full((x.shape[0],), lam))
            torch.testing.assert_close(m.fake(x, sigma, cond), teacher(x, sigma), rtol=0,
                                       atol=0)
        # per-sample lambdas in one batch: still the teacher for each sample
        mixed = code.code(torch.linspace(0, 0.3, x.shape[0]))
        torch.testing.assert_close(m.generator(x, mixed), want, rtol=0, atol=0)
    # ... and the conditioning is live: one step later, lambdas give different outputs
    m.with_optimizers(1e-2, 1e-2)
    m.train_step(x, torch.Generator().manual_seed(0))
    with torch.no_grad():
        a = AtLambda(m.modules["generator"], code, 0.0)(x)
        b = AtLambda(m.modules["generator"], code, 0.3)(x)
    assert not torch.allclose(a, b)


def test_lambda_draws_follow_the_documented_law() -> None:
    g = torch.Generator().manual_seed(0)
    code = LamCode.of_range(0.01, 0.3)
    lam = code.sample(100_000, g)
    assert float(lam.min()) >= 0.01 and float(lam.max()) <= 0.3
    # log-uniform: log lambda has mean (log lo + log hi)/2 and the codes fill [-1, 1] evenly
    assert float(lam.log().mean()) == pytest.approx(0.5 * math.log(0.01 * 0.3), abs=0.01)
    c = code.code(lam)
    assert float(c.min()) >= -1 - 1e-6 and float(c.max()) <= 1 + 1e-6
    assert float(c.mean()) == pytest.approx(0.0, abs=0.01)
    # the range 0:hi: default shift hi/10, a share of exact zeros
    z = LamCode.of_range(0.0, 0.2)
    assert z.shift == pytest.approx(0.02)
    lz = z.sample(100_000, g, zero_prob=0.1)
    assert float((lz == 0).float().mean()) == pytest.approx(0.1, abs=0.005)
    assert float(lz.max()) <= 0.2 and float(lz.min()) >= 0.0
    assert float(((lz + 0.02).log()).mean()) == pytest.approx(
        0.1 * math.log(0.02) + 0.9 * 0.5 * (math.log(0.02) + math.log(0.22)), abs=0.01)
    assert code.report_lams() == [0.01, pytest.approx(0.0548), 0.3]


def test_the_cost_is_weighted_per_sample() -> None:
    """With the DM term switched off (fake = teacher), the generator's gradient is exactly
    that of mean_i lambda_i c(x_i, G(x_i, lambda_i))."""
    torch.manual_seed(0)
    teacher = EDMDenoiser(MLPBackbone(2), 1.0)
    code = LamCode.of_range(0.01, 0.3)
    m = RDMDLam.from_teacher_lam(teacher, code)
    x = torch.randn(64, 2)
    rng = torch.Generator().manual_seed(3)
    cond, lam = m.conditioning(x, rng)
    assert lam.shape == (64,) and float(lam.std()) > 0.01  # really one lambda per sample
    loss, _, parts = m.generator_loss(x, rng, cond=cond, lam=lam)
    params = list(m.generator.parameters())
    got = torch.autograd.grad(loss, params, allow_unused=True)
    y = m.generator(x, cond)
    ref = torch.autograd.grad((lam * ((x - y) ** 2).mean(1)).mean(), params, allow_unused=True)
    for a, b in zip(got, ref, strict=True):
        if b is None:
            assert a is None or float(a.abs().max()) == 0
        else:
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-8)
    assert float(parts["loss_dm"]) == 0.0


def test_the_lambda_embeddings_learn_at_their_own_rate() -> None:
    """``lam_lr_scale``: Adam's first step moves each parameter by about its rate, so the
    embeddings (``c_enc``) of both networks move ``scale`` times as far as the rest."""
    torch.manual_seed(0)
    teacher = EDMDenoiser(MLPBackbone(2), 1.0)
    m = RDMDLam.from_teacher_lam(teacher, LamCode.of_range(0.01, 0.3), lr_scale=10.0)
    m.with_optimizers(1e-3, 2e-3)
    for name, lr in (("generator", 1e-3), ("fake", 2e-3)):
        assert sorted(g["lr"] for g in m.optimizers[name].param_groups) == [lr, 10 * lr]
    before = {n: {k: v.detach().clone() for k, v in m.modules[n].named_parameters()}
              for n in ("generator", "fake")}
    m.train_step(torch.randn(64, 2), torch.Generator().manual_seed(1))
    for name, lr in (("generator", 1e-3), ("fake", 2e-3)):
        moved = {k: float((v.detach() - before[name][k]).abs().max())
                 for k, v in m.modules[name].named_parameters()}
        emb = max(d for k, d in moved.items() if ".c_enc." in f".{k}")
        rest = max(d for k, d in moved.items() if ".c_enc." not in f".{k}")
        assert 5 * lr < emb <= 10.01 * lr and rest <= 1.01 * lr, (name, emb, rest)
    # a scale of 1 keeps the single group of the runs before the key
    one = RDMDLam.from_teacher_lam(teacher, LamCode.of_range(0.01, 0.3)).with_optimizers(1e-3,
                                                                                          1e-3)
    assert len(one.optimizers["generator"].param_groups) == 1


def test_the_fake_score_trains_on_each_samples_lambda(monkeypatch: pytest.MonkeyPatch) -> None:
    """The fake score's DSM loss gets the same per-sample conditioning as the generator."""
    torch.manual_seed(0)
    m = RDMDLam.from_teacher_lam(EDMDenoiser(MLPBackbone(2), 1.0), LamCode.of_range(0, 0.2),
                                 zero_prob=0.1).with_optimizers(1e-4, 1e-4)
    seen: dict[str, torch.Tensor] = {}
    inner = m.fake_loss_fn

    def spy(den, y, generator=None, sigma=None, eps=None, cond=None):  # noqa: ANN001, ANN202
        seen["fake"] = cond
        return inner(den, y, generator=generator, sigma=sigma, eps=eps, cond=cond)

    gen_calls: list[torch.Tensor] = []
    fwd = m.generator.forward
    monkeypatch.setattr(m.generator, "forward", lambda x, cond: gen_calls.append(cond)
                        or fwd(x, cond))
    monkeypatch.setattr(m, "fake_loss_fn", spy)
    m.train_step(torch.randn(32, 2), torch.Generator().manual_seed(1))
    assert seen["fake"] is gen_calls[0] and seen["fake"].shape == (32, 1)


# -- runs: saving, loading, resume ------------------------------------------------------------

def test_conditioned_run_saves_its_range(cond_run: Path) -> None:
    m = load_model(cond_run)
    assert m.meta["method"] == "rdmd_lam" and "lam" not in m.meta
    assert m.lam_range == (0.01, 0.3) and m.lam is None
    assert m.meta["backbone"]["cond_dim"] == 1 and m.meta["lam_shift"] == 0.0
    saved = json.loads((cond_run / "config.json").read_text())["config"]
    assert saved["method"] == "rdmd_lam" and saved["lam_range"] == [0.01, 0.3]
    rep = json.loads((cond_run / "metrics.json").read_text())
    assert rep["lam_range"] == [0.01, 0.3]
    assert set(rep["by_lam"]) == {"0.01", "0.0548", "0.3"}
    assert all("w2_sq" in v for v in rep["by_lam"].values())


@pytest.mark.parametrize("scale", [1.0, 5.0])
def test_conditioned_resume_is_exact(teacher: Path, tmp_path: Path, scale: float) -> None:
    kw = {**TINY, "lam_range": "0:0.2", "ckpt_every": 3, "log_every": 1, "ema_decay": 0.9,
          "lam_lr_scale": scale}
    full = rdmd.distill("gaussian", teacher, tmp_path / "full", steps=6, **kw)
    half = rdmd.distill("gaussian", teacher, tmp_path / "half", steps=3, **kw)
    half = rdmd.distill("gaussian", teacher, half, steps=6, resume=True, progress=False)
    a = ckpt.load_checkpoint(ckpt.latest_checkpoint(full / "checkpoints"))[0]
    b = ckpt.load_checkpoint(ckpt.latest_checkpoint(half / "checkpoints"))[0]
    assert set(a) == set(b) and any(k.startswith("module.generator.denoiser.backbone.c_enc")
                                    for k in a)
    for k in a:
        assert torch.equal(a[k], b[k]), k
    assert (full / "model.safetensors").read_bytes() == (half / "model.safetensors").read_bytes()
    assert (full / "log.csv").read_text().count("\n") == 7
    # the conditioning layers did train (they start at zero)
    c_enc = [v for k, v in a.items() if k.startswith("module.generator.denoiser.backbone."
                                                      "c_enc.net.2.weight")]
    assert c_enc and float(c_enc[0].abs().max()) > 0


# -- the knob: API, CLI, errors -------------------------------------------------------------

def test_translate_at_a_lambda(cond_run: Path) -> None:
    x = np.random.default_rng(0).standard_normal((40, 2)).astype(np.float32)
    m = load_model(cond_run)
    code = LamCode.from_meta(m.meta)
    for lam in (0.01, 0.05, 0.3):
        y = rdmd.translate(cond_run, x, lam=lam)
        with torch.no_grad():
            z = m.normalizer.encode(torch.from_numpy(x))
            want = m.normalizer.decode(m.net(z, code.code(torch.full((40,), lam))))
        np.testing.assert_allclose(y, want.numpy(), rtol=1e-5, atol=1e-6)
    tr = rdmd.make_translator("rdmd", cond_run, lam=0.05)
    assert tr.params == {"lam": 0.05, "lam_range": [0.01, 0.3]}


@pytest.mark.parametrize("lam,msg", [(None, "lambda-conditioned: pass lam"),
                                     (0.5, "outside this generator's trained range 0.01:0.3"),
                                     (0.001, "outside"), (-1.0, "outside")])
def test_conditioned_model_refuses_a_missing_or_outside_lambda(cond_run: Path,
                                                                lam: float | None,
                                                                msg: str) -> None:
    x = np.zeros((3, 2), np.float32)
    with pytest.raises(RdmdError, match=msg):
        rdmd.translate(cond_run, x, lam=lam)
    with pytest.raises(RdmdError, match=msg):
        rdmd.make_translator("rdmd", cond_run, **({} if lam is None else {"lam": lam}))


def test_fixed_model_takes_only_its_own_lambda(fixed_run: Path) -> None:
    x = np.random.default_rng(0).standard_normal((8, 2)).astype(np.float32)
    m = load_model(fixed_run)
    assert m.lam == 0.05 and m.lam_range is None
    np.testing.assert_array_equal(rdmd.translate(fixed_run, x, lam=0.05),
                                  rdmd.translate(fixed_run, x))
    with pytest.raises(RdmdError, match="fixed lambda 0.05; lam 0.1 needs a lambda-cond"):
        rdmd.translate(fixed_run, x, lam=0.1)


def test_cli_translate_and_evaluate_lam(cond_run: Path, fixed_run: Path, tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    x = np.random.default_rng(0).standard_normal((20, 2)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    out = tmp_path / "y.npy"
    base = ["translate", "--model", str(cond_run), "--input", str(tmp_path / "x.npy"),
            "--output", str(out)]
    assert main(base + ["--lam", "0.1"]) == 0
    np.testing.assert_allclose(np.load(out), rdmd.translate(cond_run, x, lam=0.1), rtol=1e-6)
    capsys.readouterr()
    fresh = tmp_path / "z.npy"  # not the existing output: that is refused without --overwrite
    base[-1] = str(fresh)
    for extra, msg in (([], "pass lam (--lam)"), (["--lam", "0.5"], "outside")):
        assert main(base + extra) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and msg in err and err.startswith("rdmd: error:")
        assert not fresh.exists()
    fixed = ["translate", "--model", str(fixed_run), "--input", str(tmp_path / "x.npy"),
             "--output", str(fresh), "--lam", "0.2"]
    assert main(fixed) == 2
    assert "fixed lambda 0.05" in capsys.readouterr().err
    assert main(["evaluate", "--model", str(cond_run), "--lam", "0.1",
                 "--json", str(tmp_path / "m.json")]) == 0
    res = json.loads((tmp_path / "m.json").read_text())
    assert res["lam"] == 0.1 and res["lam_range"] == [0.01, 0.3] and "w2_sq" in res
    assert main(["evaluate", "--model", str(cond_run)]) == 2
    assert "pass lam" in capsys.readouterr().err


def test_distill_lam_range_flags(teacher: Path, tmp_path: Path,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    base = ["distill", "--source", "gaussian", "--teacher", str(teacher), "--steps", "1",
            "--no-progress", "--set", "batch_size=32", "--set", "n_train=100",
            "--set", "n_test=50", "--set", "floor_pairs=1"]
    assert main(base + ["--out", str(tmp_path / "a"), "--lam", "0.1",
                        "--lam-range", "0:1"]) == 2
    assert "not both" in capsys.readouterr().err
    assert main(base + ["--out", str(tmp_path / "b"), "--lam-range", "0.3:0.01"]) == 2
    assert "0 <= MIN < MAX" in capsys.readouterr().err
    assert main(base + ["--out", str(tmp_path / "c"), "--lam-range", "abc"]) == 2
    assert "MIN:MAX" in capsys.readouterr().err
    assert main(base + ["--out", str(tmp_path / "d"), "--lam-range", "0:0.2"]) == 0
    m = load_model(tmp_path / "d")
    assert m.lam_range == (0.0, 0.2) and m.meta["lam_zero_prob"] == 0.1
    assert m.meta["lam_shift"] == pytest.approx(0.02)
    assert not any((tmp_path / n).exists() for n in "abc")


def test_config_keeps_range_and_method_together() -> None:
    cfg = resolve_config(DistillConfig, [{"lam_range": "0.01:0.3"}], "vector")
    assert cfg.method == "rdmd_lam" and cfg.lam_range == [0.01, 0.3]
    with pytest.raises(RdmdError, match="for method rdmd_lam"):
        resolve_config(DistillConfig, [{"lam_range": [0.01, 0.3], "method": "rdmd"}], "vector")
    with pytest.raises(RdmdError, match="needs lam_range"):
        resolve_config(DistillConfig, [{"method": "rdmd_lam"}], "vector")
    with pytest.raises(RdmdError, match="lam_zero_prob"):
        resolve_config(DistillConfig, [{"lam_range": "0:1", "lam_zero_prob": 1.0}], "vector")
    with pytest.raises(RdmdError, match="'lam_lr_scale' must be > 0"):
        resolve_config(DistillConfig, [{"lam_range": "0:1", "lam_lr_scale": 0}], "vector")
    with pytest.raises(RdmdError, match="lam_lr_scale are for method rdmd_lam"):
        resolve_config(DistillConfig, [{"lam_lr_scale": 10}], "vector")
    assert METHODS["rdmd_lam"] is RDMDLam and issubclass(RDMDLam, RDMD)


# -- fixed runs and shipped models are as before ----------------------------------------------

def test_shipped_fixed_models_load_as_before() -> None:
    m = load_model(SHIPPED / "rdmd_lam0.05")
    assert m.lam == 0.05 and m.lam_range is None and isinstance(m.net, OneStepGenerator)
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    np.testing.assert_array_equal(rdmd.translate(m, x, lam=0.05).numpy(),
                                  rdmd.translate(m, x).numpy())
    with pytest.raises(RdmdError, match="fixed lambda"):
        rdmd.translate(m, x, lam=0.1)
    assert load_model(SHIPPED / "teacher").lam is None


def test_fixed_rdmd_draws_nothing_more(fixed_run: Path) -> None:
    """Fixed RDMD's step draws exactly what it drew before the conditioning hook existed
    (its ``conditioning`` is empty), so a fixed run's noise and results are unchanged."""
    torch.manual_seed(0)
    m = RDMD.from_teacher(EDMDenoiser(MLPBackbone(2), 1.0), 0.1).with_optimizers(1e-4, 1e-4)
    g = torch.Generator().manual_seed(0)
    assert m.conditioning(torch.zeros(4, 2), g) == (None, None)
    assert torch.equal(g.get_state(), torch.Generator().manual_seed(0).get_state())
    meta = load_model(fixed_run).meta
    assert meta["lam"] == 0.05 and "lam_range" not in meta and "cond_dim" not in meta["backbone"]


@pytest.mark.slow  # about 95 s on the shared CPUs here (an image teacher and run)
def test_sweep_evaluates_its_grid_from_one_conditioned_model(tmp_path: Path) -> None:
    """An image run end to end (the UNet's conditioning slot), then ``rdmd sweep`` with
    ``[rdmd] model``: every lambda of the grid from that one model, nothing trained."""
    from rdmd.sweep import run_sweep

    src, tgt = "digits:class=2", "digits:class=3"
    t = rdmd.train_teacher(tgt, tmp_path / "t", steps=3, batch_size=16, sample_steps=2,
                           warmup_steps=1, device="cpu", progress=False)
    c = rdmd.distill(src, t, tmp_path / "c", steps=2, batch_size=16, lam_range="0:0.5",
                     device="cpu", progress=False)
    m = load_model(c)
    assert m.lam_range == (0.0, 0.5) and m.meta["backbone"]["cond_dim"] == 1
    assert (c / "plots" / "translation_lam0.5.png").is_file()
    cfg = tmp_path / "sweep.toml"
    cfg.write_text(f'source = "{src}"\ntarget = "{tgt}"\nteacher = "{t}"\nn_eval = 8\n'
                   f'[rdmd]\nlams = [0, 0.1, 0.5]\nmodel = "{c}"\n')
    run_sweep(cfg, tmp_path / "s", progress=False)
    rows = json.loads((tmp_path / "s" / "table.json").read_text())["rows"]
    assert sorted(r["p_lam"] for r in rows) == [0.0, 0.1, 0.5]
    assert all(r["run"] == str(c) for r in rows) and not (tmp_path / "s" / "rdmd").exists()
    x = load_domain_test(src)[:8]
    y0 = rdmd.translate(c, x, lam=0.0)
    assert not torch.equal(y0, rdmd.translate(c, x, lam=0.5))  # two steps moved the knob
    cfg.write_text(cfg.read_text() + "steps = 3\n")
    with pytest.raises(RdmdError, match="excludes steps"):
        run_sweep(cfg, tmp_path / "s2", progress=False)


def load_domain_test(spec: str) -> torch.Tensor:
    from rdmd.data import load_domain

    return load_domain(spec).test

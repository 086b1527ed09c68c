"""diffusers models in and out (docs/diffusers.md), on tiny models the tests build themselves.

In: a ``DDPMPipeline.save_pretrained`` folder is a teacher; its VP network, seen through the
VP -> VE change of variables, must be exactly ``y - sigma_t * eps(y / sqrt(1 + sigma_t^2), t)``
at every integer timestep and continuous in between; distil and the baselines run on it; what
rdmd cannot wrap is refused in one line. Out: ``rdmd export`` writes a folder plain diffusers
loads, and ``RDMDPipeline`` gives ``rdmd translate``'s images.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from diffusers import DDIMScheduler, DDPMPipeline, DDPMScheduler, UNet2DModel
from PIL import Image

import rdmd
from rdmd.cli import main
from rdmd.data.images import save_image
from rdmd.errors import RdmdError
from rdmd.interop.diffusers import VPDenoiser, clip_to_teacher
from rdmd.models import load_model

torch.set_num_threads(1)
DEV = ["--device", "cpu", "--no-progress"]


def tiny_unet(seed: int = 0, channels: int = 1, size: int = 8, **kw: object) -> UNet2DModel:
    torch.manual_seed(seed)
    return UNet2DModel(sample_size=size, in_channels=channels, out_channels=channels,
                       layers_per_block=1, block_out_channels=(16, 32),
                       down_block_types=("DownBlock2D",) * 2,
                       up_block_types=("UpBlock2D",) * 2, norm_num_groups=8,
                       add_attention=False, **kw)


def save_pipeline(path: Path, prediction_type: str = "epsilon", scheduler_cls: type = DDPMScheduler,
                  **sched_kw: object) -> tuple[UNet2DModel, DDPMScheduler]:
    unet = tiny_unet().eval()
    sched = scheduler_cls(num_train_timesteps=1000, prediction_type=prediction_type, **sched_kw)
    DDPMPipeline(unet=unet, scheduler=sched).save_pretrained(path)
    return unet, sched


def run_cli(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main(argv)
    return rc, out.getvalue(), err.getvalue()


def one_line_error(fn: object, *args: object) -> str:
    with pytest.raises(RdmdError) as e:
        fn(*args)  # type: ignore[operator]
    msg = str(e.value)
    assert "\n" not in msg
    return msg


def table(sched: DDPMScheduler) -> torch.Tensor:
    ab = sched.alphas_cumprod.double()
    return ((1 - ab) / ab).sqrt()


# -- 1. the wrapper is the VP -> VE change of variables ----------------------------------------

@pytest.mark.parametrize("pred", ["epsilon", "v_prediction"])
def test_wrapper_equals_vp_formula_at_every_integer_timestep(tmp_path: Path, pred: str) -> None:
    unet, sched = save_pipeline(tmp_path / "pipe", pred)
    model = load_model(tmp_path / "pipe")
    assert model.role == "teacher" and isinstance(model.denoiser, VPDenoiser)
    assert model.meta["data_shape"] == [1, 8, 8] and model.meta["sigma_data"] == 0.5
    sig = table(sched)
    n = len(sig)
    gen = torch.Generator().manual_seed(0)
    y = torch.randn(n, 1, 8, 8, generator=gen) * (1 + sig.float()).reshape(-1, 1, 1, 1)
    s = sig.float().reshape(-1, 1, 1, 1)
    t_int = torch.arange(n)
    assert torch.allclose(model.denoiser.timestep(sig.float()), t_int.double(), atol=1e-3)
    with torch.no_grad():
        # sigma in float64 lands exactly on t (float32 sigma is t +- 1e-5, which the UNet's
        # float32 sinusoid at t ~ 1000 turns into ~5e-5 relative differences)
        d = model.denoiser(y, sig)
        x_t = y / torch.sqrt(1 + s**2)
        out = unet(x_t, t_int.float()).sample.double()
        # the formula in float64: for v, y - sigma*eps cancels to 4 digits at large sigma
        y64, s64 = y.double(), sig.reshape(-1, 1, 1, 1)
        x64 = y64 / torch.sqrt(1 + s64**2)
        if pred == "epsilon":
            eps = out
        else:  # eps = sqrt(ab) v + sqrt(1 - ab) x_t
            ab = sched.alphas_cumprod.reshape(-1, 1, 1, 1).double()
            eps = ab.sqrt() * out + (1 - ab).sqrt() * x64
        ref = y64 - s64 * eps
    err = (d - ref).abs().amax(dim=(1, 2, 3)) / ref.abs().amax(dim=(1, 2, 3))
    assert float(err.max()) < 1e-5, f"worst timestep {int(err.argmax())}: {float(err.max())}"
    # the one-step generator's path (one plain-number level) is the same function
    with torch.no_grad():
        for sg in (0.5, 1.0, 20.0):
            fixed = model.denoiser(y[:4], sg)
            per_sample = model.denoiser(y[:4], torch.full((4,), sg))
            assert torch.allclose(fixed, per_sample, rtol=1e-5, atol=1e-5)


def test_wrapper_is_continuous_between_timesteps(tmp_path: Path) -> None:
    _, sched = save_pipeline(tmp_path / "pipe")
    den = load_model(tmp_path / "pipe").denoiser
    sig = table(sched)
    # half-way in log sigma is half-way in t; the timestep increases with sigma
    mid = (sig[:-1] * sig[1:]).sqrt()
    assert torch.allclose(den.timestep(mid), torch.arange(len(mid)).double() + 0.5, atol=1e-6)
    grid = torch.logspace(math.log10(sig[0]), math.log10(sig[-1]), 5000, dtype=torch.float64)
    assert bool((den.timestep(grid).diff() > 0).all())
    # D has no jump at an integer timestep: its left and right limits agree
    y = torch.randn(8, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        for t in (1, 10, 250, 998):
            lo, hi = (torch.full((8,), float(sig[t]) * f) for f in (1 - 1e-4, 1 + 1e-4))
            d_lo, d_hi = den(y, lo), den(y, hi)
            assert float((d_lo - d_hi).abs().max()) < 1e-2 * float(d_lo.abs().max())


def test_clip_to_teacher_keeps_noise_levels_inside_the_schedule(tmp_path: Path) -> None:
    """A short schedule (100 linear steps) ends at sigma ~1.3: RDMD's default DM range
    [0.02, 80] would query the teacher where it never trained."""
    unet = tiny_unet()
    sched = DDPMScheduler(num_train_timesteps=100)
    DDPMPipeline(unet=unet, scheduler=sched).save_pretrained(tmp_path / "p")
    meta = load_model(tmp_path / "p").meta
    lo, hi = meta["sigma_range"]
    assert hi == pytest.approx(float(table(sched)[-1])) and hi < 2
    cfg = rdmd.DistillConfig(sigma_g=5.0)
    msg = clip_to_teacher(cfg, meta)
    assert msg is not None and "sigma_g 5 ->" in msg and "dm_sigma_max 80 ->" in msg
    assert cfg.sigma_g == hi and cfg.dm_sigma_max == hi and cfg.dm_sigma_min == 0.02
    assert clip_to_teacher(rdmd.DistillConfig(sigma_g=1.0, dm_sigma_max=1.0), meta) is None


# -- 2. what is refused -------------------------------------------------------------------------

def test_unsupported_folders_are_refused_in_one_line(tmp_path: Path) -> None:
    from diffusers import EulerDiscreteScheduler

    save_pipeline(tmp_path / "euler", scheduler_cls=EulerDiscreteScheduler)
    assert "EulerDiscreteScheduler is not supported" in one_line_error(
        load_model, tmp_path / "euler")

    save_pipeline(tmp_path / "latent")
    idx = json.loads((tmp_path / "latent" / "model_index.json").read_text())
    idx.update(_class_name="LDMPipeline", vqvae=["diffusers", "VQModel"])
    (tmp_path / "latent" / "model_index.json").write_text(json.dumps(idx))
    assert "latent diffusion model" in one_line_error(load_model, tmp_path / "latent")

    save_pipeline(tmp_path / "sd")
    idx = json.loads((tmp_path / "sd" / "model_index.json").read_text())
    idx.update(vae=["diffusers", "AutoencoderKL"], text_encoder=["transformers", "CLIPTextModel"])
    (tmp_path / "sd" / "model_index.json").write_text(json.dumps(idx))
    assert "latent" in one_line_error(load_model, tmp_path / "sd")

    unet = tiny_unet()  # pickled weights only: never unpickled
    unet.save_pretrained(tmp_path / "pkl" / "unet", safe_serialization=False)
    DDPMScheduler().save_pretrained(tmp_path / "pkl" / "scheduler")
    assert "safetensors only" in one_line_error(load_model, tmp_path / "pkl")

    # the CLI: exit 2, one line
    rc, _, err = run_cli(["translate", "--method", "sdedit", "--model", str(tmp_path / "euler"),
                          "--input", str(tmp_path), "--output", str(tmp_path / "o")])
    assert rc == 2 and err.strip().count("\n") == 0 and "rdmd: error:" in err


def test_ddim_folder_and_unet_scheduler_pair_load(tmp_path: Path) -> None:
    """A DDIM scheduler has the same VP table; a bare unet/ + scheduler/ pair needs no
    model_index.json."""
    _, sched = save_pipeline(tmp_path / "ddim", scheduler_cls=DDIMScheduler)
    (tmp_path / "ddim" / "model_index.json").unlink()
    den = load_model(tmp_path / "ddim").denoiser
    assert den.sigma_max == pytest.approx(float(table(sched)[-1]))


# -- 3. distil and the baselines on a diffusers teacher; export round trips ---------------------

def _pil_inputs(n: int = 6) -> list[Image.Image]:
    rng = np.random.default_rng(0)
    return [Image.fromarray(rng.integers(0, 256, (8, 8), dtype=np.uint8), "L")
            for _ in range(n)]


def _max_diff(a: list[Image.Image], b: list[Image.Image]) -> int:
    assert len(a) == len(b)
    return max(int(np.abs(np.asarray(x, dtype=int) - np.asarray(y, dtype=int)).max())
               for x, y in zip(a, b, strict=True))


def test_distill_from_diffusers_folder_then_export(tmp_path: Path) -> None:
    unet, _ = save_pipeline(tmp_path / "pipe")
    gen_dir, exp = tmp_path / "gen", tmp_path / "exp"
    rc, _, err = run_cli(["distill", "--source", "digits:class=1", "--target", "digits:class=7",
                          "--teacher", str(tmp_path / "pipe"), "--out", str(gen_dir),
                          "--steps", "3", "--set", "batch_size=8", "--set", "n_test=16",
                          "--set", "dm_sigma_max=500", *DEV])
    assert rc == 0, err
    assert "clipped dm_sigma_max 500 -> 157.4" in err
    saved = json.loads((gen_dir / "config.json").read_text())["config"]
    assert saved["dm_sigma_max"] == pytest.approx(157.407, abs=1e-3)  # what was used
    gen = load_model(gen_dir)
    assert gen.role == "generator" and isinstance(gen.denoiser, VPDenoiser)
    assert gen.meta["backbone"]["name"] == "diffusers_vp"
    # the generator trained (its weights left the teacher's) and reloads to the same function
    moved = [not torch.equal(p, q) for p, q in zip(gen.denoiser.unet.parameters(),
                                                  unet.parameters(), strict=True)]
    assert any(moved)
    x = torch.rand(4, 1, 8, 8, generator=torch.Generator().manual_seed(0)) * 2 - 1
    assert torch.equal(rdmd.translate(gen_dir, x), rdmd.translate(load_model(gen_dir), x))
    # a diffusers teacher without --target is a one-line error
    rc, _, err = run_cli(["distill", "--source", "digits:class=1", "--teacher",
                          str(tmp_path / "pipe"), "--out", str(tmp_path / "g2"), "--steps", "1",
                          *DEV])
    assert rc == 2 and "pass --target" in err
    # one generator for every lambda needs a backbone with a conditioning input: refused in
    # one line, and nothing is left that blocks a retry
    rc, _, err = run_cli(["distill", "--source", "digits:class=1", "--target", "digits:class=7",
                          "--teacher", str(tmp_path / "pipe"), "--out", str(tmp_path / "g3"),
                          "--lam-range", "0.05:1", "--steps", "1", *DEV])
    assert rc == 2 and err.count("\n") == 1 and "lambda-conditioned RDMD needs" in err
    assert not (tmp_path / "g3" / "config.json").exists()

    rc, out, err = run_cli(["export", "--model", str(gen_dir), "--out", str(exp)])
    assert rc == 0, err
    files = sorted(p.relative_to(exp).as_posix() for p in exp.rglob("*") if p.is_file())
    assert files == ["model_index.json", "unet/config.json",
                     "unet/diffusion_pytorch_model.safetensors"]
    idx = json.loads((exp / "model_index.json").read_text())
    assert idx["preconditioning"] == "vp_epsilon" and idx["lam"] == 0.02
    assert idx["c_in"] == pytest.approx(1 / math.sqrt(2)) and idx["c_out"] == -1.0
    plain = UNet2DModel.from_pretrained(exp, subfolder="unet")
    for p, q in zip(plain.parameters(), gen.denoiser.unet.parameters(), strict=True):
        assert torch.equal(p, q)
    ims = _pil_inputs()
    pipe = rdmd.RDMDPipeline.from_pretrained(exp)
    # the pipeline runs in its torch dtype (float32 as loaded): rdmd's fp32 path, not the
    # bf16 autocast rdmd translate uses for images by default
    fp32 = rdmd.translate(gen_dir, ims, precision="fp32")
    assert _max_diff(pipe(ims, lam=0.02).images, fp32) <= 1
    with pytest.raises(ValueError, match="lambda=0.02 only"):
        pipe(ims, lam=0.5)
    # an exported folder is not a teacher, and export does not overwrite
    assert "RDMDPipeline" in one_line_error(load_model, exp)
    rc, _, err = run_cli(["export", "--model", str(gen_dir), "--out", str(exp)])
    assert rc == 2 and "not an empty folder" in err


def test_baselines_run_on_a_diffusers_teacher(tmp_path: Path) -> None:
    save_pipeline(tmp_path / "pipe")
    x = torch.rand(3, 1, 8, 8, generator=torch.Generator().manual_seed(0)) * 2 - 1
    for i, im in enumerate(x):
        save_image(im, tmp_path / "in" / f"{i}.png")
    for method, flags in (("sdedit", ["--sigma-start", "1.5"]), ("ilvr", ["--down", "2"])):
        rc, _, err = run_cli(["translate", "--method", method, "--model", str(tmp_path / "pipe"),
                              "--input", str(tmp_path / "in"), "--output",
                              str(tmp_path / method), "--n-steps", "3", *flags,
                              "--no-progress"])
        assert rc == 0, err
        assert len(list((tmp_path / method).glob("*.png"))) == 3
    y = rdmd.translate(tmp_path / "pipe", x, method="sdedit", sigma_start=1.5, n_steps=3)
    assert y.shape == x.shape and not torch.equal(y, x)
    rc, _, err = run_cli(["train-domain-classifier", "--source", "digits:class=1", "--target",
                          "digits:class=7", "--out", str(tmp_path / "dclf"), "--steps", "2",
                          "--batch-size", "8", "--size", "8", "--channels", "1",
                          "--no-progress"])
    assert rc == 0, err
    y = rdmd.translate(tmp_path / "pipe", x, method="egsde", n_steps=2, down=2,
                       domain_classifier=str(tmp_path / "dclf"))
    assert y.shape == x.shape and bool(torch.isfinite(y).all())


def test_export_of_rdmd_edm_generator_round_trips(tmp_path: Path) -> None:
    """rdmd's own image backbone is a UNet2DModel under EDM preconditioning: the pipeline
    applies c_skip, c_out, c_in and c_noise from its config."""
    teacher = rdmd.train_teacher("digits:class=7", tmp_path / "t", progress=False, steps=2,
                                 batch_size=8, sample_steps=2, warmup_steps=1, n_test=16,
                                 backbone="unet:tiny8", device="cpu")
    gen = rdmd.distill("digits:class=1", teacher, tmp_path / "g", progress=False, steps=2,
                       batch_size=8, n_test=16, sigma_g=0.7, lam=0.1, device="cpu")
    rc, _, err = run_cli(["export", "--model", str(gen), "--out", str(tmp_path / "exp")])
    assert rc == 0, err
    idx = json.loads((tmp_path / "exp" / "model_index.json").read_text())
    assert idx["preconditioning"] == "edm" and idx["sigma_g"] == 0.7
    assert idx["timestep"] == pytest.approx(math.log(0.7) / 4)
    assert idx["c_skip"] == pytest.approx(0.25 / (0.49 + 0.25))
    UNet2DModel.from_pretrained(tmp_path / "exp", subfolder="unet")
    ims = _pil_inputs()
    pipe = rdmd.RDMDPipeline.from_pretrained(tmp_path / "exp")
    assert _max_diff(pipe(ims, lam=0.1).images, rdmd.translate(gen, ims, precision="fp32")) <= 1
    out = pipe(ims, output_type="pt").images
    assert out.shape == (6, 1, 8, 8) and float(out.abs().max()) <= 1


def test_export_refuses_vector_models_and_teachers(tmp_path: Path) -> None:
    teacher = rdmd.train_teacher("gaussian", tmp_path / "t", progress=False, steps=2,
                                 batch_size=64, n_train=256, n_test=256, device="cpu")
    gen = rdmd.distill("gaussian:mean=[1,1]", teacher, tmp_path / "g", progress=False,
                       steps=2, batch_size=64, n_train=256, n_test=256, floor_pairs=1,
                       device="cpu")
    from rdmd.interop.pipeline import export_model

    assert "only image generators" in one_line_error(export_model, gen, tmp_path / "e1")
    assert "one-step generators" in one_line_error(export_model, teacher, tmp_path / "e2")
    assert not (tmp_path / "e1").exists()


def test_core_import_does_not_load_diffusers_pipelines() -> None:
    """``rdmd.RDMDPipeline`` is resolved on first use (the tests above use it)."""
    import os
    import subprocess
    import sys

    code = "import sys, rdmd; assert 'diffusers.pipelines' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True,
                   env={**os.environ, "OMP_NUM_THREADS": "1"})


# -- 4. a trained DDPM through the wrapper samples as well as through its own pipeline ---------

@pytest.mark.slow
def test_trained_ddpm_heun_through_wrapper_matches_its_own_pipeline(tmp_path: Path) -> None:
    """A tiny DDPM trained here (400 steps, diffusers' own linear schedule and add_noise) on
    8x8 digits. Frechet distance over pixel statistics (64-d) to held-out digits: EDM Heun
    (18 steps, 35 evaluations) through the wrapper against DDPMPipeline's 50 ancestral steps.

    Measured (docs/diffusers.md): Heun 1.07, DDPM-50 0.88, noise floor (training digits vs
    held-out) 0.51; more Heun steps (32) did not help (1.10), nor did levels snapped to the
    scheduler's integer timesteps (1.07), so the gap is the deterministic ODE against the
    stochastic sampler on an imperfect network, not the wrapper. EDM's stochastic Heun
    (S_churn 5, same 18 steps and 35 evaluations) closes it: 0.79 (mean of 3 sampling seeds
    0.76 against DDPM-50's 0.94; every seed below every DDPM-50 seed,
    experiments/results/diffusers_churn.json). Wrong changes of variables on the same
    network: no input scaling 4.2, timestep linear in sigma instead of log sigma 7.6.
    """
    sys.path.insert(0, str(Path(__file__).parents[1] / "experiments"))
    from diffusers_churn import digits, train_ddpm  # the one recipe, shared with the experiment

    from rdmd.metrics.image import frechet_distance
    from rdmd.sampler import sample

    train_ddpm(tmp_path / "ddpm")
    train, test = digits()
    pipe = DDPMPipeline.from_pretrained(tmp_path / "ddpm")
    pipe.set_progress_bar_config(disable=True)
    n = 500
    with torch.no_grad():
        ims = pipe(batch_size=n, num_inference_steps=50, output_type="np",
                   generator=torch.Generator().manual_seed(1)).images
    ddpm = torch.from_numpy(ims).permute(0, 3, 1, 2) * 2 - 1
    den = load_model(tmp_path / "ddpm").denoiser
    heun = sample(den, (n, 1, 8, 8), n_steps=18, generator=torch.Generator().manual_seed(1),
                  sigma_max=80.0).clamp(-1, 1)
    churn = sample(den, (n, 1, 8, 8), n_steps=18, generator=torch.Generator().manual_seed(1),
                   sigma_max=80.0, churn=5.0).clamp(-1, 1)

    def fd(a: torch.Tensor) -> float:
        return frechet_distance(a.reshape(len(a), -1).double().numpy(),
                                test.reshape(len(test), -1).double().numpy())

    fd_heun, fd_churn, fd_ddpm, floor = fd(heun), fd(churn), fd(ddpm), fd(train[:n])
    print(f"FD heun {fd_heun:.3f}, heun churn 5 {fd_churn:.3f}, ddpm-50 {fd_ddpm:.3f}, "
          f"floor {floor:.3f}")
    # the stochastic sampler is as close to the data as the pipeline, with fewer evaluations
    assert fd_churn < fd_ddpm
    # the deterministic one stays near it (the ODE's gap, documented)
    assert fd_heun < 1.5 * fd_ddpm
    assert fd_heun < 3 * floor


@pytest.mark.parametrize("pred", ["v_prediction", "sample"])
def test_pipeline_constants_reproduce_vp_generators(tmp_path: Path, pred: str) -> None:
    """The four exported numbers give the VP generator's function for every prediction type
    (the distil-then-export round trip above covers epsilon)."""
    from rdmd.interop.pipeline import RDMDPipeline, generator_constants
    from rdmd.methods.rdmd import OneStepGenerator
    from rdmd.models import Model

    unet, _ = save_pipeline(tmp_path / "pipe", pred)
    teacher = load_model(tmp_path / "pipe")
    gen = Model(OneStepGenerator(teacher.denoiser, 0.8),
                {**teacher.meta, "role": "generator", "lam": 0.3, "sigma_g": 0.8})
    _, consts = generator_constants(gen)
    assert consts["preconditioning"] == f"vp_{pred}" and consts["lam"] == 0.3
    x = torch.rand(5, 1, 8, 8, generator=torch.Generator().manual_seed(0)) * 2 - 1
    pipe = RDMDPipeline(unet=unet, **consts)
    pipe.save_pretrained(tmp_path / "exp")
    out = RDMDPipeline.from_pretrained(tmp_path / "exp")(x, output_type="pt").images
    with torch.no_grad():
        ref = gen.net(x).clamp(-1, 1)
    assert torch.allclose(out, ref, atol=1e-5)


# -- 5. a lambda-conditioned generator out in the diffusers format ------------------------------

def _pil_dir(ims: list[Image.Image], d: Path) -> Path:
    d.mkdir(parents=True)
    for i, im in enumerate(ims):
        im.save(d / f"{i}.png")
    return d


def _read_pngs(d: Path, n: int) -> list[Image.Image]:
    return [Image.open(d / f"{i}.png") for i in range(n)]


def test_export_of_lambda_conditioned_generator_round_trips(tmp_path: Path) -> None:
    """A tiny conditioned run (rdmd_lam on rdmd's UNet): its UNet loads in plain diffusers,
    its lambda embedding travels as a safetensors component, and the pipeline at any lambda
    of the range gives ``rdmd translate --lam``'s images; lam missing or outside is refused."""
    from rdmd.interop.pipeline import LamEmbedding, PipelineInputError

    teacher = rdmd.train_teacher("digits:class=7", tmp_path / "t", progress=False, steps=2,
                                 batch_size=8, sample_steps=2, warmup_steps=1, n_test=16,
                                 backbone="unet:tiny8", device="cpu", precision="fp32")
    # a large generator rate so that a few steps move the zero-initialised lambda embedding
    # far enough for a wrong code or embedding to show in the images
    gen = rdmd.distill("digits:class=1", teacher, tmp_path / "g", progress=False, steps=4,
                       batch_size=8, n_test=16, sigma_g=0.7, lam_range=(0.05, 1.0),
                       lr_generator=0.1, device="cpu", precision="fp32")
    exp = tmp_path / "exp"
    rc, _, err = run_cli(["export", "--model", str(gen), "--out", str(exp)])
    assert rc == 0, err
    files = sorted(p.relative_to(exp).as_posix() for p in exp.rglob("*") if p.is_file())
    assert files == ["lam_embedding/config.json",
                     "lam_embedding/diffusion_pytorch_model.safetensors", "model_index.json",
                     "unet/config.json", "unet/diffusion_pytorch_model.safetensors"]
    idx = json.loads((exp / "model_index.json").read_text())
    assert idx["lam_range"] == [0.05, 1.0] and idx["lam"] is None and idx["lam_shift"] == 0
    assert idx["lam_embedding"] == ["rdmd.interop.pipeline", "LamEmbedding"]
    model = load_model(gen)
    plain = UNet2DModel.from_pretrained(exp, subfolder="unet")
    assert plain.config.class_embed_type == "identity"
    for p, q in zip(plain.parameters(), model.denoiser.backbone.unet.parameters(), strict=True):
        assert torch.equal(p, q)
    emb = LamEmbedding.from_pretrained(exp, subfolder="lam_embedding")
    for p, q in zip(emb.embed.parameters(), model.denoiser.backbone.c_enc.parameters(),
                    strict=True):
        assert torch.equal(p, q)

    pipe = rdmd.RDMDPipeline.from_pretrained(exp)
    ims = _pil_inputs()
    x = torch.rand(6, 1, 8, 8, generator=torch.Generator().manual_seed(0)) * 2 - 1
    outs, pils = {}, {}
    for lam in (0.05, 0.3):
        # the CLI's images, written as PNGs, against the pipeline's PIL images
        inp = _pil_dir(ims, tmp_path / f"in{lam}")
        rc, _, err = run_cli(["translate", "--model", str(gen), "--lam", str(lam), "--input",
                              str(inp), "--output", str(tmp_path / f"out{lam}"),
                              "--precision", "fp32"])
        assert rc == 0, err
        pils[lam] = pipe(ims, lam=lam).images
        assert _max_diff(pils[lam], _read_pngs(tmp_path / f"out{lam}", len(ims))) <= 1
        # and the tensors, to float precision
        outs[lam] = pipe(x, lam=lam, output_type="pt").images
        ref = rdmd.translate(gen, x, lam=lam, precision="fp32")
        assert torch.allclose(outs[lam], ref.clamp(-1, 1), atol=1e-5)
    # lambda reaches the images: the two lambdas differ by far more than either tolerance
    assert float((outs[0.05] - outs[0.3]).abs().max()) > 1e-2
    assert _max_diff(pils[0.05], pils[0.3]) > 2

    # half precision (as on a GPU): the embedding follows the pipeline's dtype; the output
    # moves by rounding only, far less than one lambda step moves it
    half = rdmd.RDMDPipeline.from_pretrained(exp).to(torch.bfloat16)
    gap = float((half(x, lam=0.3, output_type="pt").images - outs[0.3]).abs().max())
    print(f"bf16 vs float32: {gap:.4f}; lambda 0.05 vs 0.3: "
          f"{float((outs[0.05] - outs[0.3]).abs().max()):.4f}")
    assert gap < 0.25 * float((outs[0.05] - outs[0.3]).abs().max())

    for lam, msg in ((None, "lambda-conditioned: pass lam"), (2.0, "outside"),
                     (0.01, "outside")):
        with pytest.raises(PipelineInputError, match=msg) as e:
            pipe(ims, lam=lam)
        assert "\n" not in str(e.value) and isinstance(e.value, ValueError | RdmdError)


def test_pipeline_needs_range_and_embedding_together_and_reads_old_fixed_exports(
        tmp_path: Path) -> None:
    """A conditioned pipeline without its embedding (or the reverse) is refused; a fixed
    export written before conditioned exports existed (no lam_embedding/lam_shift keys)
    loads and behaves as before."""
    from rdmd.interop.pipeline import LamEmbedding, PipelineInputError, RDMDPipeline

    unet = tiny_unet()
    with pytest.raises(PipelineInputError, match="needs both"):
        RDMDPipeline(unet=unet, lam_range=[0.1, 1.0])
    with pytest.raises(PipelineInputError, match="needs both"):
        RDMDPipeline(unet=unet, lam_embedding=LamEmbedding(out_dim=64))
    RDMDPipeline(unet=unet, lam=0.1).save_pretrained(tmp_path / "fixed")
    idx_path = tmp_path / "fixed" / "model_index.json"
    idx = json.loads(idx_path.read_text())
    assert idx["lam_embedding"] == [None, None]
    del idx["lam_embedding"], idx["lam_shift"]
    idx_path.write_text(json.dumps(idx))
    pipe = RDMDPipeline.from_pretrained(tmp_path / "fixed")
    assert pipe.lam_embedding is None and pipe.config.lam_range is None
    x = torch.rand(2, 1, 8, 8, generator=torch.Generator().manual_seed(0)) * 2 - 1
    with torch.no_grad():
        ref = (x + unet(x, torch.zeros(1)).sample).clamp(-1, 1)
    assert torch.allclose(pipe(x, lam=0.1, output_type="pt").images, ref, atol=1e-6)
    with pytest.raises(ValueError, match="lambda=0.1 only"):
        pipe(x, lam=0.5)


def test_shipped_conditioned_generator_exports_and_round_trips(tmp_path: Path) -> None:
    """The shipped colored-MNIST lambda-conditioned generator, exported: its pipeline equals
    ``rdmd.translate`` at both ends and the middle of its range (a few seconds)."""
    shipped = Path(rdmd.__file__).parent / "pretrained" / "cmnist" / "rdmd_cond"
    rc, _, err = run_cli(["export", "--model", str(shipped), "--out", str(tmp_path / "exp")])
    assert rc == 0, err
    pipe = rdmd.RDMDPipeline.from_pretrained(tmp_path / "exp")
    lo, hi = pipe.config.lam_range
    assert [lo, hi] == list(load_model(shipped).lam_range)
    rng = np.random.default_rng(0)
    ims = [Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8), "RGB")
           for _ in range(4)]
    for lam in (lo, math.sqrt(lo * hi), hi):
        ref = rdmd.translate(shipped, ims, lam=lam, precision="fp32")  # the pipeline's dtype
        assert _max_diff(pipe(ims, lam=lam).images, ref) <= 1

"""Does EDM's stochastic sampler close the Heun-vs-DDPM gap on a diffusers teacher? (issue 16)

The slow test ``test_trained_ddpm_heun_through_wrapper_matches_its_own_pipeline`` trains a
tiny DDPM on 8x8 digits and finds deterministic Heun through the VP -> EDM wrapper (FD 1.07)
behind the network's own ``DDPMPipeline`` with 50 ancestral steps (0.88). This trains the same
network (the test's recipe and seeds, repeated here) once, then measures the Frechet distance
over pixel statistics to the held-out digits, for every sampler below and several sampling
seeds (the spread across seeds is the test's sampling noise):

* deterministic Heun, 18 and 25 steps (35 and 49 evaluations);
* EDM's stochastic Heun (Alg. 2), ``S_churn`` in ``--churns``, same step counts (same NFE);
* ``DDPMPipeline``, 50 ancestral steps; the floor (training digits against held-out);
* Heun on sigmas snapped to the scheduler's own discrete levels (the 18-step rho schedule
  rounded to the nearest integer timestep, and DDPM-50's 50 timesteps): if the wrapper's
  fractional timesteps were the cause, these would do better.

    python experiments/diffusers_churn.py --out experiments/results/diffusers_churn.json

The trained folder is kept in ``--work`` (default ``runs/diffusers_churn``) and reused.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import time
from pathlib import Path
from typing import Any

import torch

from rdmd.sampler import Churn, karras_sigmas, sample

N_SAMPLES = 500


def digits() -> tuple[torch.Tensor, torch.Tensor]:
    """(train, held-out) 8x8 digits in [-1, 1], split as in the slow test."""
    from sklearn.datasets import load_digits

    torch.manual_seed(0)
    x = torch.tensor(load_digits().images, dtype=torch.float32)[:, None] / 8 - 1
    perm = torch.randperm(len(x))
    return x[perm[:1200]], x[perm[1200:]]


def train_ddpm(out: Path) -> None:
    """The slow test's recipe: 400 Adam steps, cosine lr, diffusers' linear schedule."""
    from diffusers import DDPMPipeline, DDPMScheduler, UNet2DModel

    train, _ = digits()  # re-seeds torch with 0 first, as the test does
    unet = UNet2DModel(sample_size=8, in_channels=1, out_channels=1, layers_per_block=1,
                       block_out_channels=(32, 64), down_block_types=("DownBlock2D",) * 2,
                       up_block_types=("UpBlock2D",) * 2, norm_num_groups=8,
                       add_attention=False)
    sched = DDPMScheduler(num_train_timesteps=1000)
    opt = torch.optim.Adam(unet.parameters(), lr=2e-3)
    steps, gen = 400, torch.Generator().manual_seed(0)
    for i in range(steps):
        b = train[torch.randint(0, len(train), (128,), generator=gen)]
        noise = torch.randn(b.shape, generator=gen)
        t = torch.randint(0, 1000, (128,), generator=gen)
        loss = ((unet(sched.add_noise(b, noise, t), t).sample - noise) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        for pg in opt.param_groups:
            pg["lr"] = 2e-3 * 0.5 * (1 + math.cos(math.pi * (i + 1) / steps))
    unet.eval()
    DDPMPipeline(unet=unet, scheduler=sched).save_pretrained(out)


def snapped(sigmas: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
    """Each nonzero level replaced by the nearest (in log) of the scheduler's own levels,
    duplicates dropped, then 0."""
    ls, lt = sigmas[:-1].log(), table.log()
    idx = (ls[:, None] - lt[None, :]).abs().argmin(dim=1).unique_consecutive()
    return torch.cat([table[idx], torch.zeros(1, dtype=table.dtype)])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, default=Path("runs/diffusers_churn"))
    ap.add_argument("--out", type=Path, default=Path("experiments/results/diffusers_churn.json"))
    ap.add_argument("--seeds", default="1,2,3", help="sampling seeds (1 is the slow test's)")
    ap.add_argument("--churns", default="1,3,5,10,40,80")
    ap.add_argument("--steps", default="18,25")
    ap.add_argument("--parts", default="heun,churn,ddpm,snap,edm_vp")
    args = ap.parse_args()
    torch.set_num_threads(1)
    from diffusers import DDPMPipeline

    from rdmd.metrics.image import frechet_distance
    from rdmd.models import load_model

    folder = args.work / "ddpm"
    if not (folder / "unet" / "diffusion_pytorch_model.safetensors").is_file():
        t0 = time.time()
        train_ddpm(folder)
        print(f"trained in {time.time() - t0:.0f} s", flush=True)
    train, test = digits()
    ref = test.reshape(len(test), -1).double().numpy()

    def fd(a: torch.Tensor) -> float:
        return frechet_distance(a.reshape(len(a), -1).double().numpy(), ref)

    seeds = [int(s) for s in args.seeds.split(",")]
    parts = set(args.parts.split(","))
    den = load_model(folder).denoiser
    table = den.log_sigmas.exp()  # the scheduler's sigma_t, t = 0..T-1
    rows: list[dict[str, Any]] = []

    def record(name: str, nfe: int, fds: list[float], **extra: Any) -> None:
        row = {"sampler": name, "nfe": nfe, "fd": fds, "mean": statistics.fmean(fds),
               "sd": statistics.stdev(fds) if len(fds) > 1 else None, **extra}
        rows.append(row)
        print(f"{name:40s} nfe {nfe:3d}  FD " + " ".join(f"{v:.3f}" for v in fds)
              + f"  mean {row['mean']:.3f}", flush=True)
        write(args.out, rows, seeds)

    def heun(sigmas: torch.Tensor, churn: Churn | None, seed: int) -> torch.Tensor:
        g = torch.Generator().manual_seed(seed)
        return sample(den, (N_SAMPLES, 1, 8, 8), generator=g, sigmas=sigmas,
                      churn=churn).clamp(-1, 1)

    record("floor: training digits", 0, [fd(train[:N_SAMPLES]), fd(train[N_SAMPLES:1000])],
           note="train[:500] and train[500:1000] against held-out")
    steps = [int(s) for s in args.steps.split(",")]
    settings: list[tuple[str, Churn | None]] = []
    if "heun" in parts:
        settings.append(("heun", None))
    if "churn" in parts:
        settings += [(f"heun churn {c}", Churn(float(c))) for c in args.churns.split(",")]
    if "edm_vp" in parts:  # EDM Table 5's CIFAR-10 VP settings
        settings.append(("heun churn 30 [0.01,1] s_noise 1.007",
                         Churn(30.0, s_tmin=0.01, s_tmax=1.0, s_noise=1.007)))
    for n in steps:
        sig = karras_sigmas(n, sigma_max=80.0)
        for name, ch in settings:
            record(f"{name}, {n} steps", 2 * n - 1, [fd(heun(sig, ch, s)) for s in seeds],
                   churn=None if ch is None else vars(ch) | {"s_tmax": str(ch.s_tmax)})
    if "ddpm" in parts:
        pipe = DDPMPipeline.from_pretrained(folder)
        pipe.set_progress_bar_config(disable=True)
        fds = []
        for s in seeds:
            with torch.no_grad():
                ims = pipe(batch_size=N_SAMPLES, num_inference_steps=50, output_type="np",
                           generator=torch.Generator().manual_seed(s)).images
            fds.append(fd(torch.from_numpy(ims).permute(0, 3, 1, 2) * 2 - 1))
        record("DDPMPipeline, 50 ancestral steps", 50, fds)
    if "snap" in parts:
        sig = snapped(karras_sigmas(18, sigma_max=80.0), table)
        record("heun, 18 steps snapped to integer t", 2 * (len(sig) - 1) - 1,
               [fd(heun(sig, None, s)) for s in seeds], sigmas=sig.tolist())
        from diffusers import DDPMScheduler

        sch = DDPMScheduler.from_pretrained(folder, subfolder="scheduler")
        sch.set_timesteps(50)
        sig = torch.cat([table[sch.timesteps.long()], torch.zeros(1, dtype=table.dtype)])
        record("heun on DDPM-50's timesteps", 2 * 50 - 1,
               [fd(heun(sig, None, s)) for s in seeds], sigmas=sig.tolist())
        record("heun churn 40 on DDPM-50's timesteps", 2 * 50 - 1,
               [fd(heun(sig, Churn(40.0), s)) for s in seeds], sigmas=sig.tolist())


def write(out: Path, rows: list[dict[str, Any]], seeds: list[int]) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"what": "FD (pixel statistics, 64-d) to 597 held-out 8x8 "
                               "digits, 500 samples per seed", "seeds": seeds,
                               "torch_threads": torch.get_num_threads(), "rows": rows},
                              indent=1) + "\n")


if __name__ == "__main__":
    main()

"""Throughput and memory of the Cat -> Wild 64x64 RDMD step (configs/cat2wild_rdmd.toml) on
random data of that shape: three ``unet:edm64`` networks (teacher, generator, fake score).

    # one GPU, 128 images per step (the per-GPU share of the paper's 512 on 4 GPUs)
    python bench/cat2wild_throughput.py --device cuda --batch 128 --iters 300
    # four GPUs, global batch 512 (each process steps 128 images; gradients averaged by DDP)
    torchrun --standalone --nproc_per_node 4 bench/cat2wild_throughput.py --device cuda \\
        --batch 128 --iters 300
    # CPU smoke check (tiny batch, a few iterations; says nothing about GPU speed)
    python bench/cat2wild_throughput.py --device cpu --batch 2 --iters 3 --warmup 1

Reports iterations/s and images/s (all processes together), the parameter count, and on CUDA
the peak memory per GPU. ``--activations`` also counts, on any device, the bytes each network
keeps for its backward pass (saved-tensor hooks), per image: the activation term of the
per-GPU memory estimate in docs/scaling.md.

The step is the training step itself (``RDMD.train_step``, Adam, bf16 autocast, optional bf16
teacher, DDP under torchrun), on random inputs, without data loading.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import report  # noqa: E402

from rdmd import distributed  # noqa: E402
from rdmd.edm import EDMLoss, LogNormalSigma, LogUniformSigma  # noqa: E402
from rdmd.methods import RDMD  # noqa: E402
from rdmd.models import build_denoiser  # noqa: E402
from rdmd.training.runtime import autocast, hold_in_bf16  # noqa: E402
from rdmd.training.runtime import sharded as _sharded  # noqa: E402

SPEC = {"name": "unet", "channels": 3, "size": 64, "preset": "edm64"}


def count_saved_bytes(fn: object) -> int:
    """Bytes of the tensors autograd saves for backward while ``fn()`` runs."""
    total = 0
    seen: set[int] = set()

    def pack(t: torch.Tensor) -> torch.Tensor:
        nonlocal total
        key = t.untyped_storage().data_ptr()
        if key not in seen:  # count shared storages once
            seen.add(key)
            total += t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn()  # type: ignore[operator]
    return total


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--batch", type=int, default=128, help="images per process per step")
    ap.add_argument("--iters", type=int, default=300)
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--precision", default="bf16", choices=["fp32", "bf16"])
    ap.add_argument("--teacher-dtype", default="bf16", choices=["fp32", "bf16"])
    ap.add_argument("--activations", action="store_true",
                    help="count the bytes saved for backward per image (any device)")
    ap.add_argument("--json", help="write the result here")
    args = ap.parse_args()

    d = distributed.setup(args.device)
    device = torch.device(distributed.local_device(args.device, d))
    torch.manual_seed(0)
    teacher = build_denoiser(SPEC, 0.5).to(device)
    n_params = sum(p.numel() for p in teacher.parameters())
    method = RDMD.from_teacher(teacher, 0.05, 1.0, dm_sigma=LogUniformSigma(0.02, 80.0),
                               fake_loss=EDMLoss(LogNormalSigma()))
    if args.teacher_dtype == "bf16":
        hold_in_bf16(method.teacher)
    gen = method.generator
    method.with_optimizers(5e-5, 3e-4)
    method.wrap(lambda m: distributed.wrap(m, d, device))
    rng = torch.Generator().manual_seed(0)
    x = torch.rand(args.batch, 3, 64, 64, generator=rng).mul(2).sub(1).to(device)

    def step() -> None:
        with autocast(device, args.precision), _sharded(rng, d, args.batch):
            method.train_step(x, rng)

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    result: dict[str, object] = {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "processes": d.world, "batch_per_process": args.batch,
        "global_batch": args.batch * d.world, "precision": args.precision,
        "teacher_dtype": args.teacher_dtype, "params_per_network": n_params,
        "torch": torch.__version__, "threads": torch.get_num_threads()}
    if args.activations:
        # at b and 2b images: the slope is the per-image activation memory, the intercept what
        # does not grow with the batch (autocast's bf16 copies of the weights)
        for name in ("gen", "fake"):
            saved = []
            for b in (args.batch, 2 * args.batch):
                xb = x[:1].expand(b, -1, -1, -1).contiguous()
                with autocast(device, args.precision):
                    if name == "gen":
                        saved.append(count_saved_bytes(
                            lambda xb=xb: method.generator_loss(xb, rng)))
                    else:
                        with torch.no_grad():
                            yb = gen(xb)
                        saved.append(count_saved_bytes(lambda yb=yb: method.fake_loss(yb, rng)))
            per_image = (saved[1] - saved[0]) / args.batch
            result[f"{name}_saved_mib_per_image"] = round(per_image / 2**20, 2)
            result[f"{name}_saved_mib_fixed"] = round((saved[0] - per_image * args.batch)
                                                      / 2**20, 1)
    for _ in range(args.warmup):
        step()
    sync()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    t0 = time.perf_counter()
    for _ in range(args.iters):
        step()
    sync()
    dt = time.perf_counter() - t0
    result.update({"iters": args.iters, "seconds": round(dt, 3),
                   "it_per_s": round(args.iters / dt, 4),
                   "img_per_s": round(args.iters * args.batch * d.world / dt, 2)})
    if device.type == "cuda":
        result["peak_mem_gib_per_gpu"] = round(torch.cuda.max_memory_allocated(device) / 2**30,
                                               2)
    if d.main:
        report(result, args.json)
    distributed.shutdown()


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    main()

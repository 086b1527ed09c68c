"""Which precision a network runs in when the user does not say: the faster one on this
hardware.

bf16 autocast pays only where the hardware computes in bf16: on a CUDA GPU that supports it,
and on CPUs with AVX512-BF16 or AMX (about 2x faster image steps than fp32, same held-out
loss: ``bench/bf16_speedup.py``, ``bench/bf16_quality.py``). On a CPU without them (AVX2
only) the same bf16 step is emulated and was measured 14x *slower* than fp32, so there the
default is fp32. Vectors always default to fp32 (their small networks gain nothing).
"""

from __future__ import annotations

import torch


def cpu_bf16_native() -> bool:
    """The CPU has bf16 arithmetic (AVX512-BF16 or AMX tiles), which oneDNN uses."""
    cpu = torch.cpu
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(bool(getattr(cpu, name, lambda: False)()) for name in checks)


def bf16_native(device: torch.device | str) -> bool:
    """bf16 autocast is fast on ``device``."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    return device.type == "cpu" and cpu_bf16_native()


def default_precision(image: bool, device: torch.device | str) -> str:
    """``"bf16"`` for image networks where bf16 is native on ``device``, else ``"fp32"``."""
    return "bf16" if image and bf16_native(device) else "fp32"


def describe(device: torch.device | str) -> str:
    """What the default rests on, for a benchmark's record."""
    device = torch.device(device)
    if device.type == "cuda":
        return f"cuda {torch.cuda.get_device_name(device)}"
    return (f"cpu {torch.backends.cpu.get_cpu_capability()}, native bf16: "
            f"{cpu_bf16_native()}")

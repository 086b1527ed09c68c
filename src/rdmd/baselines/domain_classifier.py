"""EGSDE's realistic expert: a noise-conditioned classifier of source vs target images.

EGSDE (Zhao et al. 2022) fine-tunes an ImageNet-pretrained guided-diffusion encoder to tell
the two domains apart at every noise level, and uses its features as "domain-specific"
features. No pretrained weights can be downloaded here, so rdmd trains a small CNN from
scratch on both domains, each image noised to ``sigma`` drawn log-uniformly over the
sampler's range. The noise level enters through EDM's input scaling ``c_in`` and a learned
per-channel shift of every block (from ``c_noise = ln(sigma) / 4``).

Saved like every rdmd network: ``domain_classifier.safetensors`` + ``domain_classifier.json``.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm.auto import tqdm

from rdmd.checkpoint import atomic_save_tensors, atomic_write_json, load_tensors, read_json
from rdmd.errors import RdmdError

WEIGHTS = "domain_classifier.safetensors"
META = "domain_classifier.json"
FORMAT = "rdmd-domain-classifier-v1"
SIGMA_DATA = 0.5


class NoisyDomainClassifier(nn.Module):
    """Conv blocks (conv, +noise shift, SiLU, 2x pool) down to 4x4, global average pool,
    then a linear head; ``features`` is the pooled vector EGSDE compares."""

    def __init__(self, in_channels: int, size: int, width: int = 32, n_domains: int = 2
                 ) -> None:
        super().__init__()
        if size < 8 or size & (size - 1):
            raise ValueError(f"image size must be a power of two >= 8, got {size}")
        self.in_channels, self.size, self.width = in_channels, size, width
        n_blocks = int(math.log2(size // 4))
        chans = [in_channels] + [min(width * 2 ** i, 4 * width) for i in range(n_blocks)]
        self.convs = nn.ModuleList(nn.Conv2d(a, b, 3, padding=1)
                                   for a, b in zip(chans[:-1], chans[1:], strict=True))
        self.embed = nn.Sequential(nn.Linear(16, 64), nn.SiLU(),
                                   nn.Linear(64, sum(chans[1:])))
        self.register_buffer("freqs", torch.arange(1, 9, dtype=torch.float32) * math.pi / 2)
        self.out_dim = chans[-1]
        self.head = nn.Linear(self.out_dim, n_domains)

    def _noise_embedding(self, sigma: Tensor) -> Tensor:
        c = (sigma.log() / 4).reshape(-1, 1) * self.freqs
        return self.embed(torch.cat([c.sin(), c.cos()], dim=1))

    def features(self, y: Tensor, sigma: Tensor | float) -> Tensor:
        s = torch.as_tensor(sigma, dtype=y.dtype, device=y.device).expand(y.shape[0])
        h = y / (s**2 + SIGMA_DATA**2).sqrt().reshape(-1, 1, 1, 1)
        shifts = torch.split(self._noise_embedding(s), [c.out_channels for c in self.convs],
                             dim=1)
        for conv, shift in zip(self.convs, shifts, strict=True):
            h = F.avg_pool2d(F.silu(conv(h) + shift[:, :, None, None]), 2)
        return h.mean(dim=(2, 3))

    def forward(self, y: Tensor, sigma: Tensor | float) -> Tensor:
        return self.head(self.features(y, sigma))


def _log_uniform(n: int, lo: float, hi: float, gen: torch.Generator) -> Tensor:
    u = torch.rand(n, generator=gen)
    return (math.log(lo) + u * (math.log(hi) - math.log(lo))).exp()


@torch.no_grad()
def noisy_accuracy(net: NoisyDomainClassifier, source: Tensor, target: Tensor, sigma: float,
                   seed: int = 0) -> float:
    """Held-out accuracy with every image noised to ``sigma`` (chance is 0.5)."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.cat([source, target])
    y = torch.cat([torch.zeros(len(source)), torch.ones(len(target))]).long()
    noisy = x + sigma * torch.randn(x.shape, generator=gen)
    return float((net(noisy, sigma).argmax(1) == y).float().mean())


def train_domain_classifier(source: Tensor, target: Tensor, steps: int = 3000,
                            batch_size: int = 64, lr: float = 1e-3, seed: int = 0,
                            sigma_min: float = 0.01, sigma_max: float = 80.0,
                            width: int = 32, progress: bool = True) -> NoisyDomainClassifier:
    """Cross-entropy on balanced batches (half source = class 0, half target = class 1)."""
    if source.shape[1:] != target.shape[1:] or source.ndim != 4:
        raise RdmdError(f"source {tuple(source.shape[1:])} and target "
                        f"{tuple(target.shape[1:])} must be images of one shape")
    gen = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = NoisyDomainClassifier(source.shape[1], source.shape[-1], width)
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    half = max(batch_size // 2, 1)
    labels = torch.cat([torch.zeros(half), torch.ones(half)]).long()
    bar = tqdm(range(steps), desc="domain classifier", disable=not progress)
    avg = None
    for _ in bar:
        xb = torch.cat([source[torch.randint(len(source), (half,), generator=gen)],
                        target[torch.randint(len(target), (half,), generator=gen)]])
        sigma = _log_uniform(len(xb), sigma_min, sigma_max, gen)
        noisy = xb + sigma.reshape(-1, 1, 1, 1) * torch.randn(xb.shape, generator=gen)
        loss = F.cross_entropy(net(noisy, sigma), labels)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        val = float(loss.detach())
        avg = val if avg is None else 0.98 * avg + 0.02 * val
        bar.set_postfix(loss=f"{avg:.3f}")
    return net.eval()


def fit_and_save(source: Any, target: Any, directory: str | Path, steps: int = 1500,
                 batch_size: int = 64, lr: float = 1e-3, seed: int = 0,
                 progress: bool = True) -> dict[str, float]:
    """Train on two image ``Domain``s, score held-out accuracy at a few noise levels, save.

    The one recipe behind ``rdmd train-domain-classifier`` and the sweep's automatic
    training; returns the accuracies (also written into the saved JSON)."""
    net = train_domain_classifier(source.train, target.train, steps, batch_size, lr, seed,
                                  progress=progress)
    acc = {f"heldout_accuracy_sigma_{s:g}": noisy_accuracy(net, source.test, target.test, s)
           for s in (0.1, 0.5, 1.0, 2.0, 5.0)}
    save_domain_classifier(net, directory, {
        "source": source.name, "target": target.name, "steps": steps,
        "batch_size": batch_size, "lr": lr, "seed": seed, **acc})
    return acc


def save_domain_classifier(net: NoisyDomainClassifier, directory: str | Path,
                           meta: dict[str, Any]) -> Path:
    d = Path(directory)
    atomic_save_tensors(d / WEIGHTS, dict(net.state_dict()))
    atomic_write_json(d / META, {**meta, "format": FORMAT, "in_channels": net.in_channels,
                                 "size": net.size, "width": net.width})
    return d


def load_domain_classifier(directory: str | Path) -> tuple[NoisyDomainClassifier,
                                                           dict[str, Any]]:
    d = Path(directory)
    if not (d / META).is_file():
        raise RdmdError(f"{d} holds no domain classifier ({META} missing); train one with "
                        "`rdmd train-domain-classifier`")
    meta = read_json(d / META)
    if meta.get("format") != FORMAT:
        raise RdmdError(f"{d / META}: not an rdmd domain classifier")
    try:
        net = NoisyDomainClassifier(int(meta["in_channels"]), int(meta["size"]),
                                    int(meta["width"]))
        net.load_state_dict(load_tensors(d / WEIGHTS), strict=True)
    except (KeyError, TypeError, ValueError, RuntimeError) as e:
        raise RdmdError(f"{d}: domain classifier does not load ({e})") from None
    return net.eval().requires_grad_(False), meta

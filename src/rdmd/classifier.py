"""A small CNN classifier: the feature network of the project's Frechet distance.

The standard FID needs Inception weights that cannot be downloaded here, so image quality is
measured with a Frechet distance over the 128-d penultimate features of this network, trained
by the project on the target data set. That metric is NOT the FID and must never be called so:
its name is ``fd_<name>`` with ``name`` taken from the classifier's saved meta (e.g.
``fd_cnn_mnist``, see ``fd_metric_name``), and its values are only comparable between runs
that use the same saved classifier. The same network checks that translations land in the
target class (``target_accuracy``).

Images are ``(N, C, H, W)`` in [-1, 1], like everywhere else in rdmd. Weights are saved as
safetensors plus a JSON meta (no pickle), both written atomically.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm.auto import tqdm

from rdmd.checkpoint import atomic_save_tensors, atomic_write_json, load_tensors, read_json
from rdmd.errors import RdmdError
from rdmd.metrics.image import hsv_to_rgb, rgb_to_hsv

WEIGHTS = "classifier.safetensors"
META = "classifier.json"
FORMAT = "rdmd-classifier-v1"
FEATURE_DIM = 128


class SmallConvNet(nn.Module):
    """LeNet-like: conv 32 -> [pool while > 8 px] -> conv 64 -> pool -> conv 128 -> GAP -> linear.

    Extra pools after the first conv bring 32x32 inputs down to 8x8, so the last conv sees the
    same receptive field relative to the digit for 8x8 and 32x32 images; the global average
    pool makes the 128-d features independent of the input size.
    """

    def __init__(self, in_channels: int, n_classes: int, size: int) -> None:
        super().__init__()
        if in_channels < 1 or n_classes < 2 or size < 4:
            raise ValueError(f"bad classifier shape: in_channels={in_channels}, "
                             f"n_classes={n_classes}, size={size}")
        self.in_channels, self.n_classes, self.size = in_channels, n_classes, size
        n_pool, s = 0, size
        while s > 8:
            s //= 2
            n_pool += 1
        self.conv1 = nn.Conv2d(in_channels, 32, 3, padding=1)
        self.pre_pool = nn.Sequential(*[nn.MaxPool2d(2) for _ in range(n_pool)])
        self.conv2 = nn.Conv2d(32, 64, 3, padding=1)
        self.conv3 = nn.Conv2d(64, FEATURE_DIM, 3, padding=1)
        self.head = nn.Linear(FEATURE_DIM, n_classes)

    def features(self, x: Tensor) -> Tensor:
        """Penultimate 128-d features (after ReLU and global average pooling)."""
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"expected (N, {self.in_channels}, H, W) images, got "
                             f"{tuple(x.shape)}")
        h = self.pre_pool(F.relu(self.conv1(x)))
        h = F.max_pool2d(F.relu(self.conv2(h)), 2)
        h = F.relu(self.conv3(h))
        return h.mean(dim=(2, 3))

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x))


def fd_metric_name(meta: dict[str, Any]) -> str:
    """``fd_<name>``: the honest name of the Frechet distance over this classifier's features."""
    return f"fd_{meta.get('name', 'cnn')}"


def random_hue_rotation(x: Tensor, generator: torch.Generator) -> Tensor:
    """Rotate the hue of each RGB image by its own uniform random angle (exact, via HSV)."""
    shift = torch.rand(len(x), generator=generator, device=generator.device).to(x.device)
    hsv = rgb_to_hsv(((x.clamp(-1, 1) + 1) / 2).permute(0, 2, 3, 1))
    hsv = torch.stack([(hsv[..., 0] + shift[:, None, None].to(hsv.dtype)) % 1.0,
                       hsv[..., 1], hsv[..., 2]], dim=-1)
    return (hsv_to_rgb(hsv).permute(0, 3, 1, 2) * 2 - 1).to(x.dtype)


@torch.no_grad()
def accuracy(model: nn.Module, x: Tensor, y: Tensor, batch_size: int = 512) -> float:
    """Fraction of correct argmax predictions; evaluates in eval mode and restores the mode."""
    was_training = model.training
    model.eval()
    try:
        correct = sum(int((model(x[i:i + batch_size]).argmax(1) == y[i:i + batch_size]).sum())
                      for i in range(0, len(x), batch_size))
    finally:
        model.train(was_training)
    return correct / max(len(x), 1)


def train_classifier(train_x: Tensor, train_y: Tensor, test_x: Tensor, test_y: Tensor,
                     epochs: int, batch_size: int, lr: float, seed: int,
                     augment_hue: bool = False, progress: bool = True
                     ) -> tuple[SmallConvNet, dict[str, float]]:
    """Adam + cross-entropy; same seed, same data -> same weights (on the same device).

    Images in [-1, 1], square; labels ``0..K-1`` with ``K = max label + 1``. ``augment_hue``
    (RGB only) rotates each training image's hue at random, so that the features see digit
    shape rather than colour. Initialisation runs under a forked global RNG and the shuffling
    has its own generator, so training neither reads nor disturbs the caller's RNG state.
    """
    if train_x.ndim != 4 or train_x.shape[2] != train_x.shape[3]:
        raise ValueError(f"expected square (N, C, H, W) images, got {tuple(train_x.shape)}")
    if len(train_x) != len(train_y) or len(test_x) != len(test_y) or len(train_x) == 0:
        raise ValueError("images and labels differ in number, or no training data")
    if augment_hue and train_x.shape[1] != 3:
        raise ValueError("augment_hue needs 3-channel images")
    device = train_x.device
    train_y, test_y = train_y.long().to(device), test_y.long().to(test_x.device)
    n_classes = int(max(int(train_y.max()), int(test_y.max()) if len(test_y) else 0)) + 1
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = SmallConvNet(train_x.shape[1], max(n_classes, 2), train_x.shape[2]).to(device)
    gen = torch.Generator(device="cpu").manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    loss_avg = float("nan")
    bar = tqdm(range(epochs), desc="classifier", disable=not progress)
    for _ in bar:
        perm = torch.randperm(len(train_x), generator=gen).to(device)
        total, count = 0.0, 0
        for i in range(0, len(perm), batch_size):
            idx = perm[i:i + batch_size]
            xb = train_x[idx]
            if augment_hue:
                xb = random_hue_rotation(xb, gen)
            loss = F.cross_entropy(model(xb), train_y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(idx)
            count += len(idx)
        loss_avg = total / count
        bar.set_postfix(loss=f"{loss_avg:.4f}")
    model.eval()
    test_acc = accuracy(model, test_x.to(device), test_y.to(device)) if len(test_x) else float(
        "nan")
    return model, {"test_accuracy": float(test_acc), "train_loss": float(loss_avg)}


def folders_meta(folders: list[str], doms: list[Any], name: str | None = None
                 ) -> dict[str, Any]:
    """The saved description of a classifier of folders: its metric name ``cnn_<name>``
    (default: the folder names), each class's folder and what the folder policy did."""
    import re

    if name is None:
        name = "_".join(Path(f).expanduser().resolve().name for f in folders)
    name = re.sub(r"[^A-Za-z0-9_-]+", "-", name).strip("-") or "folders"
    return {"name": f"cnn_{name}", "data": "folders",
            "classes": [str(Path(f).expanduser().resolve()) for f in folders],
            "policy": [d.info.get("policy") for d in doms]}


def save_classifier(model: SmallConvNet, directory: str | Path,
                    meta: dict[str, Any] | None = None) -> Path:
    """Write ``classifier.safetensors`` then ``classifier.json`` (the JSON marks completion).

    ``meta`` is any JSON-ready dict; its ``name`` (default ``cnn``) names the metric
    ``fd_<name>``. The architecture fields are added so that ``load_classifier`` can rebuild it.
    """
    d = Path(directory)
    atomic_save_tensors(d / WEIGHTS, dict(model.state_dict()))
    full = {**(meta or {}), "format": FORMAT, "in_channels": model.in_channels,
            "n_classes": model.n_classes, "size": model.size}
    full.setdefault("name", "cnn")
    atomic_write_json(d / META, full)
    return d


def load_classifier(directory: str | Path) -> tuple[SmallConvNet, dict[str, Any]]:
    """Rebuild a saved classifier in eval mode on the CPU; ``RdmdError`` if missing or broken."""
    d = Path(directory)
    meta = read_json(d / META)
    if meta.get("format") != FORMAT:
        raise RdmdError(f"{d / META}: not an rdmd classifier (format {meta.get('format')!r})")
    try:
        model = SmallConvNet(int(meta["in_channels"]), int(meta["n_classes"]), int(meta["size"]))
    except (KeyError, TypeError, ValueError) as e:
        raise RdmdError(f"{d / META}: bad architecture fields ({e})") from None
    tensors = load_tensors(d / WEIGHTS)
    try:
        model.load_state_dict(tensors, strict=True)
    except RuntimeError as e:
        raise RdmdError(f"{d / WEIGHTS}: weights do not fit the architecture ({e})") from None
    model.eval()
    return model, meta

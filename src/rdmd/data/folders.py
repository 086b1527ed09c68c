"""Your own image folders: one policy, from the data, applied the same way by every command.

A folder holds whatever a user's folder holds: images of several sizes, a few colour images
among grey ones, formats other than PNG. rdmd resolves **one image shape** for a run from its
target folder and applies it to every folder it later reads (the source, held-out targets,
``translate`` inputs, ``evaluate`` folders, the sweep), so what the teacher accepted,
distillation accepts. Nothing is converted silently: every conversion is counted, and the
count is printed and stored with the data (``Domain.info["policy"]``, hence ``model.json``).

The policy (:func:`resolve_shape`, :func:`prepare_pil`):

* **Which files.** Every file whose suffix is one Pillow can open (PNG, JPEG, WebP, BMP,
  TIFF, GIF, ... : :func:`readable_suffixes`); a GIF or multi-page TIFF gives its first frame.
  Hidden files are skipped, and so are subfolders unless ``recursive``. Every skipped file is
  counted by reason. A file with an image suffix that Pillow cannot decode is an error naming
  it (a truncated download should not vanish from the data).
* **Channels.** ``1`` (grey) when most images are grey (modes ``1``, ``L``, ``LA``, ``I``,
  ``I;16``, ``F``, or a palette of greys), else ``3`` (RGB), unless set. An image of the
  other kind is converted (``converted from RGB``: Pillow's ITU-R 601 luma; ``converted from
  grey``: the grey value in all three channels); an alpha channel is dropped.
* **Size.** The most common shorter side (ties: the larger), at most :data:`AUTO_MAX_SIZE`
  (64, the paper's Cat -> Wild size; set ``image_size`` for more), unless set. Each image's
  shorter side is resized to it (bicubic) and the centre square cropped, so nothing is
  stretched. Upscaling invents detail: an image that would be upscaled more than
  :data:`MAX_UPSCALE` times is refused, with the folder, the count and an example file.
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from rdmd.data.domain import Domain
from rdmd.errors import RdmdError

SPLIT_SEED = 0
TEST_FRACTION = 0.2
AUTO_MAX_SIZE = 64
MAX_UPSCALE = 2.0
GREY_MODES = ("1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F")
DECODE_ERRORS = (UnidentifiedImageError, OSError, SyntaxError, ValueError,
                 Image.DecompressionBombError)

SKIP_HIDDEN = "hidden"
SKIP_FORMAT = "not an image format Pillow reads"
SKIP_SUBFOLDER = "in subfolders (pass --recursive)"


def split_indices(n: int, test_fraction: float = TEST_FRACTION,
                  seed: int = SPLIT_SEED) -> tuple[np.ndarray, np.ndarray]:
    """Fixed permutation, last ``test_fraction`` held out (at least one on each side)."""
    perm = np.random.default_rng(seed).permutation(n)
    n_test = min(n - 1, max(1, int(round(test_fraction * n))))
    return perm[:-n_test], perm[-n_test:]


def readable_suffixes() -> frozenset[str]:
    """Lower-case suffixes of every format this Pillow can open (not the write-only ones)."""
    Image.init()
    return frozenset(ext.lower() for ext, fmt in Image.registered_extensions().items()
                     if fmt in Image.OPEN)


def check_channels(channels: Any) -> int:
    if channels not in (1, 3) or isinstance(channels, bool):
        raise RdmdError(f"channels must be 1 (grey) or 3 (RGB), got {channels!r}")
    return int(channels)


def check_size(size: Any) -> int:
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise RdmdError(f"image size must be a positive integer, got {size!r}")
    return size


# -- listing ------------------------------------------------------------------------------------

@dataclass
class Listing:
    """The images of a folder (sorted by path relative to it) and what was skipped, by reason."""

    root: Path
    files: list[Path]
    skipped: Counter[str] = field(default_factory=Counter)

    def names(self) -> list[str]:
        """Paths relative to the root, with ``/``: the names outputs are written under."""
        return [f.relative_to(self.root).as_posix() for f in self.files]

    def skipped_text(self) -> str:
        """``skipped 3 files (2 not an image format Pillow reads, 1 hidden)``, or ``""``."""
        n = sum(self.skipped.values())
        if not n:
            return ""
        parts = ", ".join(f"{k} {reason}" for reason, k in sorted(self.skipped.items()))
        return f"skipped {n} file{'s' if n != 1 else ''} ({parts})"


def scan_folder(folder: str | Path, recursive: bool = False) -> Listing:
    """Every image file in ``folder`` (see the module docstring); errors if missing or empty."""
    root = Path(folder).expanduser()
    if not root.is_dir():
        raise RdmdError(f"image folder not found: {root}")
    suffixes = readable_suffixes()
    files: list[Path] = []
    skipped: Counter[str] = Counter()
    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(dirpath)
        for d in list(dirnames):
            if d.startswith("."):
                dirnames.remove(d)
                skipped[SKIP_HIDDEN] += sum(len(f) for _, _, f in os.walk(here / d))
            elif not recursive:
                dirnames.remove(d)
                skipped[SKIP_SUBFOLDER] += sum(len(f) for _, _, f in os.walk(here / d))
        for name in filenames:
            p = here / name
            if name.startswith("."):
                skipped[SKIP_HIDDEN] += 1
            elif p.suffix.lower() not in suffixes or not p.is_file():
                skipped[SKIP_FORMAT] += 1
            else:
                files.append(p)
    files.sort(key=lambda f: f.relative_to(root).as_posix())
    listing = Listing(root, files, skipped)
    if not files:
        extra = f"; {listing.skipped_text()}" if skipped else ""
        raise RdmdError(f"no images (.png, .jpg, .webp, .bmp, .tif, .gif, ...) in folder "
                        f"{root}{extra}")
    return listing


def list_images(folder: str | Path, recursive: bool = False) -> list[Path]:
    """The image files of ``folder`` (see :func:`scan_folder`), sorted by relative path."""
    return scan_folder(folder, recursive).files


# -- one image ----------------------------------------------------------------------------------

def _decode_error(p: Path, e: BaseException) -> RdmdError:
    msg = str(e).splitlines()[0] if str(e) else type(e).__name__
    return RdmdError(f"{p}: cannot decode image ({msg})")


def is_grey(im: Image.Image) -> bool:
    """Grey by mode, or a palette whose entries are all grey (read from the header)."""
    if im.mode in GREY_MODES:
        return True
    if im.mode in ("P", "PA"):
        pal = im.getpalette() or []
        return all(pal[i] == pal[i + 1] == pal[i + 2] for i in range(0, len(pal) - 2, 3))
    return False


@dataclass(frozen=True)
class Header:
    """What the policy needs to know of one file, read without decoding its pixels."""

    width: int
    height: int
    grey: bool
    alpha: bool
    frames: int


def read_header(p: Path) -> Header:
    try:
        with Image.open(p) as im:
            w, h = im.size
            if im.getexif().get(0x0112, 1) in (5, 6, 7, 8):  # EXIF: rotated by 90 degrees
                w, h = h, w
            return Header(w, h, is_grey(im), "A" in im.getbands() or "transparency" in im.info,
                          int(getattr(im, "n_frames", 1)))
    except FileNotFoundError:
        raise RdmdError(f"image file not found: {p}") from None
    except DECODE_ERRORS as e:
        raise _decode_error(p, e) from None


def prepare_pil(im: Image.Image, size: int, channels: int) -> torch.Tensor:
    """Convert, resize the shorter side to ``size`` (bicubic), centre-crop, scale to [-1, 1]."""
    if im.mode.startswith("I;16") or (im.mode == "I" and im.getextrema()[1] > 255):
        # 16-bit grey: Pillow's convert("L") clips at 255 (a white image); scale the range
        a16 = np.asarray(im, dtype=np.float64) / 257.0
        im = Image.fromarray(np.clip(np.round(a16), 0, 255).astype(np.uint8), "L")
    if im.mode in ("RGBA", "LA", "PA", "P") and channels == 3:
        im = im.convert("RGBA").convert("RGB")  # alpha dropped, palette expanded
    im = im.convert("RGB" if channels == 3 else "L")
    w, h = im.size
    scale = size / min(w, h)
    nw, nh = max(size, round(w * scale)), max(size, round(h * scale))
    if (nw, nh) != (w, h):
        im = im.resize((nw, nh), Image.Resampling.BICUBIC)
    left, top = (nw - size) // 2, (nh - size) // 2
    im = im.crop((left, top, left + size, top + size))
    a = np.asarray(im, dtype=np.float32).reshape(size, size, channels)
    return torch.from_numpy(a / 127.5 - 1.0).permute(2, 0, 1).contiguous()


def open_image(p: Path) -> Image.Image:
    """The decoded first frame, EXIF orientation applied; RdmdError naming the file if not."""
    try:
        with Image.open(p) as im:
            im.seek(0)
            out = ImageOps.exif_transpose(im)
            out.load()
            return out
    except FileNotFoundError:
        raise RdmdError(f"image file not found: {p}") from None
    except DECODE_ERRORS as e:
        raise _decode_error(p, e) from None


def load_image_file(path: str | Path, size: int = 32, channels: int = 3) -> torch.Tensor:
    """One image as a (channels, size, size) float32 tensor in [-1, 1] (the folder policy's
    resize and crop; no counting)."""
    channels, size = check_channels(channels), check_size(size)
    return prepare_pil(open_image(Path(path)), size, channels)


# -- the policy ---------------------------------------------------------------------------------

@dataclass
class Policy:
    """The shape a folder is brought to, how it was chosen, and what that took, counted."""

    channels: int
    size: int
    chosen: str  # "data" (from the images), "capped" (data, at most AUTO_MAX_SIZE), "set"
    purpose: str | None = None  # what the shape is for, e.g. "the teacher in runs/t"
    images: int = 0
    converted_from_rgb: int = 0
    converted_from_grey: int = 0
    alpha_dropped: int = 0
    first_frame: int = 0
    resized: int = 0
    upscaled: int = 0
    cropped: int = 0
    skipped: dict[str, int] = field(default_factory=dict)

    @property
    def shape(self) -> tuple[int, int, int]:
        return (self.channels, self.size, self.size)

    def count(self, h: Header) -> None:
        self.images += 1
        if self.channels == 1 and not h.grey:
            self.converted_from_rgb += 1
        if self.channels == 3 and h.grey:
            self.converted_from_grey += 1
        self.alpha_dropped += h.alpha
        self.first_frame += h.frames > 1
        if (h.width, h.height) != (self.size, self.size):
            self.resized += 1
            self.upscaled += min(h.width, h.height) < self.size
            self.cropped += h.width != h.height

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}

    def line(self) -> str:
        """``404 images -> 1x28x28 (from the data); 3 converted from RGB, 5 resized``."""
        how = {"data": "from the data",
               "set": f"as {self.purpose} takes" if self.purpose else "as set",
               "capped": f"from the data, capped at {AUTO_MAX_SIZE}: set image_size for more"}
        parts = []
        for key, text in (("converted_from_rgb", "converted from RGB"),
                          ("converted_from_grey", "converted from grey to RGB"),
                          ("alpha_dropped", "with transparency (alpha dropped)"),
                          ("first_frame", "multi-frame (first frame used)")):
            if getattr(self, key):
                parts.append(f"{getattr(self, key)} {text}")
        if self.resized:
            extra = [f"{k} {w}" for k, w in ((self.upscaled, "upscaled"),
                                             (self.cropped, "centre-cropped")) if k]
            parts.append(f"{self.resized} resized" + (f" ({', '.join(extra)})" if extra
                                                       else ""))
        n = sum(self.skipped.values())
        if n:
            why = ", ".join(f"{k} {r}" for r, k in sorted(self.skipped.items()))
            parts.append(f"skipped {n} file{'s' if n != 1 else ''} ({why})")
        shape = "x".join(map(str, self.shape))
        s = "s" if self.images != 1 else ""
        return (f"{self.images} image{s} -> {shape} ({how[self.chosen]}); "
                + (", ".join(parts) or "nothing converted"))


def resolve_shape(headers: list[Header], channels: int | None = None,
                  size: int | None = None) -> Policy:
    """The policy's shape for these images: what they are, unless ``channels``/``size`` set."""
    chosen = "set"
    if channels is None:
        grey = sum(h.grey for h in headers)
        channels = 1 if grey > len(headers) - grey else 3
        chosen = "data"
    if size is None:
        sides = Counter(min(h.width, h.height) for h in headers)
        size = max(sides, key=lambda s: (sides[s], s))
        chosen = "data"
        if size > AUTO_MAX_SIZE:
            size, chosen = AUTO_MAX_SIZE, "capped"
    return Policy(check_channels(channels), check_size(size), chosen)


def check_fits(policy: Policy, listing: Listing, headers: list[Header],
               purpose: str | None = None) -> None:
    """Refuse a folder with images far smaller than the shape (upscaled > MAX_UPSCALE x)."""
    small = [(f, h) for f, h in zip(listing.files, headers, strict=True)
             if min(h.width, h.height) * MAX_UPSCALE < policy.size]
    if small:
        f, h = small[0]
        name = f.relative_to(listing.root).as_posix()
        whose = f" of {purpose}" if purpose else ""
        raise RdmdError(
            f"{listing.root}: {len(small)} of {len(headers)} images are too small for the "
            f"{policy.size}x{policy.size}{whose} (e.g. {name} is {h.width}x{h.height}; images "
            f"are upscaled at most {MAX_UPSCALE:g}x): remove them, or use a model of a "
            "smaller size")


def plan_folder(folder: str | Path, channels: int | None = None, size: int | None = None,
                recursive: bool = False, purpose: str | None = None
                ) -> tuple[Listing, list[Header], Policy]:
    """List ``folder``, read its headers, resolve the shape and count what it takes."""
    listing = scan_folder(folder, recursive)
    headers = [read_header(f) for f in listing.files]
    policy = resolve_shape(headers, channels, size)
    policy.purpose = purpose
    check_fits(policy, listing, headers, purpose)
    for h in headers:
        policy.count(h)
    policy.skipped = dict(listing.skipped)
    return listing, headers, policy


def load_image_folder(path: str | Path, size: int | None = None, channels: int | None = None,
                      seed: int = 0, test_fraction: float = TEST_FRACTION,
                      recursive: bool = False, purpose: str | None = None) -> Domain:
    """Every image in ``path`` at the policy's shape, split by a fixed permutation.

    ``size``/``channels`` None: from the images (module docstring). ``seed`` seeds the split
    only (default 0, the same for every run so a teacher and its distillation hold out the
    same files). ``info["policy"]`` holds the shape and the counted conversions,
    ``info["files"]`` the relative names in train-then-test order.
    """
    if channels is not None:
        check_channels(channels)
    if size is not None:
        check_size(size)
    if not 0.0 < test_fraction < 1.0:
        raise RdmdError(f"test_fraction must be in (0, 1), got {test_fraction!r}")
    listing, _, policy = plan_folder(path, channels, size, recursive, purpose)
    if len(listing.files) < 2:
        raise RdmdError(f"need at least 2 images in folder {Path(path)}, found "
                        f"{listing.names()[0]}")
    x = torch.stack([prepare_pil(open_image(f), policy.size, policy.channels)
                     for f in listing.files])
    tr, te = split_indices(len(listing.files), test_fraction, seed)
    names = listing.names()
    info = {"folder": str(path), "files": [names[i] for i in tr] + [names[i] for i in te],
            "n_train": len(tr), "size": policy.size, "channels": policy.channels,
            "recursive": recursive, "policy": policy.to_dict(),
            "split": f"fixed permutation (seed {seed}), last {test_fraction:.0%} test"}
    return Domain(str(path), x[torch.from_numpy(tr)].contiguous(),
                  x[torch.from_numpy(te)].contiguous(), "image", None, info)


def policy_line(dom: Domain) -> str | None:
    """The printed line of a folder domain (None for built-in data)."""
    p = dom.info.get("policy")
    if not isinstance(p, dict):
        return None
    return Policy(**p).line()


def announce(dom: Domain, role: str) -> None:
    """Print ``<role> <folder>: <policy line>`` once (rank 0 under torchrun)."""
    from rdmd.distributed import is_main

    line = policy_line(dom)
    if line is not None and is_main():
        print(f"{role} {dom.info.get('folder', dom.name)}: {line}", flush=True)


def load_all(folder: str | Path, channels: int | None = None, size: int | None = None,
             recursive: bool = False, purpose: str | None = None
             ) -> tuple[list[str], torch.Tensor, Policy]:
    """Every image of ``folder`` (no split: for evaluating a folder as it is), at the policy's
    shape: relative names, an (N, C, S, S) tensor in [-1, 1], and the policy."""
    listing, _, policy = plan_folder(folder, channels, size, recursive, purpose)
    x = torch.stack([prepare_pil(open_image(f), policy.size, policy.channels)
                     for f in listing.files])
    return listing.names(), x, policy


def stem(name: str) -> str:
    """A relative name without its suffix: what pairs an input with its translation."""
    return Path(name).with_suffix("").as_posix()

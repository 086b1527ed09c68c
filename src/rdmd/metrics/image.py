"""Image metrics for translated batches (spec section 3, "Image metrics").

Inputs are image batches ``(N, C, H, W)`` in the model range [-1, 1]. Every metric first clamps
to [-1, 1] (what a saved image would hold) and maps to [0, 1], so distances are in [0, 1] units
as in EGSDE.

* ``l2`` is EGSDE's L2: the Euclidean norm of ``x - G(x)`` per image, averaged over images;
  ``rmse`` is the per-element root mean square of the same difference (size-independent).
* ``psnr`` is the mean over images of the per-image PSNR (data range 1.0). A per-image MSE is
  floored at ``1e-10``, so an unchanged image scores ``PSNR_CAP`` = 100 dB rather than inf and
  one untouched image cannot turn the mean into inf.
* ``ssim`` is the standard SSIM (Wang et al. 2004; scikit-image's ``structural_similarity`` with
  ``gaussian_weights=True, sigma=1.5, use_sample_covariance=False``, as EGSDE evaluates): a
  Gaussian window truncated at radius ``int(3.5 sigma + 0.5)`` (11x11 for sigma 1.5), the SSIM
  map averaged over the valid interior only (pixels whose window fits in the image), over
  channels, then over images. Images under 11 px get the window ``k = min(11, H, W)`` rounded
  down to odd with ``sigma = 1.5 k / 11`` (8x8 images: 7x7, sigma 0.95), which is the window
  scikit-image derives from that sigma. Averaging a reflect-padded border in as well (the
  torchmetrics default) reads much lower on images with a flat background (0.67 vs 0.88 on
  MNIST-like images).
* ``fd`` is a Frechet distance between Gaussians fitted to features of a network that the
  project trains itself (see ``rdmd.classifier``); it is NOT the FID, always comes with its noise
  floor ``fd_floor`` (two disjoint halves of real target data), and its value depends on the
  sample sizes, so compare it with a floor computed at the same sizes. The standard FID (Inception
  features) is ``inception_fid``, for users who have the Inception weights on disk.
* ``hue_difference`` (3-channel images): the mean circular distance, in turns (0 to 0.5),
  between the dominant hue of each input and of its output. Made for colored MNIST, where each
  digit has one hue that a translation should keep.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from rdmd.errors import RdmdError

PSNR_CAP = 100.0
_MSE_FLOOR = 10.0 ** (-PSNR_CAP / 10.0)
_CHUNK = 512


# -- helpers -------------------------------------------------------------------------------

def _to01(x: Tensor) -> Tensor:
    """[-1, 1] -> [0, 1] after clamping, as float64 so that tiny differences are not lost."""
    return (x.detach().to(torch.float64).clamp(-1.0, 1.0) + 1.0) / 2.0


def _check_images(x: Tensor, y: Tensor | None = None) -> None:
    if x.ndim != 4 or x.shape[0] == 0:
        raise ValueError(f"expected a non-empty (N, C, H, W) batch, got shape {tuple(x.shape)}")
    if y is not None and x.shape != y.shape:
        raise ValueError(f"image batches differ in shape: {tuple(x.shape)} vs {tuple(y.shape)}")


def _batched(fn: Callable[[Tensor], Tensor], x: Tensor, chunk: int = _CHUNK) -> Tensor:
    """Apply a network in chunks without gradients; results on the CPU."""
    with torch.no_grad():
        return torch.cat([fn(x[i:i + chunk]).detach().cpu() for i in range(0, len(x), chunk)])


# -- pixel distances -----------------------------------------------------------------------

def l2_per_image(x: Tensor, y: Tensor) -> Tensor:
    """EGSDE's L2: ``||x - y||_2`` per image on [0, 1] images, shape ``(N,)``, float64."""
    _check_images(x, y)
    return (_to01(x) - _to01(y)).flatten(1).norm(dim=1)


def rmse_per_pixel(x: Tensor, y: Tensor) -> float:
    """Root mean squared difference over all elements (on [0, 1]); independent of image size."""
    _check_images(x, y)
    return float((_to01(x) - _to01(y)).pow(2).mean().sqrt())


def psnr_per_image(x: Tensor, y: Tensor) -> Tensor:
    """Per-image PSNR in dB (data range 1), capped at ``PSNR_CAP`` for identical images."""
    _check_images(x, y)
    mse = (_to01(x) - _to01(y)).pow(2).flatten(1).mean(dim=1).clamp_min(_MSE_FLOOR)
    return -10.0 * torch.log10(mse)


def psnr(x: Tensor, y: Tensor) -> float:
    """Mean over images of the per-image PSNR (not the PSNR of the pooled MSE)."""
    return float(psnr_per_image(x, y).mean())


def ssim_kernel_size(height: int, width: int) -> int:
    """``min(11, H, W)`` rounded down to odd: 11 for 32x32 and larger, 7 for 8x8."""
    k = min(11, height, width)
    k -= 1 - k % 2
    if k < 3:
        raise ValueError(f"images of {height}x{width} are too small for SSIM (need 3x3)")
    return k


def ssim_sigma(kernel_size: int) -> float:
    """Gaussian sigma scaled with the window (1.5 at 11); truncated, it spans ``kernel_size``."""
    return 1.5 * kernel_size / 11.0


def _gaussian_window(sigma: float) -> Tensor:
    """Normalised 1-D Gaussian truncated at radius ``int(3.5 sigma + 0.5)``, as scikit-image's SSIM
    filters (scipy's ``gaussian_filter`` with ``truncate=3.5``)."""
    r = int(3.5 * sigma + 0.5)
    t = torch.arange(-r, r + 1, dtype=torch.float64)
    g = torch.exp(-0.5 * (t / sigma) ** 2)
    return g / g.sum()


def _ssim_chunk(a: Tensor, b: Tensor, g: Tensor) -> Tensor:
    """Per-image SSIM of [0, 1] float64 batches: valid-interior mean, channels averaged."""
    n, c, h, w = a.shape
    k = len(g)
    maps = torch.stack([a, b, a * a, b * b, a * b], dim=1).reshape(-1, 1, h, w)
    maps = torch.nn.functional.conv2d(maps, g.view(1, 1, 1, k))      # valid: no padding
    maps = torch.nn.functional.conv2d(maps, g.view(1, 1, k, 1))
    mu_a, mu_b, e_aa, e_bb, e_ab = maps.reshape(n, 5, c, h - k + 1, w - k + 1).unbind(1)
    var_a, var_b = e_aa - mu_a * mu_a, e_bb - mu_b * mu_b         # population (co)variances
    cov = e_ab - mu_a * mu_b
    c1, c2 = 0.01**2, 0.03**2
    num = (2 * mu_a * mu_b + c1) * (2 * cov + c2)
    den = (mu_a * mu_a + mu_b * mu_b + c1) * (var_a + var_b + c2)
    return (num / den).mean(dim=(1, 2, 3))


def ssim_per_image(x: Tensor, y: Tensor) -> Tensor:
    """Standard Gaussian SSIM per image (data range 1, window fitted to the size), ``(N,)``."""
    _check_images(x, y)
    k = ssim_kernel_size(x.shape[2], x.shape[3])
    g = _gaussian_window(ssim_sigma(k)).to(x.device)
    with torch.no_grad():   # in chunks: five float64 maps per image are GBs for 10k images
        return torch.cat([_ssim_chunk(_to01(x[i:i + _CHUNK]), _to01(y[i:i + _CHUNK]), g).cpu()
                          for i in range(0, len(x), _CHUNK)])


def ssim(x: Tensor, y: Tensor) -> float:
    """Mean over images of the standard SSIM (scikit-image's value, see the module docstring)."""
    return float(ssim_per_image(x, y).mean())


# -- Frechet distance ----------------------------------------------------------------------

def _feats64(f: Any, name: str) -> np.ndarray:
    a = f.detach().cpu().numpy() if hasattr(f, "detach") else np.asarray(f)
    a = np.asarray(a, dtype=np.float64)
    if a.ndim != 2:
        raise ValueError(f"{name}: expected an N x D feature matrix, got shape {a.shape}")
    if len(a) < 2:
        raise ValueError(f"{name}: need at least 2 samples for a covariance, got {len(a)}")
    if not np.isfinite(a).all():
        raise ValueError(f"{name}: features contain NaN or inf")
    return a


def _sqrtm_psd(s: np.ndarray) -> np.ndarray:
    w, u = np.linalg.eigh(s)
    return (u * np.sqrt(np.clip(w, 0.0, None))) @ u.T


def frechet_distance(feats_a: Tensor | np.ndarray, feats_b: Tensor | np.ndarray) -> float:
    """Frechet distance between Gaussians fitted to two feature sets (float64).

    ``||m1 - m2||^2 + tr(S1 + S2 - 2 (S1 S2)^{1/2})`` with ``tr (S1 S2)^{1/2}`` computed as the
    sum of square roots of the eigenvalues of the symmetric PSD ``S1^{1/2} S2 S1^{1/2}`` (same
    spectrum as ``S1 S2``): stable for the rank-deficient covariances of small samples, where
    ``scipy.linalg.sqrtm`` of the non-symmetric product can go complex. Clipped at 0.
    """
    a, b = _feats64(feats_a, "feats_a"), _feats64(feats_b, "feats_b")
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"feature dimension mismatch: {a.shape[1]} vs {b.shape[1]}")
    m1, m2 = a.mean(axis=0), b.mean(axis=0)
    s1 = np.atleast_2d(np.cov(a, rowvar=False))
    s2 = np.atleast_2d(np.cov(b, rowvar=False))
    r1 = _sqrtm_psd(s1)
    m = r1 @ s2 @ r1
    ev = np.linalg.eigvalsh((m + m.T) / 2.0)
    tr_covmean = float(np.sqrt(np.clip(ev, 0.0, None)).sum())
    fd = float(((m1 - m2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2.0 * tr_covmean)
    return max(fd, 0.0)


def _poly_kernel_sum(a: np.ndarray, b: np.ndarray, degree: int, gamma: float, coef0: float,
                     block: int = 2048) -> tuple[float, float]:
    """Sum of ``k(a_i, b_j) = (gamma a_i.b_j + coef0)^degree`` over all pairs and over the
    diagonal ``i == j`` (meaningful when ``a is b``), in row blocks (memory: block x len(b))."""
    total, diag = 0.0, 0.0
    for i in range(0, len(a), block):
        k = (gamma * (a[i:i + block] @ b.T) + coef0) ** degree
        total += float(k.sum())
        if a is b:
            diag += float(np.trace(k[:, i:i + block]))
    return total, diag


def kid_unbiased(feats_a: Tensor | np.ndarray, feats_b: Tensor | np.ndarray,
                              degree: int = 3, gamma: float | None = None,
                              coef0: float = 1.0) -> float:
    """KID (Binkowski et al. 2018) over the given features: the unbiased estimate of the
    squared MMD with the polynomial kernel ``k(x, y) = (x.y / d + 1)^3``,

    ``sum_{i != j} k(a_i, a_j) / (m (m-1)) + sum_{i != j} k(b_i, b_j) / (n (n-1))
    - 2 sum_{i, j} k(a_i, b_j) / (m n)``.

    Unlike the Frechet distance it has no bias from the sample size (its expectation is 0 for
    two samples of one distribution, so it can come out slightly negative), which makes it
    the number to read at a few hundred images. Computed on all pairs (no subsets), float64.
    """
    a, b = _feats64(feats_a, "feats_a"), _feats64(feats_b, "feats_b")
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"feature dimension mismatch: {a.shape[1]} vs {b.shape[1]}")
    g = 1.0 / a.shape[1] if gamma is None else float(gamma)
    m, n = len(a), len(b)
    saa, daa = _poly_kernel_sum(a, a, degree, g, coef0)
    sbb, dbb = _poly_kernel_sum(b, b, degree, g, coef0)
    sab, _ = _poly_kernel_sum(a, b, degree, g, coef0)
    return (saa - daa) / (m * (m - 1)) + (sbb - dbb) / (n * (n - 1)) - 2.0 * sab / (m * n)


def fd_kid_with_floor(feature_fn: Callable[[Tensor], Tensor], generated: Tensor,
                      real_a: Tensor, real_b: Tensor) -> dict[str, float]:
    """:func:`fd_with_floor` plus ``kid`` = KID(generated, real_a) and its floor ``kid_floor``
    = KID(real_a, real_b), on the same features (each set's features computed once)."""
    for name, t in (("generated", generated), ("real_a", real_a), ("real_b", real_b)):
        _check_images(t)
        if len(t) < 2:
            raise ValueError(f"{name}: need at least 2 images, got {len(t)}")
    fg, fa, fb = (_batched(feature_fn, t) for t in (generated, real_a, real_b))
    return {"fd": frechet_distance(fg, fa), "fd_floor": frechet_distance(fa, fb),
            "kid": kid_unbiased(fg, fa),
            "kid_floor": kid_unbiased(fa, fb)}


def fd_with_floor(feature_fn: Callable[[Tensor], Tensor], generated: Tensor, real_a: Tensor,
                  real_b: Tensor) -> dict[str, float]:
    """``fd`` = FD(generated, real_a) and its noise floor ``fd_floor`` = FD(real_a, real_b).

    ``real_a`` and ``real_b`` must be disjoint halves of real target data; the FD is biased by
    sample size, so give ``generated`` and ``real_b`` the same size for a fair floor.
    """
    for name, t in (("generated", generated), ("real_a", real_a), ("real_b", real_b)):
        _check_images(t)
        if len(t) < 2:
            raise ValueError(f"{name}: need at least 2 images, got {len(t)}")
    fa = _batched(feature_fn, real_a)
    return {"fd": frechet_distance(_batched(feature_fn, generated), fa),
            "fd_floor": frechet_distance(fa, _batched(feature_fn, real_b))}


# -- hue -----------------------------------------------------------------------------------

def rgb_to_hsv(rgb: Tensor) -> Tensor:
    """``(..., 3)`` RGB in [0, 1] -> HSV with hue in turns [0, 1); grey gets hue 0 (colorsys)."""
    r, g, b = rgb.unbind(-1)
    v, _ = rgb.max(dim=-1)
    c = v - rgb.min(dim=-1).values
    safe = torch.where(c > 0, c, torch.ones_like(c))
    h = torch.where(v == r, ((g - b) / safe) % 6.0,
                    torch.where(v == g, (b - r) / safe + 2.0, (r - g) / safe + 4.0)) / 6.0
    h = torch.where(c > 0, h % 1.0, torch.zeros_like(h))
    s = torch.where(v > 0, c / torch.where(v > 0, v, torch.ones_like(v)), torch.zeros_like(v))
    return torch.stack([h, s, v], dim=-1)


def hsv_to_rgb(hsv: Tensor) -> Tensor:
    """Inverse of ``rgb_to_hsv`` (hue in turns), ``(..., 3)``."""
    h, s, v = hsv.unbind(-1)
    k = lambda n: (n + h * 6.0) % 6.0  # noqa: E731
    f = lambda n: v - v * s * (torch.minimum(k(n), 4.0 - k(n)).clamp(0.0, 1.0))  # noqa: E731
    return torch.stack([f(5.0), f(3.0), f(1.0)], dim=-1)


def dominant_hue(x: Tensor) -> Tensor:
    """Hue (turns) of the mean colour of the pixels brighter than the image's mean value.

    The mask keeps the digit strokes of colored MNIST and drops the dark background; an image
    with no pixel above its mean (a constant image) uses all its pixels.
    """
    _check_images(x)
    if x.shape[1] != 3:
        raise ValueError(f"hue needs 3-channel images, got {x.shape[1]} channels")
    a = _to01(x)
    v = a.max(dim=1).values                                        # (N, H, W)
    mask = v > v.flatten(1).mean(dim=1)[:, None, None]
    mask = torch.where(mask.flatten(1).any(dim=1)[:, None, None], mask, torch.ones_like(mask))
    w = mask.unsqueeze(1).to(a.dtype)
    mean_rgb = (a * w).sum(dim=(2, 3)) / w.sum(dim=(2, 3))         # (N, 3)
    return rgb_to_hsv(mean_rgb)[:, 0]


def hue_difference(x: Tensor, y: Tensor) -> float:
    """Mean circular distance (turns, in [0, 0.5]) between dominant hues; NaN for 1 channel."""
    _check_images(x, y)
    if x.shape[1] == 1:
        return float("nan")
    d = (dominant_hue(x) - dominant_hue(y)).abs() % 1.0
    return float(torch.minimum(d, 1.0 - d).mean())


# -- everything at once --------------------------------------------------------------------

def target_accuracy(classifier: Callable[[Tensor], Tensor], images: Tensor,
                    target_class: int) -> float:
    """Fraction of images that ``classifier`` (logits) assigns to ``target_class``."""
    _check_images(images)
    module = classifier if isinstance(classifier, torch.nn.Module) else None
    was_training = module.training if module is not None else False
    if module is not None:
        module.eval()
    try:
        pred = _batched(classifier, images).argmax(dim=1)
    finally:
        if module is not None:
            module.train(was_training)
    return float((pred == int(target_class)).to(torch.float64).mean())


def image_metrics(x: Tensor, gx: Tensor, feature_fn: Callable[[Tensor], Tensor] | None = None,
                  real_a: Tensor | None = None, real_b: Tensor | None = None,
                  classifier: Callable[[Tensor], Tensor] | None = None,
                  target_class: int | None = None) -> dict[str, float]:
    """All image metrics for inputs ``x`` and translations ``gx``, as plain floats.

    Always ``l2`` (mean per-image), ``rmse``, ``psnr``, ``ssim``; ``hue_difference`` for
    3-channel images; ``fd``/``fd_floor`` when ``feature_fn``, ``real_a`` and ``real_b`` are all
    given; ``target_accuracy`` when ``classifier`` and ``target_class`` are given.
    """
    _check_images(x, gx)
    out: dict[str, float] = {
        "l2": float(l2_per_image(x, gx).mean()),
        "rmse": rmse_per_pixel(x, gx),
        "psnr": psnr(x, gx),
        "ssim": ssim(x, gx),
    }
    if x.shape[1] == 3:
        out["hue_difference"] = hue_difference(x, gx)
    fd_args = (feature_fn, real_a, real_b)
    if any(a is not None for a in fd_args):
        if feature_fn is None or real_a is None or real_b is None:
            raise ValueError("the Frechet distance needs feature_fn, real_a and real_b together")
        out.update(fd_with_floor(feature_fn, gx, real_a, real_b))
    if (classifier is None) != (target_class is None):
        raise ValueError("target_accuracy needs classifier and target_class together")
    if classifier is not None and target_class is not None:
        out["target_accuracy"] = target_accuracy(classifier, gx, target_class)
    return out


# -- the standard FID (needs Inception weights on disk) ------------------------------------

def inception_fid(generated: Tensor, real: Tensor, weights_path: str | Path) -> float:
    """The standard FID (Inception-v3 pool features, 2048-d) via torchmetrics.

    For users who have the FID Inception weights (``pt_inception-2015-12-05``) on disk; needs
    ``torch-fidelity``. Images in [-1, 1]; 1-channel images are repeated to RGB, and torchmetrics
    resizes to 299x299. Raises ``RdmdError`` when the weights or the extractor are unavailable.
    """
    path = Path(weights_path)
    if not path.is_file():
        raise RdmdError(f"Inception weights not found: {path} (the standard FID needs them on "
                        "disk; the project's own Frechet distance is fd_<classifier name>)")
    _check_images(generated)
    _check_images(real)
    if generated.shape[1:] != real.shape[1:]:
        raise ValueError(f"image shapes differ: {tuple(generated.shape[1:])} vs "
                         f"{tuple(real.shape[1:])}")
    if min(len(generated), len(real)) < 2:
        raise ValueError("the FID needs at least 2 images in each set")
    try:
        from torchmetrics.image.fid import FrechetInceptionDistance

        fid = FrechetInceptionDistance(feature=2048, feature_extractor_weights_path=str(path),
                                       normalize=True)
    except (ImportError, ModuleNotFoundError, RuntimeError, OSError, ValueError) as e:
        raise RdmdError(f"cannot build the Inception feature extractor from {path}: {e} "
                        "(the standard FID needs the torch-fidelity package)") from None
    for imgs, is_real in ((real, True), (generated, False)):
        for i in range(0, len(imgs), 64):
            b = _to01(imgs[i:i + 64]).to(torch.float32)
            if b.shape[1] == 1:
                b = b.repeat(1, 3, 1, 1)
            fid.update(b, real=is_real)
    val = float(fid.compute())
    if not math.isfinite(val):
        raise RdmdError(f"the FID came out non-finite ({val})")
    return val

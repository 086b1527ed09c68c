"""Image metrics (L2, RMSE, PSNR, SSIM, Frechet distance, hue) and the feature classifier."""

from __future__ import annotations

import colorsys
import math
import time

import numpy as np
import pytest
import scipy.linalg
import torch

from rdmd.classifier import (
    SmallConvNet,
    fd_metric_name,
    load_classifier,
    save_classifier,
    train_classifier,
)
from rdmd.errors import RdmdError
from rdmd.metrics.image import (
    PSNR_CAP,
    dominant_hue,
    fd_with_floor,
    frechet_distance,
    hsv_to_rgb,
    hue_difference,
    image_metrics,
    inception_fid,
    l2_per_image,
    psnr,
    psnr_per_image,
    rgb_to_hsv,
    rmse_per_pixel,
    ssim,
    ssim_kernel_size,
    ssim_per_image,
    ssim_sigma,
)


def _images(n: int = 6, c: int = 3, h: int = 8, w: int = 8, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, c, h, w, generator=g) * 1.6 - 1.0   # in [-1, 0.6]: room for +0.2


# -- pixel metrics -------------------------------------------------------------------------

def test_identical_images() -> None:
    x = _images()
    assert torch.all(l2_per_image(x, x) == 0)
    assert rmse_per_pixel(x, x) == 0.0
    assert ssim(x, x) == pytest.approx(1.0, abs=1e-6)
    assert psnr(x, x) == pytest.approx(PSNR_CAP)


def test_known_perturbation() -> None:
    x = _images(n=5, c=3, h=4, w=4)
    y = x + 0.2                                   # 0.1 in [0, 1] units, 48 elements
    l2 = l2_per_image(x, y)
    assert l2.shape == (5,)
    assert torch.allclose(l2, torch.full((5,), 0.1 * math.sqrt(48), dtype=l2.dtype), atol=1e-6)
    assert rmse_per_pixel(x, y) == pytest.approx(0.1, abs=1e-6)
    assert psnr(x, y) == pytest.approx(20.0, abs=1e-4)   # -10 log10(0.01)
    m = image_metrics(x, y)
    assert m["l2"] == pytest.approx(0.1 * math.sqrt(48), abs=1e-6)
    assert set(m) == {"l2", "rmse", "psnr", "ssim", "hue_difference"}
    assert all(isinstance(v, float) for v in m.values())


def test_psnr_matches_torchmetrics_per_image_mean() -> None:
    from torchmetrics.functional.image import peak_signal_noise_ratio

    x, y = _images(seed=1), _images(seed=2)
    ref = peak_signal_noise_ratio((y + 1) / 2, (x + 1) / 2, data_range=1.0, reduction="none",
                                  dim=(1, 2, 3))
    assert torch.allclose(psnr_per_image(x, y).float(), ref, atol=1e-4)


def test_ssim_kernel_and_range() -> None:
    assert ssim_kernel_size(8, 8) == 7
    assert ssim_kernel_size(32, 32) == 11
    assert ssim_kernel_size(6, 10) == 5
    with pytest.raises(ValueError):
        ssim_kernel_size(2, 8)
    x, y = _images(c=1, seed=3), _images(c=1, seed=4)
    s = ssim(x, y)
    assert -1.0 <= s < 0.5
    assert ssim(x, x + 0.01) > 0.99


def _reference_ssim(x: torch.Tensor, y: torch.Tensor, k: int, sigma: float) -> float:
    """SSIM by hand with a 2-D k x k Gaussian window and no padding: the mean over the valid
    interior (the standard convention), per image and channel, then averaged."""
    a, b = (x.double() + 1) / 2, (y.double() + 1) / 2
    g = torch.exp(-((torch.arange(k, dtype=torch.float64) - (k - 1) / 2) ** 2) / (2 * sigma**2))
    g = g / g.sum()
    c = a.shape[1]
    win = (g[:, None] * g[None, :]).expand(c, 1, k, k)
    f = lambda t: torch.nn.functional.conv2d(t, win, groups=c)  # noqa: E731
    mu_a, mu_b = f(a), f(b)
    va, vb = f(a * a) - mu_a**2, f(b * b) - mu_b**2
    cov = f(a * b) - mu_a * mu_b
    c1, c2 = 0.01**2, 0.03**2
    m = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a**2 + mu_b**2 + c1) * (va + vb + c2))
    return float(m.mean())


@pytest.mark.parametrize("size", [8, 16, 4])
def test_ssim_uses_the_fitted_window(size: int) -> None:
    x, y = _images(c=3, h=size, w=size, seed=6), _images(c=3, h=size, w=size, seed=7)
    y = 0.7 * x + 0.3 * y
    k = ssim_kernel_size(size, size)
    assert ssim(x, y) == pytest.approx(_reference_ssim(x, y, k, ssim_sigma(k)), abs=1e-9)


def _skimage_ssim(x: torch.Tensor, y: torch.Tensor) -> np.ndarray:
    """scikit-image's standard SSIM per image (EGSDE's evaluation settings), with the window
    sigma scaled as ``ssim_sigma`` for images under 11 px (skimage derives the window from it)."""
    metrics = pytest.importorskip("skimage.metrics", reason="scikit-image (the reference SSIM, "
                                  "in the dev extra) is not installed")
    sigma = ssim_sigma(ssim_kernel_size(x.shape[2], x.shape[3]))
    a = ((x.double().clamp(-1, 1) + 1) / 2).numpy()
    b = ((y.double().clamp(-1, 1) + 1) / 2).numpy()
    return np.array([metrics.structural_similarity(a[i], b[i], gaussian_weights=True, sigma=sigma,
                                                   use_sample_covariance=False, data_range=1,
                                                   channel_axis=0) for i in range(len(a))])


def _mnist_like(n: int, c: int, size: int, seed: int) -> torch.Tensor:
    """Digit-like images in [-1, 1]: two or three blurred bright strokes on a black background
    (most pixels exactly -1), each image in one random colour."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.arange(size, dtype=torch.float64),
                            torch.arange(size, dtype=torch.float64), indexing="ij")
    out = torch.zeros(n, c, size, size, dtype=torch.float64)
    for i in range(n):
        ink = torch.zeros(size, size, dtype=torch.float64)
        for _ in range(int(torch.randint(2, 4, (1,), generator=g))):
            p, q = (torch.rand(2, 2, generator=g, dtype=torch.float64) * 0.6 + 0.2) * (size - 1)
            d = q - p
            t = (((xx - p[0]) * d[0] + (yy - p[1]) * d[1]) / d.dot(d).clamp_min(1e-9)).clamp(0, 1)
            dist = torch.hypot(xx - p[0] - t * d[0], yy - p[1] - t * d[1])
            ink = torch.maximum(ink, (1.0 - dist / (0.08 * size + 0.5)).clamp(0, 1))
        colour = 0.4 + 0.6 * torch.rand(c, generator=g, dtype=torch.float64)
        out[i] = colour[:, None, None] * ink
    return (out * 2 - 1).float()


@pytest.mark.parametrize(("c", "h", "w"), [(3, 32, 32), (1, 32, 32), (3, 8, 8), (1, 9, 10),
                                           (3, 5, 9), (1, 3, 3), (2, 12, 40)])
def test_ssim_matches_scikit_image_on_random_images(c: int, h: int, w: int) -> None:
    x = _images(n=5, c=c, h=h, w=w, seed=11)
    y = 0.6 * x + 0.4 * _images(n=5, c=c, h=h, w=w, seed=12)
    ref = _skimage_ssim(x, y)
    assert torch.allclose(ssim_per_image(x, y), torch.from_numpy(ref), rtol=0, atol=1e-6)
    assert ssim(x, y) == pytest.approx(float(ref.mean()), abs=1e-6)


@pytest.mark.parametrize(("c", "size"), [(1, 32), (3, 32), (1, 8), (3, 8)])
def test_ssim_matches_scikit_image_on_mnist_like_images(c: int, size: int) -> None:
    """The case where a reflect-padded border (torchmetrics' default) reads far lower."""
    x = _mnist_like(12, c, size, seed=size + c)
    noise = 0.05 * torch.randn(x.shape, generator=torch.Generator().manual_seed(1))
    y = (torch.roll(x, shifts=1, dims=-1) + noise).clamp(-1, 1)      # a slightly moved digit
    ref = _skimage_ssim(x, y)
    assert torch.allclose(ssim_per_image(x, y), torch.from_numpy(ref), rtol=0, atol=1e-6)
    assert ssim(x, y) == pytest.approx(float(ref.mean()), abs=1e-6)
    # these images do tell the two conventions apart, so the comparison above has teeth
    from torchmetrics.functional.image import structural_similarity_index_measure

    k = ssim_kernel_size(size, size)
    reflect = float(structural_similarity_index_measure(
        (x.double() + 1) / 2, (y.double() + 1) / 2, data_range=1.0, kernel_size=k,
        sigma=ssim_sigma(k)))
    assert abs(ssim(x, y) - reflect) > 0.02


def test_ssim_identical_and_chunked() -> None:
    x = _mnist_like(3, 3, 32, seed=0)
    assert torch.allclose(ssim_per_image(x, x), torch.ones(3, dtype=torch.float64), atol=1e-12)
    big_x, big_y = _images(n=600, c=1, seed=13), _images(n=600, c=1, seed=14)  # > one chunk
    per = ssim_per_image(big_x, big_y)
    assert per.shape == (600,)
    for i in (0, 511, 512, 599):
        assert per[i] == pytest.approx(float(ssim_per_image(big_x[i:i + 1], big_y[i:i + 1])[0]),
                                       abs=1e-12)
    with pytest.raises(ValueError, match="too small"):
        ssim(_images(h=2, w=8), _images(h=2, w=8))


def test_shape_mismatch_raises() -> None:
    with pytest.raises(ValueError):
        l2_per_image(_images(h=8), _images(h=4, w=4))


# -- Frechet distance ----------------------------------------------------------------------

def _scipy_fd(a: np.ndarray, b: np.ndarray) -> float:
    """Independent reference: the pytorch-fid formula with scipy's sqrtm of S1 S2."""
    m1, m2 = a.mean(0), b.mean(0)
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    covmean = scipy.linalg.sqrtm(s1 @ s2)
    return float(((m1 - m2) ** 2).sum() + np.trace(s1 + s2 - 2 * np.real(covmean)))


def test_frechet_self_is_zero() -> None:
    rng = np.random.default_rng(0)
    a = rng.normal(size=(500, 16))
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-8)
    assert frechet_distance(torch.from_numpy(a).float(), torch.from_numpy(a).float()) < 1e-6


def test_frechet_analytic_and_scipy_reference() -> None:
    rng = np.random.default_rng(1)
    d = 4
    m1, m2 = np.zeros(d), np.array([1.0, -0.5, 0.0, 2.0])
    q = np.linalg.qr(rng.normal(size=(d, d)))[0]
    s1 = np.diag([1.0, 2.0, 0.5, 1.5])
    s2 = q @ np.diag([0.3, 1.0, 2.5, 0.8]) @ q.T
    r1 = scipy.linalg.sqrtm(s1)
    analytic = float(((m1 - m2) ** 2).sum() + np.trace(s1 + s2)
                     - 2 * np.trace(scipy.linalg.sqrtm(r1 @ s2 @ r1)).real)
    n = 40_000
    a = rng.multivariate_normal(m1, s1, size=n)
    b = rng.multivariate_normal(m2, s2, size=n)
    fd = frechet_distance(a, b)
    assert fd == pytest.approx(analytic, rel=0.03)
    assert fd == pytest.approx(_scipy_fd(a, b), rel=1e-9, abs=1e-9)
    # and in a higher dimension with fewer samples (covariances still full rank)
    a2, b2 = rng.normal(size=(300, 32)), rng.normal(loc=0.3, size=(400, 32)) * 1.2
    assert frechet_distance(a2, b2) == pytest.approx(_scipy_fd(a2, b2), rel=1e-7)


def test_frechet_input_errors() -> None:
    with pytest.raises(ValueError):
        frechet_distance(np.zeros((5, 3)), np.zeros((5, 4)))
    with pytest.raises(ValueError):
        frechet_distance(np.zeros((1, 3)), np.zeros((5, 3)))


def test_fd_with_floor_and_image_metrics_keys() -> None:
    torch.manual_seed(0)
    real = _images(n=200, seed=5)
    feature_fn = lambda t: t.flatten(1)[:, :10]  # noqa: E731
    gen = real[:100].flip(-1) * 0.5
    out = fd_with_floor(feature_fn, gen, real[:100], real[100:])
    assert set(out) == {"fd", "fd_floor"}
    assert 0 <= out["fd_floor"] < out["fd"]
    clf = SmallConvNet(3, 4, 8)
    m = image_metrics(real[:50], gen[:50], feature_fn, real[:100], real[100:], clf, 2)
    assert {"fd", "fd_floor", "target_accuracy"} <= set(m)
    assert 0.0 <= m["target_accuracy"] <= 1.0
    with pytest.raises(ValueError):
        image_metrics(real[:50], gen[:50], feature_fn=feature_fn)


# -- hue -----------------------------------------------------------------------------------

def _colored_digits(hues: list[float], size: int = 8) -> torch.Tensor:
    """A bright cross in one saturated hue per image on a near-black background."""
    imgs = torch.full((len(hues), 3, size, size), -0.95)
    for i, h in enumerate(hues):
        rgb = torch.tensor(colorsys.hsv_to_rgb(h, 0.9, 0.9)) * 2 - 1
        imgs[i, :, size // 2, 1:-1] = rgb[:, None]
        imgs[i, :, 1:-1, size // 2] = rgb[:, None]
    return imgs


def test_hsv_roundtrip_matches_colorsys() -> None:
    rgb = torch.rand(200, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    hsv = rgb_to_hsv(rgb)
    ref = torch.tensor([colorsys.rgb_to_hsv(*map(float, c)) for c in rgb], dtype=torch.float64)
    assert torch.allclose(hsv, ref, atol=1e-9)
    assert torch.allclose(hsv_to_rgb(hsv), rgb, atol=1e-9)


def test_hue_difference() -> None:
    hues = [0.05, 0.2, 0.4, 0.6, 0.85]
    x = _colored_digits(hues)
    assert torch.allclose(dominant_hue(x).float(), torch.tensor(hues), atol=1e-4)
    assert hue_difference(x, x) == pytest.approx(0.0, abs=1e-9)
    y = _colored_digits([(h + 0.5) % 1.0 for h in hues])
    assert hue_difference(x, y) == pytest.approx(0.5, abs=1e-4)
    z = _colored_digits([(h + 0.1) % 1.0 for h in hues])
    assert hue_difference(x, z) == pytest.approx(0.1, abs=1e-4)
    assert math.isnan(hue_difference(x[:, :1], y[:, :1]))


# -- classifier ----------------------------------------------------------------------------

def _digits() -> tuple[torch.Tensor, ...]:
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.tensor(d.images, dtype=torch.float32)[:, None] / 8.0 - 1.0   # 0..16 -> [-1, 1]
    y = torch.tensor(d.target)
    perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))
    x, y = x[perm], y[perm]
    return x[:1400], y[:1400], x[1400:], y[1400:]


def test_classifier_trains_and_roundtrips(tmp_path) -> None:
    xtr, ytr, xte, yte = _digits()
    t0 = time.perf_counter()
    model, info = train_classifier(xtr, ytr, xte, yte, epochs=6, batch_size=64, lr=2e-3,
                                   seed=0, augment_hue=False, progress=False)
    elapsed = time.perf_counter() - t0
    assert info["test_accuracy"] > 0.85, info
    assert elapsed < 30
    assert model.features(xte[:7]).shape == (7, 128)
    save_classifier(model, tmp_path / "clf", {"name": "cnn_digits"})
    loaded, meta = load_classifier(tmp_path / "clf")
    assert fd_metric_name(meta) == "fd_cnn_digits"
    with torch.no_grad():
        assert torch.equal(loaded(xte), model(xte))
    with pytest.raises(RdmdError):
        load_classifier(tmp_path / "missing")


def test_classifier_is_deterministic_and_hue_augmentation_runs() -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.rand(40, 3, 8, 8, generator=g) * 2 - 1
    y = torch.arange(40) % 3
    state = torch.random.get_rng_state()
    m1, _ = train_classifier(x, y, x, y, 1, 16, 1e-3, seed=3, augment_hue=True, progress=False)
    assert torch.equal(torch.random.get_rng_state(), state)
    m2, _ = train_classifier(x, y, x, y, 1, 16, 1e-3, seed=3, augment_hue=True, progress=False)
    assert all(torch.equal(a, b) for a, b in zip(m1.state_dict().values(),
                                                  m2.state_dict().values(), strict=True))
    assert SmallConvNet(1, 10, 32).features(torch.zeros(2, 1, 32, 32)).shape == (2, 128)


def test_inception_fid_missing_weights(tmp_path) -> None:
    x = _images(n=4)
    with pytest.raises(RdmdError, match="not found"):
        inception_fid(x, x, tmp_path / "no_such_weights.pth")


def test_inception_fid_without_torch_fidelity(tmp_path) -> None:
    import importlib.util

    if importlib.util.find_spec("torch_fidelity") is not None:
        pytest.skip("torch-fidelity is installed; this checks the error path without it")
    weights = tmp_path / "weights.pth"
    weights.write_bytes(b"not weights")
    x = _images(n=4)
    with pytest.raises(RdmdError, match="torch-fidelity"):
        inception_fid(x, x, weights)

"""EDM core against hand-computed numbers and exact Gaussian answers (SPEC §1).

Preconditioning and the DSM loss are checked with numbers written out from the formulas;
the sampler is checked end to end on Gaussians, whose exact denoiser is known, so any error
left is the sampler's own.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from rdmd.analytic import GaussianDenoiser, gaussian_kl, weighted_dm_objective
from rdmd.edm import EDMDenoiser, EDMLoss, LogNormalSigma, LogUniformSigma, preconditioning
from rdmd.sampler import heun_sample, karras_sigmas, sample

torch.set_num_threads(1)

F64 = torch.float64


class AffineBackbone(nn.Module):
    """``F(x, c_noise) = a*x + c_noise``: a known function, so ``D`` can be computed by hand."""

    def __init__(self, a: float = 2.0) -> None:
        super().__init__()
        self.a = a
        self.seen_noise: torch.Tensor | None = None

    def forward(self, x: torch.Tensor, c_noise: torch.Tensor) -> torch.Tensor:
        self.seen_noise = c_noise
        return self.a * x + c_noise.reshape(-1, *([1] * (x.ndim - 1)))


class ZeroBackbone(nn.Module):
    def forward(self, x: torch.Tensor, c_noise: torch.Tensor) -> torch.Tensor:
        return torch.zeros_like(x)


# (sigma, sigma_data) -> (c_skip, c_out, c_in, c_noise), written out from SPEC §1.
HAND = {
    (1.0, 0.5): (0.2, 0.5 / math.sqrt(1.25), 1 / math.sqrt(1.25), 0.0),
    (2.0, 1.0): (0.2, 2 / math.sqrt(5.0), 1 / math.sqrt(5.0), math.log(2.0) / 4),
    (0.5, 0.5): (0.5, 0.25 / math.sqrt(0.5), 1 / math.sqrt(0.5), math.log(0.5) / 4),
}


@pytest.mark.parametrize("key", list(HAND))
def test_preconditioning_coefficients(key: tuple[float, float]) -> None:
    sigma, sd = key
    got = preconditioning(torch.tensor([sigma], dtype=F64), sd)
    for g, want in zip(got, HAND[key], strict=True):
        assert g.item() == pytest.approx(want, abs=1e-12)
    # The plain-number path (the generator's fixed sigma) is the same formula.
    for g, want in zip(preconditioning(sigma, sd), HAND[key], strict=True):
        assert g == pytest.approx(want, abs=1e-12)
    # The two numbers quoted in the brief, literally.
    if key == (1.0, 0.5):
        assert got[0].item() == pytest.approx(0.2) and got[1].item() == pytest.approx(0.4472136)


def test_denoiser_is_cskip_y_plus_cout_f() -> None:
    """``D = c_skip*y + c_out*F(c_in*y, c_noise)``, one sigma per sample, float or tensor."""
    torch.manual_seed(0)
    bb = AffineBackbone(a=2.0)
    den = EDMDenoiser(bb, sigma_data=0.5)
    y = torch.randn(3, 4, dtype=F64)
    sig = torch.tensor([1.0, 0.5, 1.0], dtype=F64)
    out = den(y, sig)
    c_skip, c_out, c_in, c_noise = (torch.tensor([HAND[(s, 0.5)][i] for s in (1.0, 0.5, 1.0)],
                                                 dtype=F64)[:, None] for i in range(4))
    want = c_skip * y + c_out * (2.0 * c_in * y + c_noise)
    torch.testing.assert_close(out, want, rtol=0, atol=1e-12)
    assert bb.seen_noise is not None and bb.seen_noise.shape == (3,)
    # A python float sigma broadcasts over the batch.
    torch.testing.assert_close(den(y, 1.0), den(y, torch.ones(3, dtype=F64)))
    # Image-shaped input: coefficients broadcast per sample.
    yi = torch.randn(2, 3, 4, 4, dtype=F64)
    c = HAND[(1.0, 0.5)]
    torch.testing.assert_close(den(yi, 1.0), c[0] * yi + c[1] * (2.0 * c[2] * yi + c[3]))


def test_score_from_denoiser() -> None:
    torch.manual_seed(1)
    den = EDMDenoiser(AffineBackbone(0.7), sigma_data=0.5)
    y = torch.randn(5, 3, dtype=F64)
    sig = torch.tensor([0.1, 0.5, 1.0, 2.0, 10.0], dtype=F64)
    torch.testing.assert_close(den.score(y, sig), (den(y, sig) - y) / sig[:, None] ** 2)


def test_edm_loss_hand_numbers() -> None:
    """Zero backbone => ``D = c_skip*(y + s*eps)``; numbers worked out by hand.

    Sample 1: s=1, sd=.5 -> c_skip=.2, weight=5; y=(1,1), eps=(0,1): D=(.2,.4),
    errors (.64,.36) -> 3.2, 1.8. Sample 2: s=2 -> c_skip=1/17, weight=4.25; y=(2,0),
    eps=(.5,-1): y_s=(3,-2), D=(3/17,-2/17), errors (31/17)^2, (2/17)^2.
    """
    den = EDMDenoiser(ZeroBackbone(), sigma_data=0.5)
    y = torch.tensor([[1.0, 1.0], [2.0, 0.0]], dtype=F64)
    eps = torch.tensor([[0.0, 1.0], [0.5, -1.0]], dtype=F64)
    sigma = torch.tensor([1.0, 2.0], dtype=F64)
    want = (3.2 + 1.8 + 4.25 * (31 / 17) ** 2 + 4.25 * (2 / 17) ** 2) / 4
    got = EDMLoss()(den, y, sigma=sigma, eps=eps)
    assert got.item() == pytest.approx(want, rel=1e-6)  # loss is float32
    # Only the first sample: 2.5.
    got1 = EDMLoss()(den, y[:1], sigma=sigma[:1], eps=eps[:1])
    assert got1.item() == pytest.approx(2.5, rel=1e-6)


def test_edm_loss_general_backbone_and_weight() -> None:
    """Against the formula with a non-trivial backbone and sigma_data, mean over elements."""
    torch.manual_seed(2)
    sd = 0.8
    den = EDMDenoiser(AffineBackbone(0.3), sigma_data=sd)
    y = torch.randn(6, 2, 3, dtype=F64)
    eps = torch.randn_like(y)
    sigma = torch.tensor([0.01, 0.1, 0.5, 1.0, 5.0, 50.0], dtype=F64)
    s = sigma[:, None, None]
    c_skip = sd**2 / (s**2 + sd**2)
    c_out = s * sd / (s**2 + sd**2).sqrt()
    c_in = 1 / (s**2 + sd**2).sqrt()
    c_noise = s.log() / 4
    ys = y + s * eps
    d = c_skip * ys + c_out * (0.3 * c_in * ys + c_noise)
    want = ((s**2 + sd**2) / (s * sd) ** 2 * (d - y) ** 2).mean()
    got = EDMLoss()(den, y, sigma=sigma, eps=eps)
    assert got.item() == pytest.approx(want.item(), rel=1e-6)


def test_lognormal_sigma_moments() -> None:
    g = torch.Generator().manual_seed(0)
    s = LogNormalSigma()(100_000, generator=g)
    assert s.shape == (100_000,) and bool((s > 0).all())
    ls = s.double().log()
    assert ls.mean().item() == pytest.approx(-1.2, abs=0.02)
    assert ls.std().item() == pytest.approx(1.2, abs=0.02)
    # Reproducible from the generator's seed.
    s2 = LogNormalSigma()(100_000, generator=torch.Generator().manual_seed(0))
    assert torch.equal(s, s2)


def test_loguniform_sigma_bounds_and_uniform_log() -> None:
    lo, hi = 0.02, 80.0
    s = LogUniformSigma(lo, hi)(100_000, generator=torch.Generator().manual_seed(0))
    assert s.min().item() >= lo * (1 - 1e-6) and s.max().item() <= hi * (1 + 1e-6)
    u = ((s.double().log() - math.log(lo)) / (math.log(hi) - math.log(lo))).sort().values
    # Kolmogorov-Smirnov distance to U(0, 1); the 1% critical value at n=1e5 is ~0.0052.
    n = u.numel()
    grid = torch.arange(1, n + 1, dtype=F64) / n
    ks = torch.maximum((grid - u).abs(), (u - (grid - 1 / n)).abs()).max().item()
    assert ks < 0.0052
    assert u.mean().item() == pytest.approx(0.5, abs=0.005)
    assert u.var().item() == pytest.approx(1 / 12, abs=0.002)


@pytest.mark.parametrize("n", [2, 5, 18, 40])
def test_karras_sigmas(n: int) -> None:
    s = karras_sigmas(n)
    assert s.shape == (n + 1,)
    assert s[0].item() == pytest.approx(80.0, rel=1e-12)
    assert s[-2].item() == pytest.approx(0.002, rel=1e-9)
    assert s[-1].item() == 0.0
    assert bool((s[1:] < s[:-1]).all())
    # rho = 7: sigma^(1/7) is linear in the step index.
    r = s[:-1] ** (1 / 7)
    torch.testing.assert_close(r[1:] - r[:-1], (r[1] - r[0]).expand(n - 1))


def test_karras_sigmas_single_level_and_errors() -> None:
    assert karras_sigmas(1).tolist() == [80.0, 0.0]
    with pytest.raises(ValueError):
        karras_sigmas(0)


class CallCounter:
    def __init__(self, fn: GaussianDenoiser) -> None:
        self.fn = fn
        self.calls = 0

    def __call__(self, y: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return self.fn(y, sigma)


@pytest.mark.parametrize("n", [1, 2, 18])
def test_heun_evaluation_count(n: int) -> None:
    den = CallCounter(GaussianDenoiser(0.0, torch.eye(2, dtype=F64)))
    heun_sample(den, torch.randn(4, 2) * 80, karras_sigmas(n))
    assert den.calls == 2 * n - 1  # 35 for the default 18 levels


def test_gaussian_denoiser_closed_form() -> None:
    """``D`` is the posterior mean and its score is ``-(C + s^2 I)^{-1}(y - m)``."""
    m = torch.tensor([1.0, -0.5], dtype=F64)
    c = torch.tensor([[2.0, 0.6], [0.6, 0.5]], dtype=F64)
    den = GaussianDenoiser(m, c)
    assert den.sigma_data == pytest.approx(math.sqrt(1.25))
    torch.manual_seed(3)
    y = torch.randn(7, 2, dtype=F64)
    sig = torch.rand(7, dtype=F64) * 3 + 0.01
    want = torch.stack([m + c @ torch.linalg.solve(c + s**2 * torch.eye(2, dtype=F64), yy - m)
                        for yy, s in zip(y, sig, strict=True)])
    torch.testing.assert_close(den(y, sig), want)
    score = -torch.linalg.solve(c + sig[:, None, None] ** 2 * torch.eye(2, dtype=F64),
                                (y - m).unsqueeze(-1)).squeeze(-1)
    torch.testing.assert_close(den.score(y, sig), score)
    # float sigma and dtype round trip
    assert den(y.float(), 0.3).dtype == torch.float32
    torch.testing.assert_close(den(y, 0.3), den(y, torch.full((7,), 0.3, dtype=F64)))


def test_gaussian_kl_known_values() -> None:
    # KL(N(0,1) || N(1,4)) = ln 2 + (1 + 1)/8 - 1/2
    one = torch.ones(1, 1, dtype=F64)
    kl = gaussian_kl(torch.zeros(1), one, torch.ones(1), 4 * one)
    assert kl.item() == pytest.approx(math.log(2) + 0.25 - 0.5, rel=1e-12)
    # Against torch.distributions for a full-covariance pair.
    m0, m1 = torch.tensor([0.3, -1.0], dtype=F64), torch.tensor([1.0, 0.2], dtype=F64)
    s0 = torch.tensor([[1.0, 0.3], [0.3, 0.8]], dtype=F64)
    s1 = torch.tensor([[2.0, -0.4], [-0.4, 1.1]], dtype=F64)
    ref = torch.distributions.kl_divergence(
        torch.distributions.MultivariateNormal(m0, s0),
        torch.distributions.MultivariateNormal(m1, s1))
    assert gaussian_kl(m0, s0, m1, s1).item() == pytest.approx(ref.item(), rel=1e-10)
    assert gaussian_kl(m0, s0, m0, s0).item() == pytest.approx(0.0, abs=1e-12)


def test_weighted_dm_objective_is_zero_at_match_and_sums_kls() -> None:
    c = torch.tensor([[2.25, 0.0], [0.0, 2.25]], dtype=F64)
    rot = torch.tensor([[0.0, -1.0], [1.0, 0.0]], dtype=F64)
    s = torch.tensor([0.1, 1.0, 10.0], dtype=F64)
    w = torch.tensor([1.0, 2.0, 3.0], dtype=F64)
    # Any rotation times 1.5 matches N(0, 1.5^2 I): zero objective.
    assert weighted_dm_objective(1.5 * rot, c, s, w).item() == pytest.approx(0.0, abs=1e-12)
    a = torch.tensor([[1.0, 0.2], [0.0, 0.9]], dtype=F64)
    eye = torch.eye(2, dtype=F64)
    want = sum(wk * gaussian_kl(torch.zeros(2), a @ a.T + sk**2 * eye, torch.zeros(2),
                                c + sk**2 * eye) for sk, wk in zip(s, w, strict=True))
    assert weighted_dm_objective(a, c, s, w).item() == pytest.approx(float(want), rel=1e-12)


M2 = torch.tensor([1.0, -0.5], dtype=F64)
C2 = torch.tensor([[2.0, 0.6], [0.6, 0.5]], dtype=F64)


@pytest.mark.parametrize(("n_steps", "cov_tol"), [(18, 0.12), (64, 0.03)])
def test_heun_samples_anisotropic_gaussian(n_steps: int, cov_tol: float) -> None:
    """Heun from N(0, 80^2 I) reproduces N(m, C) with the exact denoiser.

    What can err: MC (mean ~0.01, covariance ~1-2 % at 20k samples), the start's missing mean
    (biases the mean by about -sqrt(C) m / 80 ~ -0.02) and the sampler's truncation error. The
    last is not small at 18 levels: measured relative covariance error 0.090 (stds 4-5 % too
    large) at 18, 0.026 at 36, 0.013 at 64 levels, the same for two seeds.
    """
    g = torch.Generator().manual_seed(0)
    x = sample(GaussianDenoiser(M2, C2), (20_000, 2), n_steps=n_steps, generator=g).double()
    assert x.shape == (20_000, 2)
    assert (x.mean(0) - M2).abs().max().item() < 0.06
    cov = torch.cov(x.T)
    assert ((cov - C2).norm() / C2.norm()).item() < cov_tol
    corr = cov[0, 1] / (cov[0, 0] * cov[1, 1]).sqrt()
    assert corr.item() == pytest.approx(0.6, abs=0.02)


@pytest.mark.parametrize(("n_steps", "rel"), [(18, 0.06), (64, 0.02)])
def test_heun_samples_1d(n_steps: int, rel: float) -> None:
    """N(0, 1.5^2): std 1.566 at 18 levels (measured, truncation error), ~1.51 at 64."""
    g = torch.Generator().manual_seed(1)
    sigmas = karras_sigmas(n_steps)
    x0 = torch.randn(20_000, 1, generator=g) * sigmas[0].item()
    x = heun_sample(GaussianDenoiser(0.0, [[2.25]]), x0, sigmas).double()
    assert x.mean().item() == pytest.approx(0.0, abs=0.04)
    assert x.std().item() == pytest.approx(1.5, rel=rel)


def test_heun_is_second_order() -> None:
    """On a 1-D Gaussian the ODE solution is ``x(s) = x_T sqrt((c + s^2)/(c + 80^2))``; the
    sampler's error of that map falls 4x when the levels double (measured 4.3x and 4.2x)."""
    den = GaussianDenoiser(0.0, [[2.25]])
    exact = 1.5 / math.sqrt(2.25 + 80.0**2)

    def err(n: int) -> float:
        out = heun_sample(den, torch.ones(1, 1, dtype=F64), karras_sigmas(n))
        return abs(out.item() / exact - 1)

    e25, e50, e100 = err(25), err(50), err(100)
    assert 3.0 < e25 / e50 < 5.5 and 3.0 < e50 / e100 < 5.5
    assert e100 < 2e-3

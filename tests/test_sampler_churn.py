"""EDM's stochastic sampler (Karras et al. 2022, Alg. 2) as an option of rdmd's Heun sampler.

Off by default and then exactly the deterministic sampler (same numbers, same random draws);
on, it is reproducible from a generator, its noise really enters, one step matches the
algorithm worked by hand, and with an exact denoiser it still samples the right Gaussian.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from rdmd.analytic import GaussianDenoiser
from rdmd.sampler import Churn, heun_sample, karras_sigmas, sample

F64 = torch.float64


class TinyDenoiser(nn.Module):
    """A small nonlinear denoiser, so equality tests are not helped by linearity."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.net = nn.Sequential(nn.Linear(4, 16), nn.SiLU(), nn.Linear(16, 3))

    def forward(self, y: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        s = sigma.reshape(-1, 1).to(y.dtype)
        return y / (1 + s**2) + self.net(torch.cat([y / (1 + s**2).sqrt(), s.log()], 1))


def reference_heun(denoise: nn.Module, x: torch.Tensor, sigmas: torch.Tensor) -> torch.Tensor:
    """Alg. 1 written out as the sampler had it before churn existed."""
    for s_cur, s_next in zip(sigmas[:-1].tolist(), sigmas[1:].tolist(), strict=True):
        d_cur = (x - denoise(x, torch.full((x.shape[0],), s_cur))) / s_cur
        x_next = x + (s_next - s_cur) * d_cur
        if s_next > 0:
            d_next = (x_next - denoise(x_next, torch.full((x.shape[0],), s_next))) / s_next
            x_next = x + (s_next - s_cur) * 0.5 * (d_cur + d_next)
        x = x_next
    return x


@torch.no_grad()
@pytest.mark.parametrize("off", [None, 0, 0.0, Churn(0.0), Churn(0.0, 0.1, 1.0, 1.007)])
def test_churn_zero_is_the_deterministic_sampler_exactly(off: object) -> None:
    den = TinyDenoiser()
    g_old, g_new = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    x0 = torch.randn(64, 3, generator=g_old) * 80
    want = reference_heun(den, x0, karras_sigmas(12))
    got = sample(den, (64, 3), n_steps=12, generator=g_new, churn=off)  # type: ignore[arg-type]
    assert torch.equal(got, want)
    # and it drew nothing more than the start noise
    assert torch.equal(g_old.get_state(), g_new.get_state())


@torch.no_grad()
def test_churn_is_reproducible_and_its_noise_enters() -> None:
    den = TinyDenoiser()
    x0 = torch.randn(64, 3, generator=torch.Generator().manual_seed(1)) * 80
    sig = karras_sigmas(12)

    def run(seed: int, churn: float | None = 40.0) -> torch.Tensor:
        return heun_sample(den, x0, sig, churn=churn,
                           generator=torch.Generator().manual_seed(seed))

    a, b, c, det = run(7), run(7), run(8), run(7, None)
    assert torch.equal(a, b)
    # the same start, another noise seed: every sample moves, by far more than float error
    assert (a - c).abs().amax(1).min().item() > 1e-3
    assert (a - det).abs().amax(1).min().item() > 1e-3
    assert torch.isfinite(a).all()


@torch.no_grad()
def test_churn_keeps_the_evaluation_count() -> None:
    calls = []

    def den(y: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        calls.append(s[0].item())
        return torch.zeros_like(y)

    heun_sample(den, torch.ones(2, 2), karras_sigmas(18), churn=80.0,
                generator=torch.Generator().manual_seed(0))
    assert len(calls) == 35
    # each step's first evaluation is at the raised level (1 + gamma) sigma_i
    gamma = min(80 / 18, math.sqrt(2) - 1)
    assert calls[0] == pytest.approx(80 * (1 + gamma))


@torch.no_grad()
@pytest.mark.parametrize(("churn", "s_hat"), [
    (Churn(0.2), 2.4),                                # gamma = 0.2 / 1 step
    (Churn(5.0), 2 * math.sqrt(2)),                   # capped at sqrt(2) - 1
    (Churn(0.2, s_tmin=0.0, s_tmax=1.5), 2.0),        # sigma 2 outside [s_tmin, s_tmax]
    (Churn(0.2, s_tmin=2.5), 2.0),
    (Churn(0.2, s_noise=1.5), 2.4),
])
def test_one_step_by_hand(churn: Churn, s_hat: float) -> None:
    """With ``D = 0`` one step from sigma 2 to 1 maps ``x_hat`` to ``x_hat / s_hat`` (Euler
    and Heun agree), and ``x_hat = x + s_noise sqrt(s_hat^2 - 4) eps``."""
    x = torch.randn(1000, 2, dtype=F64, generator=torch.Generator().manual_seed(0))
    eps = torch.randn(1000, 2, dtype=F64, generator=torch.Generator().manual_seed(3))
    got = heun_sample(lambda y, s: torch.zeros_like(y), x, torch.tensor([2.0, 1.0], dtype=F64),
                      churn=churn, generator=torch.Generator().manual_seed(3))
    want = (x + churn.s_noise * math.sqrt(max(s_hat**2 - 4, 0.0)) * eps) / s_hat
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)


def test_stochastic_sampler_still_samples_the_gaussian() -> None:
    """With the exact denoiser the SDE has the same marginals as the ODE: N(m, C) again.

    Its truncation error is larger than the ODE's at few levels (relative covariance error
    measured 0.21 with churn 40 at 18 levels, against 0.09 deterministic) and falls with more:
    0.035 at 64 levels, 0.004 at 256 (MC error ~0.01-0.02 at 20k samples).
    """
    m = torch.tensor([1.0, -0.5], dtype=F64)
    c = torch.tensor([[2.0, 0.6], [0.6, 0.5]], dtype=F64)
    g = torch.Generator().manual_seed(0)
    x = sample(GaussianDenoiser(m, c), (20_000, 2), n_steps=256, generator=g,
               churn=40.0).double()
    assert (x.mean(0) - m).abs().max().item() < 0.04
    assert ((torch.cov(x.T) - c).norm() / c.norm()).item() < 0.03


@pytest.mark.parametrize("bad", [dict(s_churn=-1.0), dict(s_churn=math.inf),
                                 dict(s_churn=1.0, s_tmin=2.0, s_tmax=1.0),
                                 dict(s_churn=1.0, s_noise=0.0)])
def test_bad_churn_settings_are_refused(bad: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        Churn(**bad)


def test_sample_takes_explicit_sigmas() -> None:
    """``sigmas`` replaces the rho schedule (e.g. a diffusers teacher's discrete levels)."""
    den = TinyDenoiser()
    sig = torch.tensor([50.0, 5.0, 0.5, 0.0], dtype=F64)
    g1, g2 = torch.Generator().manual_seed(2), torch.Generator().manual_seed(2)
    got = sample(den, (8, 3), generator=g1, sigmas=sig)
    want = reference_heun(den, torch.randn(8, 3, generator=g2) * 50.0, sig)
    assert torch.equal(got, want)

"""Why a distilled map misses the Gaussian OT map (Theorem 3.1, d = 8): distribution or coupling?

For a generator run (``--gen DIR``, source ``gaussian:d=D``, target a built-in
``gaussian:mean=..;cov=..``): the relative gap to the closed-form OT map ``T`` split into the
gap of ``G`` to the OT map onto *its own* output Gaussian (the coupling: what the cost term
selects) and the gap of that map to ``T`` (the distribution: what the DM term fits), with
the eigenvalues of the output and target covariances; and split another way, into what
``G``'s best affine fit misses (``nonlinear_part``) and that fit's gap to ``T``
(``affine_fit_to_T``), itself split into the symmetric and the antisymmetric part of the
fit's matrix minus ``T``'s (``affine_symmetric``, ``affine_rotation``; the mean offset is the
rest). For a teacher run (``--teacher DIR``): the relative error of its denoiser against
the exact Gaussian denoiser ``m + C (C + sigma^2 I)^-1 (y - m)`` at each noise level
(``|D - D*| / |D* - y|``, on ``y ~ N(m, C + sigma^2 I)``, in the network's units), and the
gap to ``T`` of the OT map onto the Gaussian fit of its own samples (``samples_map_to_T``:
the floor a generator that matches the teacher's law sits on).

    python experiments/gauss_d8_diagnosis.py --gen runs/d8_diag/e1_fresh_8k --teacher \\
        runs/lambda_conditioned_full/gauss_d8/teacher runs/d8_diag/teacher_5k

Results of the runs in docs/lambda.md ("d = 8: the generator's start, sigma_g").
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from scipy.linalg import sqrtm

import rdmd
from rdmd.data.vectors import parse_spec

SIGMAS = (0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 20.0)


def target_of(run: Path) -> tuple[np.ndarray, np.ndarray]:
    """The run's target Gaussian (a generator's is its teacher's target)."""
    cfg = json.loads((run / "config.json").read_text())
    spec = cfg["target"]
    if spec is None:
        spec = json.loads((Path(cfg["teacher"]) / "config.json").read_text())["target"]
    name, params = parse_spec(spec)
    if name != "gaussian" or "cov" not in params:
        raise SystemExit(f"{run}: target {spec!r} is not a gaussian with a cov")
    cov = np.asarray(params["cov"], float)
    return np.broadcast_to(np.asarray(params.get("mean", 0.0), float), len(cov)).copy(), cov


def inputs_and_ot(mean: np.ndarray, cov: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """The fixed held-out inputs ``x ~ N(0, I)`` and the closed-form OT map ``T(x)``."""
    x = np.random.default_rng(5).standard_normal((n, len(mean))).astype(np.float32)
    return x, x @ np.real(sqrtm(cov)).T + mean


def target_in_units(model: rdmd.Model, mean: np.ndarray, cov: np.ndarray
                    ) -> tuple[np.ndarray, np.ndarray]:
    """The target Gaussian's mean and covariance in the network's normalised units."""
    mz = model.normalizer.encode(torch.tensor(mean, dtype=torch.float32)[None])
    return mz.numpy()[0].astype(float), cov / float(model.normalizer.scale) ** 2


def generator_report(run: Path, n: int, lam: float | None) -> dict[str, object]:
    mean, cov = target_of(run)
    x, t = inputs_and_ot(mean, cov, n)
    y = rdmd.translate(rdmd.load_model(run), x, **({"lam": lam} if lam is not None else {}))
    my, cy = y.mean(0), np.cov(y.T)
    own = x @ np.real(sqrtm(cy)).T + my
    den = float(((t - x) ** 2).sum(1).mean())
    # the other split: G's best affine fit (least squares) and what no affine map explains
    xa = np.c_[x, np.ones(len(x))]
    coef = np.linalg.lstsq(xa, y, rcond=None)[0]
    lin = xa @ coef
    # and the fit's matrix against T's: a symmetric part and an antisymmetric one (a rotation
    # of the input, which leaves G's output law unchanged); E||E x||^2 = ||E||_F^2 on N(0, I)
    e = coef[:-1].T - np.real(sqrtm(cov))
    return {"run": str(run), "lam": lam,
            "nonlinear_part": float(((y - lin) ** 2).sum(1).mean()) / den,
            "affine_fit_to_T": float(((lin - t) ** 2).sum(1).mean()) / den,
            "affine_symmetric": float((((e + e.T) / 2) ** 2).sum()) / den,
            "affine_rotation": float((((e - e.T) / 2) ** 2).sum()) / den,
            "gap_to_T": float(((y - t) ** 2).sum(1).mean()) / den,
            "gap_to_own_gaussian_ot_map": float(((y - own) ** 2).sum(1).mean()) / den,
            "own_map_to_T": float(((own - t) ** 2).sum(1).mean()) / den,
            "eig_output": np.round(np.linalg.eigvalsh(cy), 3).tolist(),
            "eig_target": np.round(np.linalg.eigvalsh(cov), 3).tolist()}


def teacher_report(run: Path, n: int) -> dict[str, object]:
    m = rdmd.load_model(run)
    mean, cov = target_of(run)
    d = len(mean)
    mz, cz = target_in_units(m, mean, cov)
    rng = np.random.default_rng(0)
    errs = {}
    for s in SIGMAS:
        y = mz + rng.standard_normal((n, d)) @ np.linalg.cholesky(cz + s * s * np.eye(d)).T
        with torch.no_grad():
            den = m.denoiser(torch.tensor(y, dtype=torch.float32), s).numpy()
        exact = mz + (y - mz) @ np.linalg.solve(cz + s * s * np.eye(d), cz).T
        errs[f"{s:g}"] = float(np.sqrt(((den - exact) ** 2).sum(1).mean()
                                       / ((exact - y) ** 2).sum(1).mean()))
    # the teacher's own samples (32 Heun steps, as its evaluation): a generator matches their
    # law, so the OT map onto their Gaussian fit is as close to T as distillation can get
    from rdmd.sampler import sample

    with torch.no_grad():
        z = sample(m.denoiser, (n, d), n_steps=32, generator=torch.Generator().manual_seed(0))
    ys = m.normalizer.decode(z).numpy().astype(float)
    x, t = inputs_and_ot(mean, cov, n)
    own = x @ np.real(sqrtm(np.cov(ys.T))).T + ys.mean(0)
    return {"run": str(run), "denoiser_rel_error": errs,
            "samples_map_to_T": float(((own - t) ** 2).sum(1).mean())
            / float(((t - x) ** 2).sum(1).mean()),
            "eig_samples": np.round(np.linalg.eigvalsh(np.cov(ys.T)), 3).tolist(),
            "eig_target": np.round(np.linalg.eigvalsh(cov), 3).tolist()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--gen", nargs="*", default=[], help="distilled runs")
    ap.add_argument("--teacher", nargs="*", default=[], help="teacher runs")
    ap.add_argument("--lam", type=float, help="a conditioned generator's lambda")
    ap.add_argument("--n", type=int, default=20000)
    ap.add_argument("--json", help="also write the reports here")
    a = ap.parse_args()
    torch.set_num_threads(1)
    out = [generator_report(Path(g), a.n, a.lam) for g in a.gen]
    out += [teacher_report(Path(t), a.n) for t in a.teacher]
    for r in out:
        print(json.dumps(r))
    if a.json:
        Path(a.json).write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()

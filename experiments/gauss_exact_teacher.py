"""Distil a Gaussian target with the *exact* teacher: is the gap to the OT map the teacher's?

Theorem 3.1's runs (``--source gaussian:d=D``, a teacher trained on ``gaussian:...;cov=..``)
leave a gap to the closed-form OT map ``T``. Here the same ``rdmd distill`` runs with the
trained teacher's denoiser replaced, for the DM term only, by the exact denoiser of the
target Gaussian in the teacher's units (:class:`rdmd.analytic.GaussianDenoiser`). The
generator and the fake score still start as copies of the trained network, so the start,
the fake score and the optimiser are as in the real run: what changes is only the teacher's
error. If the gap falls, the teacher bounds the map; if not, the distillation does.

    T=runs/lambda_conditioned_full/gauss_d8/teacher
    python experiments/gauss_exact_teacher.py --teacher $T \\
        --out runs/d8_cont/exact_teacher_8k -- --lam 0.01 --steps 8000 --set sigma_g=0.3 \\
        --set lr_schedule=cosine --set lam_start=0.3 --set lam_anneal=0.8

Everything after ``--`` goes to ``rdmd distill`` (the run folder, resume and the report are
rdmd's own). The run's ``config.json`` does not record the swap: its folder name should.
Results: docs/twod.md ("What bounds the d = 8 map").
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import torch

import rdmd
from rdmd.analytic import GaussianDenoiser
from rdmd.methods import METHODS

sys.path.insert(0, str(Path(__file__).parent))
from gauss_d8_diagnosis import target_in_units, target_of  # noqa: E402


def exact_denoiser(teacher_dir: Path) -> GaussianDenoiser:
    """The target Gaussian's exact denoiser in the teacher's normalised units."""
    mz, cz = target_in_units(rdmd.load_model(teacher_dir), *target_of(teacher_dir))
    return GaussianDenoiser(torch.tensor(mz), torch.tensor(cz))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--teacher", required=True, type=Path)
    ap.add_argument("--source", default=None, help="default: gaussian:d=<the target's d>")
    ap.add_argument("--out", required=True)
    ap.add_argument("distill_args", nargs="*", help="after --: rdmd distill's own flags")
    a = ap.parse_args()
    exact = exact_denoiser(a.teacher)
    source = a.source or f"gaussian:d={exact.dim}"
    base = METHODS["rdmd"].from_config

    def with_exact_teacher(teacher: Any, cfg: Any, cost: Any) -> Any:
        m = base(teacher, cfg, cost)
        m.teacher = exact.to(next(teacher.parameters()).device)
        return m

    METHODS["rdmd"].from_config = with_exact_teacher  # type: ignore[method-assign]
    from rdmd.cli import main as cli

    sys.exit(cli(["distill", "--source", source, "--teacher", str(a.teacher), "--out", a.out,
                  *a.distill_args]))


if __name__ == "__main__":
    main()

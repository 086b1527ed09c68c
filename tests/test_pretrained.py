"""The shipped models: small enough to live in the repository (issue 14: under 30 MB in all),
and every one of them loads."""

from __future__ import annotations

from pathlib import Path

import pytest

import rdmd
from rdmd.models import load_model

PRETRAINED = Path(rdmd.__file__).parent / "pretrained"
LIMIT_MB = 30.0


def test_shipped_model_files_stay_under_the_limit() -> None:
    files = [p for p in PRETRAINED.rglob("*") if p.is_file()]
    total = sum(p.stat().st_size for p in files) / 2**20
    biggest = sorted(files, key=lambda p: p.stat().st_size)[-3:]
    assert total < LIMIT_MB, (f"{total:.1f} MB shipped (limit {LIMIT_MB:g}); largest: "
                              f"{', '.join(str(p.relative_to(PRETRAINED)) for p in biggest)}")


@pytest.mark.parametrize("model_json", sorted(PRETRAINED.rglob("model.json")),
                         ids=lambda p: str(p.parent.relative_to(PRETRAINED)))
def test_every_shipped_model_loads(model_json: Path) -> None:
    model = load_model(model_json.parent)
    assert model.role in ("teacher", "generator")

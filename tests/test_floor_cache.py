"""The W2 floor cache: the same values as solving, solved once per set of point sets, and
never a reason for an evaluation to fail."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from rdmd import metrics
from rdmd.data import load_domain
from rdmd.evaluation import noise_floor
from rdmd.metrics import floor_cache


def _sets(seed: int, n: int = 200) -> list[tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(seed)
    return [(rng.normal(size=(n, 2)), rng.normal(size=(n, 2))) for _ in range(3)]


class Counter:
    def __init__(self, sets: list[tuple[np.ndarray, np.ndarray]]) -> None:
        self.sets, self.calls = sets, 0

    def __call__(self) -> list[float]:
        self.calls += 1
        return metrics.w2_many(self.sets)


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("RDMD_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_solved_once_then_read(cache: Path) -> None:
    sets = _sets(0)
    first = Counter(sets)
    a = floor_cache.cached_values("w2_floor", sets, first)
    again = Counter(sets)
    b = floor_cache.cached_values("w2_floor", sets, again)
    assert a == b == metrics.w2_many(sets) and (first.calls, again.calls) == (1, 0)
    assert len(list((cache / "floors").glob("*.json"))) == 1
    # other sets (one point moved) are another computation
    moved = [(s[0].copy(), s[1]) for s in sets]
    moved[2][0][0, 0] += 1e-9
    other = Counter(moved)
    floor_cache.cached_values("w2_floor", moved, other)
    assert other.calls == 1 and len(list((cache / "floors").glob("*.json"))) == 2


def test_a_broken_or_foreign_file_is_recomputed(cache: Path) -> None:
    sets = _sets(1)
    truth = floor_cache.cached_values("w2_floor", sets, Counter(sets))
    (path,) = (cache / "floors").glob("*.json")
    for content in ("{not json", json.dumps({"digest": "x", "values": [1.0, 2.0, 3.0]}),
                    json.dumps({"values": "abc"})):
        path.write_text(content)
        c = Counter(sets)
        assert floor_cache.cached_values("w2_floor", sets, c) == truth and c.calls == 1


def test_off_and_unwritable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sets = _sets(2)
    monkeypatch.setenv("RDMD_CACHE_DIR", "off")
    assert floor_cache.cache_dir() is None
    c = Counter(sets)
    floor_cache.cached_values("w2_floor", sets, c)
    floor_cache.cached_values("w2_floor", sets, c)
    assert c.calls == 2
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    monkeypatch.setenv("RDMD_CACHE_DIR", str(blocker / "sub"))  # cannot be created
    assert floor_cache.cached_values("w2_floor", sets, Counter(sets)) == metrics.w2_many(sets)


def test_cache_location(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("RDMD_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert floor_cache.cache_dir() == tmp_path / "rdmd"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert floor_cache.cache_dir() == Path.home() / ".cache" / "rdmd"


def test_evaluation_floor_is_the_solved_one(cache: Path) -> None:
    """A built-in target's floor read from the cache equals the one solved from its sets."""
    tgt = load_domain("8gaussians", 300, 300, 0)
    sets, fl = noise_floor(tgt, 300, 2)
    sets2, fl2 = noise_floor(tgt, 300, 2)
    assert fl == fl2 and fl == metrics.w2_noise_floor(sets)
    assert all(np.array_equal(a, c) and np.array_equal(b, d)
               for (a, b), (c, d) in zip(sets, sets2, strict=True))


def test_shipped_floors_are_the_solved_ones(cache: Path) -> None:
    """The package's table (``floors.json``) holds what solving gives: checked on the stable
    estimate's 12 pairs of 8 Gaussians, which every 2-D evaluation of that target uses."""
    from rdmd.evaluation import FLOOR_SEED, STABLE_N, STABLE_PAIRS, stable_floor_sets

    tgt = load_domain("8gaussians", 300, 300, 0)
    sets = stable_floor_sets(tgt, STABLE_N, STABLE_PAIRS, FLOOR_SEED)
    shipped = floor_cache._shipped().get(floor_cache._digest("w2_floor", sets))
    assert shipped is not None, "floors.json lacks 8 Gaussians' stable floor: rewrite it " \
                                "with python -m rdmd.metrics.floor_cache"
    assert shipped == pytest.approx(metrics.w2_many(sets), rel=1e-9)
    c = Counter(sets)
    assert floor_cache.cached_values("w2_floor", sets, c) == shipped and c.calls == 0
    assert not (cache / "floors").exists()  # served from the package, nothing written

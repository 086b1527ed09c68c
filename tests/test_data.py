"""Data layer: built-in distributions, user ``.npy`` arrays and the normaliser.

The built-ins must have the shapes and moments they promise, independent train/test sets and
independent streams per spec; ``.npy`` files are split deterministically and every malformed
array is a one-line :class:`RdmdError` (never a traceback, never an unpickle).
"""

from __future__ import annotations

import pathlib

import numpy as np
import pytest
import torch

from rdmd.data import Normalizer, load_domain
from rdmd.data.vectors import read_npy
from rdmd.errors import RdmdError

torch.set_num_threads(1)


# -- built-in distributions ----------------------------------------------------------------

@pytest.mark.parametrize(("spec", "dim"), [
    ("gaussian", 2),
    ("gaussian:d=8;std=1.5", 8),
    ("gaussian:mean=[1,2];cov=[[2,0.5],[0.5,1]]", 2),
    ("8gaussians", 2),
    ("swissroll", 2),
    ("moons", 2),
])
def test_builtin_shapes(spec: str, dim: int) -> None:
    dom = load_domain(spec, n_train=123, n_test=45, seed=0)
    assert dom.train.shape == (123, dim)
    assert dom.test.shape == (45, dim)
    assert dom.train.dtype == torch.float32 and dom.test.dtype == torch.float32
    assert dom.shape == (dim,) and dom.dim == dim
    assert dom.kind == "vector"
    assert dom.sampler is not None
    assert torch.isfinite(dom.train).all() and torch.isfinite(dom.test).all()


def test_gaussian_mean_and_cov_match_request() -> None:
    mean = np.array([1.0, 2.0])
    cov = np.array([[2.0, 0.5], [0.5, 1.0]])
    dom = load_domain("gaussian:mean=[1,2];cov=[[2,0.5],[0.5,1]]", 20000, 10, seed=3)
    x = dom.train.double().numpy()
    # standard errors: mean ~0.01, cov entries ~0.02; tolerances are >= 5 of them
    np.testing.assert_allclose(x.mean(0), mean, atol=0.06)
    np.testing.assert_allclose(np.cov(x.T), cov, atol=0.12)
    assert dom.info["mean"] == [1.0, 2.0]
    assert dom.info["cov"] == cov.tolist()


def test_gaussian_std_and_dimension() -> None:
    x = load_domain("gaussian:d=8;std=1.5", 20000, 10, seed=0).train.double().numpy()
    np.testing.assert_allclose(x.std(0), 1.5, atol=0.05)
    np.testing.assert_allclose(x.mean(0), 0.0, atol=0.06)
    off = np.cov(x.T) - np.diag(np.diag(np.cov(x.T)))
    assert np.abs(off).max() < 0.12


def test_eight_gaussians_parameters() -> None:
    x = load_domain("8gaussians:radius=2;std=0.05", 4000, 10, seed=0).train.numpy()
    r = np.linalg.norm(x, axis=1)
    assert np.abs(r - 2.0).max() < 0.4
    angles = np.round(np.arctan2(x[:, 1], x[:, 0]) / (np.pi / 4)) % 8
    assert len(np.unique(angles)) == 8


@pytest.mark.parametrize("spec", ["gaussian", "8gaussians", "moons", "swissroll"])
def test_train_and_test_are_independent(spec: str) -> None:
    dom = load_domain(spec, 2000, 2000, seed=0)
    a, b = dom.train.double().numpy(), dom.test.double().numpy()
    assert not np.allclose(a, b)
    # no sample (row) shared between the two sets
    assert not set(map(tuple, a.tolist())) & set(map(tuple, b.tolist()))
    for j in range(a.shape[1]):
        c = np.corrcoef(a[:, j], b[:, j])[0, 1]
        assert abs(c) < 0.1, f"train/test correlated in column {j}: {c}"


def test_different_specs_same_seed_are_not_paired() -> None:
    a = load_domain("gaussian", 2000, 100, seed=0).train.double().numpy()
    b = load_domain("gaussian:std=1.5", 2000, 100, seed=0).train.double().numpy()
    assert not np.allclose(b, 1.5 * a, rtol=1e-3, atol=1e-4)
    for j in range(2):
        c = np.corrcoef(a[:, j], b[:, j])[0, 1]
        assert abs(c) < 0.1, f"'gaussian' and 'gaussian:std=1.5' correlated: {c}"


def test_same_spec_and_seed_reproduce_and_seed_matters() -> None:
    d1 = load_domain("moons", 300, 50, seed=7)
    d2 = load_domain("moons", 300, 50, seed=7)
    assert torch.equal(d1.train, d2.train) and torch.equal(d1.test, d2.test)
    d3 = load_domain("moons", 300, 50, seed=8)
    assert not torch.equal(d1.train, d3.train)


# -- .npy files -----------------------------------------------------------------------------

def _save(path: pathlib.Path, a: np.ndarray, allow_pickle: bool = False) -> str:
    np.save(path, a, allow_pickle=allow_pickle)
    return str(path)


def test_npy_split_is_deterministic_and_complete(tmp_path: pathlib.Path) -> None:
    a = np.arange(100, dtype=np.float64).reshape(50, 2) * 1.5 + 3.0
    p = _save(tmp_path / "x.npy", a)
    d1 = load_domain(p)
    d2 = load_domain(p, n_train=7, n_test=3, seed=99)  # ignored for files
    assert torch.equal(d1.train, d2.train) and torch.equal(d1.test, d2.test)
    assert d1.train.shape == (40, 2) and d1.test.shape == (10, 2)
    assert d1.train.dtype == torch.float32
    union = torch.cat([d1.train, d1.test]).double().numpy()
    # the union is exactly the file's rows (as a multiset), nothing shared between splits
    np.testing.assert_array_equal(union[np.argsort(union[:, 0])], a)
    assert not set(d1.train[:, 0].tolist()) & set(d1.test[:, 0].tolist())
    # a permutation, not the file order: the held-out part is not just the last rows
    assert not np.array_equal(d1.test.numpy(), a[-10:].astype(np.float32))
    assert d1.sampler is None


def test_npy_integer_array_is_accepted(tmp_path: pathlib.Path) -> None:
    p = _save(tmp_path / "i.npy", np.arange(20, dtype=np.int64).reshape(10, 2))
    dom = load_domain(p)
    assert dom.train.dtype == torch.float32 and dom.shape == (2,)


@pytest.mark.parametrize(("array", "needle"), [
    (np.arange(10.0), "N x d"),
    (np.zeros((4, 2, 2)), "N x d"),
    (np.array([["a", "b"], ["c", "d"]]), "numeric"),
    (np.zeros((1, 3)), "at least 2"),
    (np.zeros((0, 3)), "at least 2"),
    (np.zeros((5, 0)), "dimension"),
    (np.ones((3, 2), dtype=np.complex64), "numeric"),
    (np.ones((3, 2), dtype=bool), "numeric"),
])
def test_npy_bad_arrays(tmp_path: pathlib.Path, array: np.ndarray, needle: str) -> None:
    p = _save(tmp_path / "bad.npy", array)
    with pytest.raises(RdmdError, match=needle):
        load_domain(p)
    with pytest.raises(RdmdError):
        read_npy(p)


def test_npy_nan_names_the_row(tmp_path: pathlib.Path) -> None:
    a = np.ones((20, 3))
    a[7, 1] = np.nan
    a[12, 0] = np.inf
    p = _save(tmp_path / "nan.npy", a)
    with pytest.raises(RdmdError, match=r"row 7\b") as e:
        load_domain(p)
    assert "\n" not in str(e.value)


def test_npy_missing_file(tmp_path: pathlib.Path) -> None:
    with pytest.raises(RdmdError, match="not found"):
        load_domain(str(tmp_path / "nope.npy"))


def test_npy_garbage_file(tmp_path: pathlib.Path) -> None:
    p = tmp_path / "garbage.npy"
    p.write_text("this is not an array\n")
    with pytest.raises(RdmdError):
        load_domain(str(p))


class _Payload:
    """Unpickling this creates a marker file: proof that a loader ran pickle."""

    def __init__(self, marker: pathlib.Path) -> None:
        self.marker = marker

    def __reduce__(self):  # noqa: ANN204
        return (pathlib.Path.touch, (self.marker,))


def test_pickled_object_array_is_refused_without_unpickling(tmp_path: pathlib.Path) -> None:
    marker = tmp_path / "unpickled.marker"
    arr = np.empty((2, 2), dtype=object)
    for i in range(2):
        for j in range(2):
            arr[i, j] = _Payload(marker)
    p = _save(tmp_path / "obj.npy", arr, allow_pickle=True)
    with pytest.raises(RdmdError):
        load_domain(p)
    with pytest.raises(RdmdError):
        read_npy(p)
    assert not marker.exists(), "the loader unpickled the file"
    # control: the payload works, so the check above could have failed
    np.load(p, allow_pickle=True)
    assert marker.exists()


def test_unknown_builtin_name() -> None:
    with pytest.raises(RdmdError, match="built-in") as e:
        load_domain("nosuchdist")
    assert "8gaussians" in str(e.value)


@pytest.mark.parametrize("spec", [
    "gaussian:foo=1",                            # unknown parameter
    "gaussian:std=abc",                          # not JSON
    "gaussian:std",                              # no '='
    "gaussian:cov=[[1,2],[2,1]]",                # not positive definite
    "gaussian:cov=[1,2]",                        # not a matrix
    "8gaussians:radius=4;nope=2",                # unknown parameter
    "gaussian:d=2.5",                            # non-integer dimension
    "gaussian:mean=[1,2,3];cov=[[1,0],[0,1]]",   # mean/cov size mismatch
    "gaussian:d=-1",                             # negative dimension
    "gaussian:d=0",                              # no dimension (files refuse d=0 too)
    'gaussian:std="a"',                          # valid JSON, wrong type
])
def test_bad_builtin_parameters(spec: str) -> None:
    with pytest.raises(RdmdError):
        load_domain(spec, 10, 10, 0)


# -- normaliser ------------------------------------------------------------------------------

def _anisotropic(n: int = 500, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, generator=g) * torch.tensor([20.0, 2.0, 0.5]) \
        + torch.tensor([100.0, -5.0, 0.0])


def test_normalizer_round_trip() -> None:
    x = _anisotropic()
    norm = Normalizer.fit(x)
    z = norm.encode(x)
    assert torch.allclose(z.double().mean(0), torch.zeros(3, dtype=torch.float64), atol=1e-4)
    assert abs(float(z.double().pow(2).mean()) - 1.0) < 1e-4
    back = norm.decode(z)
    assert torch.allclose(back, x, rtol=1e-5, atol=1e-3)
    again = Normalizer.from_dict(norm.to_dict())
    assert again == norm
    assert torch.equal(again.encode(x), z)


def test_normalizer_scale_is_scalar_so_distances_scale_uniformly() -> None:
    x = _anisotropic()
    norm = Normalizer.fit(x)
    assert isinstance(norm.scale, float)
    z = norm.encode(x).double()
    xd = x.double()
    d_x = torch.cdist(xd[:50], xd[50:100]) ** 2
    d_z = torch.cdist(z[:50], z[50:100]) ** 2
    assert torch.allclose(d_z, d_x / norm.scale ** 2, rtol=1e-4, atol=1e-6)


def test_normalizer_identity() -> None:
    x = _anisotropic(10)
    norm = Normalizer.identity()
    assert torch.equal(norm.encode(x), x) and torch.equal(norm.decode(x), x)


def test_very_long_builtin_spec_is_not_mistaken_for_a_path() -> None:
    """An 8-d covariance written inline is longer than the OS allows for a file name."""
    import numpy as np

    cov = (np.eye(8) * 1.234567).tolist()
    spec = f"gaussian:cov={cov}"
    assert len(spec) > 255
    from rdmd.data import load_domain

    assert load_domain(spec, 20, 20).shape == (8,)

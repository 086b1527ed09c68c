"""Shared test conditions.

``@pytest.mark.needs_fashion_mnist``: the test reads Fashion-MNIST from the Debian package
``dataset-fashion-mnist`` (``/usr/share/datasets/fashion-mnist``), which pip cannot install;
without it the test is skipped with that reason instead of failing, so the README's test
command passes on a fresh machine (``.ci/run`` installs the package and runs them).
"""

from __future__ import annotations

import os
import tempfile

import pytest

from rdmd.data import images

FASHION_MNIST_SKIP = (f"needs Fashion-MNIST in {images.FASHION_MNIST_DIR} "
                      "(Debian package dataset-fashion-mnist; absent here)")


def fashion_mnist_installed() -> bool:
    return images.FASHION_MNIST_DIR.is_dir()


def pytest_configure(config: pytest.Config) -> None:
    # the W2 floor cache (rdmd.metrics.floor_cache) of the tests and the rdmd processes they
    # start: a fresh folder per test process, never the user's ~/.cache
    os.environ["RDMD_CACHE_DIR"] = tempfile.mkdtemp(prefix="rdmd-test-cache-")
    config.addinivalue_line("markers", "needs_fashion_mnist: reads the Debian package "
                                       "dataset-fashion-mnist; skipped where it is absent")


def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker("needs_fashion_mnist") and not fashion_mnist_installed():
        pytest.skip(FASHION_MNIST_SKIP)

"""Helpers of the tests that run ``rdmd`` in child processes (crash, signal and lock tests)."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

import rdmd


def child_env(**extra: str) -> dict[str, str]:
    """The child imports this checkout's rdmd, on one thread."""
    src = str(Path(rdmd.__file__).resolve().parents[1])
    return {**os.environ, "OMP_NUM_THREADS": "1",
            "PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")]), **extra}


def wait_for(cond: object, proc: subprocess.Popen, what: str, timeout: float = 120,
             poll: float = 0.005) -> None:
    """Poll ``cond`` until true; fail with the child's stderr if it ends first."""
    t0 = time.monotonic()
    while not cond():  # type: ignore[operator]
        if proc.poll() is not None:
            pytest.fail(f"rdmd ended (exit {proc.returncode}) before {what}: "
                        f"{proc.stderr.read() if proc.stderr else ''}")
        if time.monotonic() - t0 > timeout:
            proc.kill()
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(poll)

"""``rdmd.data``'s modules import each other without a cycle (issue 11, section 2).

A cycle hidden in a function-level import works until someone moves the import to the top;
the graph test reads every import, top-level or not, so it catches the cycle itself.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

DATA = Path(__file__).resolve().parents[1] / "src" / "rdmd" / "data"
MODULES = sorted(p.stem for p in DATA.glob("*.py") if p.stem != "__init__")


def _data_imports(module: str) -> set[str]:
    """The ``rdmd.data`` submodules that ``module`` imports anywhere in its body."""
    out: set[str] = set()
    for node in ast.walk(ast.parse((DATA / f"{module}.py").read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            if node.module == "rdmd.data":
                out |= {a.name for a in node.names if a.name in MODULES}
            elif node.module.startswith("rdmd.data."):
                out.add(node.module.split(".")[2])
        elif isinstance(node, ast.Import):
            out |= {a.name.split(".")[2] for a in node.names
                    if a.name.startswith("rdmd.data.")}
    return out - {module}


def test_data_submodules_import_without_a_cycle() -> None:
    graph = {m: _data_imports(m) for m in MODULES}
    assert graph["domain"] == set(), "domain.py must not import the loaders"

    def reach(m: str, seen: set[str]) -> set[str]:
        for n in graph[m] - seen:
            seen.add(n)
            reach(n, seen)
        return seen

    cycles = [m for m in MODULES if m in reach(m, set())]
    assert not cycles, f"import cycle through {cycles}: {graph}"


@pytest.mark.parametrize("module", MODULES)
def test_each_submodule_imports_alone(module: str) -> None:
    """A fresh interpreter imports the submodule first, before anything else of rdmd."""
    code = f"import rdmd.data.{module}; from rdmd.data import Domain, Normalizer, load_domain"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr

"""What every benchmark shares: the median of alternating blocks and the report."""

from __future__ import annotations

import json
from typing import Any


def median(values: list[float]) -> float:
    return sorted(values)[len(values) // 2]


def report(result: dict[str, Any], json_path: str | None) -> None:
    """Print the result and, if asked, write it beside the script (bench/results_*.json)."""
    print(json.dumps(result, indent=2))
    if json_path:
        with open(json_path, "w") as f:
            json.dump(result, f, indent=2)

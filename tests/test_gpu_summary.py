"""The prepared GPU run (bench/gpu_figures.sh) sizes its long run from the speed its short
run measured; a wrong reading would overrun the device's 10-minute limit or waste it."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
import gpu_summary  # noqa: E402


def _log(run: Path, rows: list[tuple[int, float]]) -> Path:
    run.mkdir(parents=True, exist_ok=True)
    (run / "log.csv").write_text("step,loss_gen,time_s\n" + "".join(
        f"{s},0.1,{t}\n" for s, t in rows))
    return run


def test_speed_leaves_out_the_start_up(tmp_path: Path) -> None:
    # 60 s of start-up (the OT start) before step 20, then 2 steps per second
    run = _log(tmp_path / "r", [(20, 70.0), (40, 80.0), (120, 120.0)])
    r = gpu_summary.rate(run / "log.csv")
    assert r == {"steps_per_s": 2.0, "steps": 120, "wall_s": 120.0, "with_start_up": False}
    # 240 s at 2 steps/s, a fifth kept back: 384, in whole hundreds
    assert gpu_summary.plan(run, 240) == 300
    one = _log(tmp_path / "one", [(20, 80.0)])
    assert gpu_summary.rate(one / "log.csv")["with_start_up"] is True
    assert gpu_summary.rate(tmp_path / "none.csv") is None


@pytest.mark.parametrize(("speed", "want"), [(0.1, 19), (0.6, 100), (0.001, 2)])
def test_a_slow_device_still_gets_a_short_run(tmp_path: Path, speed: float,
                                               want: int) -> None:
    run = _log(tmp_path / "r", [(0, 0.0), (100, 100 / speed)])
    assert gpu_summary.plan(run, 240) == want

"""experiments/checkpoint_average.py scores a run's kept checkpoints with the run's own
protocol: the last checkpoint reproduces the run's final metrics, an average of identical
weights changes nothing, and a missing checkpoint is refused in one line (issue 14)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

EXPERIMENTS = Path(__file__).resolve().parents[1] / "experiments"
sys.path.insert(0, str(EXPERIMENTS))
import checkpoint_average as ca  # noqa: E402
import common  # noqa: E402

from rdmd.errors import RdmdError  # noqa: E402

torch.set_num_threads(1)


def test_scores_checkpoints_and_their_average(tmp_path: Path) -> None:
    teacher = common.ensure_teacher("digits:class=3", tmp_path / "teacher", False, steps=10,
                                    batch_size=32, sample_steps=4, warmup_steps=2,
                                    device="cpu")
    run = tmp_path / "rdmd"
    common.ensure_rdmd("digits:class=2", teacher, run, False, steps=2, lam=0.1, batch_size=32,
                       device="cpu", ckpt_every=1, keep_checkpoints=5)
    final = json.loads((run / "metrics.json").read_text())
    loaded = ca.Run(run)
    last = ca.generator_weights(run, 2)
    first = ca.generator_weights(run, 1)
    assert any(not torch.equal(first[k], last[k]) for k in last)  # training moved it
    got = loaded.score(last)
    for key in ("l2", "ssim"):  # the run's own final evaluation, reproduced
        assert got[key] == pytest.approx(final[key], rel=1e-5)
    same = ca.average([last, last])
    assert all(torch.equal(same[k], last[k]) for k in last)
    mid = ca.average([first, last])
    k = next(k for k in last if last[k].is_floating_point() and not torch.equal(first[k], last[k]))
    assert torch.allclose(mid[k], (first[k] + last[k]) / 2)
    with pytest.raises(RdmdError, match="no checkpoint at step 7"):
        ca.generator_weights(run, 7)
    # --write: a model folder that loads, says what it averages, and is not overwritten
    out = tmp_path / "avg"
    res = loaded.write(mid, [1, 2], out)
    meta = json.loads((out / "model.json").read_text())
    assert meta["weights_average"] == {"run": "rdmd", "steps": [1, 2]}
    assert json.loads((out / "metrics.json").read_text())["l2"] == pytest.approx(res["l2"])
    from rdmd.models import load_model

    got = load_model(out).net.state_dict()
    assert torch.allclose(got[k], mid[k])
    with pytest.raises(RdmdError, match="already holds a model"):
        loaded.write(mid, [1, 2], out)


def test_a_run_with_another_seed_is_scored_on_its_own_data(tmp_path: Path) -> None:
    """Coloured MNIST's hues follow the run's seed: a seed-3 run's held-out 2s and 3s are
    not the seed-0 ones, and its last checkpoint must still reproduce its final report
    (the script once loaded seed-0 data, and read a seed-1 run 1.1 FD off)."""
    teacher = common.ensure_teacher("cmnist3", tmp_path / "teacher", False, steps=3,
                                    batch_size=8, sample_steps=2, warmup_steps=1,
                                    backbone="unet:tiny8", device="cpu")
    run = tmp_path / "rdmd"
    common.ensure_rdmd("cmnist2", teacher, run, False, steps=2, lam=0.1, batch_size=8,
                       device="cpu", ckpt_every=1, seed=3)
    final = json.loads((run / "metrics.json").read_text())
    got = ca.Run(run).score(ca.generator_weights(run, 2))
    for key in ("l2", "ssim"):
        assert got[key] == pytest.approx(final[key], rel=1e-5)


def test_bad_steps_and_folders_are_one_line_errors(tmp_path: Path) -> None:
    assert ca.parse_steps("100, 200,") == [100, 200]
    for bad in ("", "a,100", ","):
        with pytest.raises(RdmdError, match="comma-separated iterations"):
            ca.parse_steps(bad)
    with pytest.raises(RdmdError, match="no finished model"):
        ca.Run(tmp_path)

"""Choosing the shipped weights on a validation split (``val_size``, ``select = "best_val"``):
the held-out sources are never trained on, the chosen weights are those of the evaluation with
the lowest validation score in log.csv, a resumed run chooses exactly as a straight one, and
the settings that cannot choose are refused before anything is written."""

from __future__ import annotations

import csv
import importlib
import json
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file
from test_images_e2e import (  # noqa: F401 (chain: the shared image fixture)
    assert_ok,
    assert_user_error,
    chain,
    distill_args,
    read_log,
    run_cli,
)
from test_training import TINY, teacher  # noqa: F401 (teacher: the shared 2-D fixture)

import rdmd
from rdmd import checkpoint as ckpt
from rdmd.data import load_domain
from rdmd.errors import RdmdError
from rdmd.training.select import BestWeights, split_validation

torch.set_num_threads(1)


def test_split_holds_out_a_seeded_disjoint_subset() -> None:
    train = torch.arange(50.0)[:, None]
    fit, val = split_validation(train, 10, 0, "x")
    assert val is not None and len(val) == 10 and len(fit) == 40
    assert not set(val[:, 0].tolist()) & set(fit[:, 0].tolist())
    assert sorted(val[:, 0].tolist() + fit[:, 0].tolist()) == train[:, 0].tolist()
    assert val[:, 0].tolist() != list(range(40, 50))  # not the last rows: files may be sorted
    assert torch.equal(split_validation(train, 10, 0, "x")[1], val)
    assert not torch.equal(split_validation(train, 10, 1, "x")[1], val)
    assert split_validation(train, 0, 0, "x") == (train, None)
    with pytest.raises(RdmdError, match="leaves no training sources"):
        split_validation(train, 50, 0, "x")


def test_best_weights_keep_the_lowest_score() -> None:
    net = torch.nn.Linear(2, 2)
    best = BestWeights(net)
    assert best.chosen() is None
    assert best.offer(net, 3.0, 10)
    kept = net.weight.detach().clone()
    with torch.no_grad():
        net.weight.add_(1.0)
    assert not best.offer(net, 4.0, 20)
    assert not best.offer(net, float("nan"), 30)
    assert torch.equal(best.net.weight, kept)
    assert best.offer(net, 2.5, 40)
    assert torch.equal(best.net.weight, net.weight)
    assert best.chosen() == {"step": 40, "value": 2.5}


def _log(run: Path) -> list[dict[str, str]]:
    with open(run / "log.csv", newline="") as f:
        return list(csv.DictReader(f))


def _argmin(rows: list[dict[str, str]], key: str) -> int:
    scored = [(float(r[key]), int(r["step"])) for r in rows if r.get(key)]
    return min(scored)[1]


KW: dict[str, Any] = {**TINY, "lam": 0.02, "log_every": 2, "eval_every": 2, "ckpt_every": 4,
                      "val_size": 40, "select": "best_val", "progress": False}


def test_best_val_ships_the_best_evaluation_and_resumes_exactly(teacher: Path,  # noqa: F811
                                                                tmp_path: Path) -> None:
    full = rdmd.distill("gaussian", teacher, tmp_path / "full", steps=12, **KW)
    rows = _log(full)
    assert sum(1 for r in rows if r.get("val_w2_sq")) == 6
    meta = json.loads((full / "model.json").read_text())
    chosen = _argmin(rows, "val_w2_sq")
    assert meta["selected"]["step"] == chosen and meta["val_size"] == 40
    metrics = json.loads((full / "metrics.json").read_text())
    assert metrics["selected"]["step"] == chosen
    # the shipped weights are the kept copy, and (unless the last was best) not the last
    last = ckpt.load_checkpoint(ckpt.latest_checkpoint(full / "checkpoints"))[0]
    shipped = load_file(full / "model.safetensors")
    kept = {k.removeprefix("module.generator_best.net.denoiser."): v for k, v in last.items()
            if k.startswith("module.generator_best.net.denoiser.")}
    common = [k for k in kept if k in shipped]
    assert common and all(torch.equal(shipped[k], kept[k]) for k in common), \
        "shipped weights are not the best kept"
    if chosen != 12:
        # the 2-D default keeps a generator EMA: it is what is evaluated and kept
        final = {k.removeprefix("module.generator_ema.denoiser."): v for k, v in last.items()
                 if k.startswith("module.generator_ema.denoiser.")}
        assert final.keys() == kept.keys()
        assert any(not torch.equal(kept[k], v) for k, v in final.items())
    # stopped at 8 and resumed: the same choice and the same bytes
    half = rdmd.distill("gaussian", teacher, tmp_path / "half", steps=8, **KW)
    half = rdmd.distill("gaussian", teacher, half, steps=12, resume=True, progress=False)
    assert (half / "model.safetensors").read_bytes() == (full / "model.safetensors").read_bytes()
    assert json.loads((half / "model.json").read_text())["selected"] == meta["selected"]


def test_evaluations_follow_eval_every_not_log_every(teacher: Path,  # noqa: F811
                                                      tmp_path: Path) -> None:
    """eval_every 3 under log_every 4 evaluates at 3, 6, 9 (not only at 12, their common
    multiple), and the choice is made among those."""
    run = rdmd.distill("gaussian", teacher, tmp_path / "r", steps=10,
                       **{**KW, "log_every": 4, "eval_every": 3, "ckpt_every": 5})
    rows = _log(run)
    assert [int(r["step"]) for r in rows if r.get("val_w2_sq")] == [3, 6, 9]
    assert [int(r["step"]) for r in rows] == [3, 4, 6, 8, 9, 10]
    chosen = json.loads((run / "model.json").read_text())["selected"]["step"]
    assert chosen == _argmin(rows, "val_w2_sq")


def test_validation_sources_are_not_trained_on(teacher: Path, tmp_path: Path,  # noqa: F811
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """Every training batch is drawn from the kept sources: none is a held-out row."""
    distill_mod = importlib.import_module("rdmd.training.distill")

    seen: list[torch.Tensor] = []
    real = distill_mod.data_batches

    def spy(dom: Any, norm: Any, data: torch.Tensor, *a: Any) -> Any:
        seen.append(norm.decode(data).cpu())
        return real(dom, norm, data, *a)

    monkeypatch.setattr(distill_mod, "data_batches", spy)
    run = rdmd.distill("gaussian", teacher, tmp_path / "r", steps=2,
                       **{**KW, "fresh_data": False})
    src = load_domain("gaussian", TINY["n_train"], TINY["n_test"], 0)
    _, val = split_validation(src.train, 40, 0, "gaussian")
    assert val is not None and len(seen) == 1 and len(seen[0]) == TINY["n_train"] - 40
    dist = torch.cdist(val, seen[0])
    assert dist.min() > 1e-4, "a validation source is in the training data"
    assert json.loads((run / "model.json").read_text())["val_size"] == 40


def test_conditioned_run_chooses_by_the_geometric_mean_over_lambdas(
        teacher: Path, tmp_path: Path) -> None:  # noqa: F811
    """One network serves every lambda: its score is the geometric mean of the validation
    score at the report lambdas (a log column), and the shipped weights are those of its
    lowest evaluation, reported at every lambda."""
    run = rdmd.distill("gaussian", teacher, tmp_path / "c", steps=8,
                       **{**KW, "lam_range": [0.05, 1.0]})
    rows = [r for r in _log(run) if r.get("val_w2_sq@gmean")]
    assert len(rows) == 4
    for r in rows:
        per_lam = [float(r[f"val_w2_sq@{lam}"]) for lam in ("0.05", "0.224", "1")]
        assert float(r["val_w2_sq@gmean"]) == pytest.approx(
            float(torch.tensor(per_lam).log().mean().exp()), rel=1e-5)  # log: 6 digits
    assert len({r["val_w2_sq@0.05"] for r in rows} | {r["val_w2_sq@1"] for r in rows}) > 2
    meta = json.loads((run / "model.json").read_text())
    chosen = _argmin(rows, "val_w2_sq@gmean")
    assert meta["selected"]["metric"] == "val_w2_sq@gmean"
    assert meta["selected"]["step"] == chosen and meta["lam_range"] == [0.05, 1.0]
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["selected"]["step"] == chosen and set(metrics["by_lam"]) == {"0.05",
                                                                                "0.224", "1"}
    last = ckpt.load_checkpoint(ckpt.latest_checkpoint(run / "checkpoints"))[0]
    shipped = load_file(run / "model.safetensors")
    prefix = "module.generator_best.net.denoiser."
    kept = {k.removeprefix(prefix): v for k, v in last.items() if k.startswith(prefix)}
    common = [k for k in shipped if k in kept]
    assert len(common) == len(shipped) and all(torch.equal(shipped[k], kept[k])
                                               for k in common)


def test_settings_that_cannot_choose_are_refused(teacher: Path, tmp_path: Path  # noqa: F811
                                                 ) -> None:
    out = tmp_path / "r"
    with pytest.raises(RdmdError, match="needs val_size > 0 and eval_every > 0"):
        rdmd.distill("gaussian", teacher, out, steps=2, **{**KW, "val_size": 0})
    with pytest.raises(RdmdError, match="needs val_size > 0 and eval_every > 0"):
        rdmd.distill("gaussian", teacher, out, steps=2, **{**KW, "eval_every": 0})
    with pytest.raises(RdmdError, match="leaves no training sources"):
        rdmd.distill("gaussian", teacher, out, steps=2, **{**KW, "val_size": 500})
    with pytest.raises(RdmdError, match="must be one of last, best_val"):
        rdmd.distill("gaussian", teacher, out, steps=2, **{**KW, "select": "best"})
    assert not out.exists() or not any(out.iterdir())


def test_image_validation_scores_and_choice(chain: dict[str, Any],  # noqa: F811
                                            tmp_path: Path) -> None:
    """Images: validation FD over the classifier's features, L2 and target accuracy in the
    log; the choice is the lowest validation FD; without a classifier there is no score to
    choose by, which is said before training."""
    out = tmp_path / "r"
    clf = ["--set", f"classifier={chain['clf']}", "--set", "target_class=3"]
    sel = ["--set", "val_size=16", "--set", "eval_every=3", "--set", "log_every=3",
           "--set", "select=best_val"]
    assert_ok(run_cli(distill_args(chain["teacher"], out, 6, *clf, *sel)))
    rows = [r for r in read_log(out / "log.csv") if r.get("val_fd_cnn_digits")]
    assert len(rows) == 2
    assert {"val_l2", "val_target_accuracy"} <= set(rows[0])
    meta = json.loads((out / "model.json").read_text())
    assert meta["selected"]["metric"] == "val_fd_cnn_digits"
    assert meta["selected"]["step"] == _argmin(rows, "val_fd_cnn_digits")
    bare = tmp_path / "bare"
    assert_user_error(run_cli(distill_args(chain["teacher"], bare, 6, *sel)),
                      "select 'best_val' on images needs a classifier")
    assert not bare.exists() or not any(bare.iterdir())


def test_knob_rule_reads_the_fall_of_validation_l2() -> None:
    """``select_knob``: an evaluation is eligible when its validation L2 at the top of the
    range is at least that share below the bottom's; runs without a validation L2 are not
    held to it, and 0 turns the rule off."""
    from rdmd.methods.rdmd_lam import KNOB_KEY, LamCode, eval_at_lams, knob_turns

    code = LamCode.of_range(0.05, 1.0)
    l2 = {0.05: 8.0, 0.224: 7.0, 1.0: 6.0}

    def evaluate(g: Any) -> dict[str, float]:
        return {"val_l2": l2[g.lam], "val_fd": 10.0 * g.lam}

    res = eval_at_lams(torch.nn.Identity(), code, evaluate, gmean="val_fd")
    assert res[KNOB_KEY] == pytest.approx(0.25)
    assert knob_turns(res, 0.25) and not knob_turns(res, 0.3) and knob_turns(res, 0.0)
    flat = {**res, KNOB_KEY: 0.01}
    assert not knob_turns(flat, 0.1) and knob_turns({"val_w2_sq@gmean": 1.0}, 0.5)


def test_conditioned_image_run_chooses_only_where_its_knob_turns(
        chain: dict[str, Any], tmp_path: Path) -> None:  # noqa: F811
    """A conditioned image run logs the knob's turn; with ``select_knob`` out of reach no
    evaluation is eligible, so the last weights are saved and the metadata and stderr say
    why; with 0 the lowest geometric-mean validation FD is chosen, as for any run."""
    args = ["--set", f"classifier={chain['clf']}", "--set", "target_class=3",
            "--set", "val_size=16", "--set", "eval_every=3", "--set", "log_every=3",
            "--set", "select=best_val", "--lam-range", "0.05:1"]
    strict = tmp_path / "strict"
    r = run_cli(distill_args(chain["teacher"], strict, 6, *args, "--set", "select_knob=0.99"))
    assert_ok(r)
    assert "no evaluation's validation L2 fell by select_knob = 0.99" in r[2]
    rows = [row for row in read_log(strict / "log.csv") if row.get("val_l2@fall")]
    assert len(rows) == 2 and all(float(row["val_l2@fall"]) < 0.99 for row in rows)
    assert json.loads((strict / "model.json").read_text())["selected"]["rule"] == "last"
    free = tmp_path / "free"
    assert_ok(run_cli(distill_args(chain["teacher"], free, 6, *args, "--set", "select_knob=0")))
    rows = [row for row in read_log(free / "log.csv") if row.get("val_l2@fall")]
    sel = json.loads((free / "model.json").read_text())["selected"]
    key = next(k for k in rows[0] if k.startswith("val_fd") and k.endswith("@gmean"))
    assert sel["metric"] == key and sel["select_knob"] == 0
    assert sel["step"] == _argmin(rows, key)


def test_validation_reference_is_what_the_test_fd_never_sees() -> None:
    """The validation FD's real images are the target pool outside the test FD's two
    reference sets (its real set and its floor's), so choosing on validation does not fit
    the test's references; too small a pool is refused."""
    from rdmd.data import Domain
    from rdmd.evaluation import _fd_sets, validation_reference

    ids = torch.arange(50.0)
    imgs = ids[:, None, None, None].expand(50, 1, 4, 4).contiguous()
    tgt = Domain("t", imgs[:40], imgs[40:], kind="image")
    _, real_a, real_b = _fd_sets(torch.zeros(10, 1, 4, 4), tgt)
    ref = validation_reference(tgt, 10)
    seen = {float(v) for v in torch.cat([real_a, real_b])[:, 0, 0, 0]}
    rest = {float(v) for v in ref[:, 0, 0, 0]}
    assert len(seen) == 20 and len(rest) == 30 and not seen & rest
    assert seen | rest == set(ids.tolist())
    with pytest.raises(RdmdError, match="beyond the test's two reference sets"):
        validation_reference(Domain("t", imgs[:10], imgs[10:20], kind="image"), 10)

"""The shipped colored-MNIST card says the recipe that ran (read from the runs, not from a
config file that may have changed since) and keeps the conditioned generator's section,
which another script measures (issue 14: retraining the shipped models with a new recipe)."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest
import torch

from rdmd.errors import RdmdError

EXPERIMENTS = Path(__file__).resolve().parents[1] / "experiments"
sys.path.insert(0, str(EXPERIMENTS))
import cmnist_models  # noqa: E402
import common  # noqa: E402

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("cm")
    teacher = common.ensure_teacher("8gaussians", root / "teacher", False, steps=3,
                                    batch_size=64, n_train=200, n_test=100, sample_steps=4,
                                    device="cpu")
    out = root / "rdmd"
    common.ensure_rdmd("gaussian", teacher, out, False, steps=2, lam=0.1, batch_size=64,
                       n_train=200, n_test=100, floor_pairs=1, device="cpu",
                       cost="l2+0.5*l1", fake_steps=2)
    return out


def test_recipe_reads_the_run(run: Path) -> None:
    line = cmnist_models.recipe(run)
    assert "2 iterations, batch 64" in line
    assert "2 fake-score update(s)" in line and "cost `l2+0.5*l1`" in line
    assert "OT start" not in line  # this run had none


def test_card_keeps_the_conditioned_section(run: Path, tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cmnist_models, "SHIP", tmp_path)
    cond = f"{cmnist_models.COND_HEADING}: one generator\n\nits table\n"
    (tmp_path / "MODEL_CARD.md").write_text("# old card\n\nold rows\n\n" + cond)
    row = {"lam": 0.1, "l2": 1.5, "fd_cnn_cmnist": 3.0, "fd_n": 100}
    cmnist_models.write_card(["rdmd distill ..."], [row], {"sampler_steps": 18},
                             {"test_accuracy": 0.9}, [run])
    card = (tmp_path / "MODEL_CARD.md").read_text()
    assert "old rows" not in card and card.endswith(cond)
    assert "| 0.1 | 1.5 |" in card and cmnist_models.recipe(run) in card
    # without a conditioned section the card ends with the fixed generators' table
    (tmp_path / "MODEL_CARD.md").unlink()
    cmnist_models.write_card(["rdmd distill ..."], [row], {}, {}, None)
    assert cmnist_models.COND_HEADING not in (tmp_path / "MODEL_CARD.md").read_text()


def test_card_with_averaged_weights(run: Path, tmp_path: Path,
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """Shipping averaged weights, the card says so and shows the final weights' rows too."""
    monkeypatch.setattr(cmnist_models, "SHIP", tmp_path)
    shipped = {"lam": 0.1, "l2": 1.5, "fd_cnn_cmnist": 3.0, "fd_n": 100}
    final = {"lam": 0.1, "l2": 1.7, "fd_cnn_cmnist": 4.0, "fd_n": 100}
    cmnist_models.write_card(["x"], [shipped], {}, {}, [run], [final], "1,2")
    card = (tmp_path / "MODEL_CARD.md").read_text()
    assert "average of the generator's weights at iterations 1,2" in card
    assert card.index("| 0.1 | 1.5 |") < card.index("final weights (not shipped)") \
        < card.index("| 0.1 | 1.7 |")


def test_card_with_one_ema_generator(run: Path, tmp_path: Path,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """One generator trained with an EMA (``--set-for``) beside averaged ones: the card says
    which weights each row ships and lists final weights only for the averaged ones."""
    monkeypatch.setattr(cmnist_models, "SHIP", tmp_path)
    rows = [{"lam": 0.05, "l2": 1.1, "fd_n": 100}, {"lam": 0.1, "l2": 1.5, "fd_n": 100}]
    finals = [{"lam": 0.05, "l2": 1.1, "fd_n": 100}, {"lam": 0.1, "l2": 1.7, "fd_n": 100}]
    cmnist_models.write_card(["x"], rows, {}, {}, [run, run], finals, "1,2",
                             ["EMA 0.99", "average 1,2"], {0.05: ["ema_decay=0.99"]})
    card = (tmp_path / "MODEL_CARD.md").read_text()
    assert "lambda 0.05 also with `ema_decay=0.99`" in card
    assert "| 0.05 | 1.1 |" in card and "| EMA 0.99 |" in card and "| average 1,2 |" in card
    finals_part = card[card.index("final weights (not shipped)"):]
    assert "| 0.1 | 1.7 |" in finals_part and "| 0.05 |" not in finals_part


def test_weights_column_says_what_ships(run: Path, tmp_path: Path,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """A run that chose on validation ships its choice (not an average, not its EMA's last)
    and the card says how it chose."""
    w = cmnist_models.shipped_weights
    assert w(0.0, {"step": 120, "value": 9.0}, "1,2") == "best validation (iteration 120)"
    assert w(0.99, {"step": 60, "value": 9.0}, None) == "best validation (iteration 60, EMA 0.99)"
    assert w(0.99, None, "1,2") == "EMA 0.99"
    assert w(0.0, None, "1,2") == "average 1,2" and w(0.0, None, None) == "final"
    monkeypatch.setattr(cmnist_models, "SHIP", tmp_path)
    rows = [{"lam": 0.05, "l2": 1.1, "fd_n": 100}, {"lam": 0.1, "l2": 1.5, "fd_n": 100}]
    cmnist_models.write_card(["x"], rows, {}, {}, [run, run], rows, "1,2",
                             ["best validation (iteration 120)", "average 1,2"])
    card = (tmp_path / "MODEL_CARD.md").read_text()
    assert "| best validation (iteration 120) |" in card
    assert "ships the lowest" in card and "`val_size`" in card
    finals_part = card[card.index("final weights (not shipped)"):]
    assert "| 0.1 | 1.5 |" in finals_part and "| 0.05 |" not in finals_part


@pytest.mark.parametrize("spec", ["0.05ema_decay=0.99", "x:ema_decay=0.99", "0.05:ema",
                                  "0.3:ema_decay=0.99"])
def test_set_for_refuses_bad_specs(spec: str) -> None:
    with pytest.raises(SystemExit, match="--set-for"):
        cmnist_models.sets_for([spec], [0.05, 0.1])
    assert cmnist_models.sets_for(["0.05:ema_decay=0.99", "0.05:seed=1"], [0.05]) == {
        0.05: ["ema_decay=0.99", "seed=1"]}


def test_fmnist_card_keeps_the_fixed_generators_section() -> None:
    """``fmnist_pipeline.py --ship-fixed`` writes its section before the conditioned
    generator's metrics, replaces it on a second call, and a card rewritten by ``--ship``
    keeps it."""
    import fmnist_pipeline as fp

    card = "# card\n\n- `rdmd_cond/`: one generator\n\nMetrics of `rdmd_cond` here\n| a |\n"
    first = f"{fp.FIXED_BEGIN}\n- `rdmd_lam0.05/`: FD 2.1\n{fp.FIXED_END}"
    once = fp.place_fixed(card, first)
    assert once.index(first) < once.index("Metrics of `rdmd_cond`")
    assert fp.fixed_section(once) == first and fp.fixed_section(card) is None
    second = first.replace("2.1", "1.9")
    twice = fp.place_fixed(once, second)
    assert "2.1" not in twice and twice.count(fp.FIXED_BEGIN) == 1
    assert twice.replace(second, first) == once
    with pytest.raises(SystemExit, match="run --ship first"):
        fp.place_fixed("# no conditioned metrics\n", first)


SHIPPED_VAL_COMMAND = [
    "distill", "--source", "cmnist2", "--teacher", "src/rdmd/pretrained/cmnist/teacher",
    "--lam", "0.05", "--config", "configs/cmnist_ot_chroma_rdmd.toml", "--steps", "400",
    "--set", "precision=fp32", "--set", "lr_schedule=cosine",
    "--set", "keep_checkpoints=20", "--set", "val_size=100", "--set", "select=best_val",
    "--set", "eval_every=20", "--set", "teacher_guidance=2",
    "--set", "classifier=src/rdmd/pretrained/cmnist/classifier",
    "--set", "target_class=3", "--out", "runs/cmnist/rdmd_lam0.05"]


def test_keep_shipped_checks_the_shipped_generator_is_the_commands(tmp_path: Path) -> None:
    """``--keep-shipped`` lets a lambda whose run is gone stay as shipped; its folder must
    still be what the card's command trains, so a card never lists a command that did not
    make the weights beside it."""
    lams = [0.05, 0.1, 0.5]
    assert cmnist_models.kept_lams("0.05,0.5", lams, False) == {0.05, 0.5}
    assert cmnist_models.kept_lams("", lams, False) == set()
    for spec, averaged, msg in [("0.25", False, "not in --lams"), ("a", False, "wants"),
                                ("0.05", True, "--average")]:
        with pytest.raises(SystemExit, match=msg):
            cmnist_models.kept_lams(spec, lams, averaged)
    shipped = cmnist_models.SHIP / "rdmd_lam0.05"
    cmnist_models.check_reusable(SHIPPED_VAL_COMMAND, shipped)  # the card's own command
    # trained in another checkout (a run records its absolute teacher path): the same run
    moved = tmp_path / "rdmd_lam0.05"
    shutil.copytree(shipped, moved)
    rec = json.loads((moved / "config.json").read_text())
    rec["teacher"] = "/elsewhere/checkout/src/rdmd/pretrained/cmnist/teacher"
    (moved / "config.json").write_text(json.dumps(rec))
    cmnist_models.check_reusable(SHIPPED_VAL_COMMAND, moved)
    rec["teacher"] = "/elsewhere/checkout/runs/cmnist/teacher"  # another teacher: refused
    (moved / "config.json").write_text(json.dumps(rec))
    with pytest.raises(RdmdError, match="teacher"):
        cmnist_models.check_reusable(SHIPPED_VAL_COMMAND, moved)
    other = list(SHIPPED_VAL_COMMAND)
    other[other.index("eval_every=20")] = "eval_every=40"
    with pytest.raises(RdmdError, match="eval_every"):
        cmnist_models.check_reusable(other, shipped)
    plain = list(SHIPPED_VAL_COMMAND)  # distilled from the guided score, not the plain one
    del plain[plain.index("teacher_guidance=2") - 1:plain.index("teacher_guidance=2") + 1]
    with pytest.raises(RdmdError, match="teacher_guidance"):
        cmnist_models.check_reusable(plain, shipped)


def test_recipe_of_a_warm_start_counts_the_run_it_started_from(run: Path,
                                                                 tmp_path: Path) -> None:
    warm = tmp_path / "warm"
    shutil.copytree(run, warm)
    saved = json.loads((warm / "config.json").read_text())
    saved["config"]["init_from"] = str(run)
    (warm / "config.json").write_text(json.dumps(saved))
    line = cmnist_models.recipe(warm)
    assert f"warm start from `{run}`" in line and "OT start)" in line
    step, _ = cmnist_models.log_clock(run / "log.csv")
    assert f"after the {step} iterations of the run it starts from" in line
    # its log gone (another machine): the line says only what this run records
    saved["config"]["init_from"] = str(tmp_path / "elsewhere")
    (warm / "config.json").write_text(json.dumps(saved))
    assert "run it starts from" not in cmnist_models.recipe(warm)


def test_ship_teacher_refuses_before_touching_the_shipped_teacher(
        run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``--ship-teacher`` replaces the shipped teacher only with a finished run, and only
    once the new copy is complete; a wrong request leaves the shipped one as it was."""
    ship = tmp_path / "ship"
    (ship / "teacher").mkdir(parents=True)
    (ship / "teacher" / "model.json").write_text("{}")
    monkeypatch.setattr(cmnist_models, "SHIP", ship)
    monkeypatch.setattr(cmnist_models, "ROOT", tmp_path)
    monkeypatch.setattr(cmnist_models, "CLASSIFIER", ship / "classifier")
    for argv, msg in [(["--ship-teacher", str(tmp_path / "nothing")], "not a finished"),
                      (["--ship-teacher", str(run), "--teacher", "runs/t"], "drop --teacher")]:
        monkeypatch.setattr(sys, "argv", ["cmnist_models.py", *argv])
        with pytest.raises(SystemExit, match=msg):
            cmnist_models.main()
        assert (ship / "teacher" / "model.json").read_text() == "{}"



def test_ship_replaces_the_whole_folder_and_only_when_complete(
        run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A shipped model is replaced as a whole (a plot of the model it replaces does not
    survive), and a copy that fails half-way leaves the shipped one as it was."""
    dest = tmp_path / "ship" / "rdmd_cond"
    (dest / "plots").mkdir(parents=True)
    (dest / "plots" / "translation_lam2.png").write_bytes(b"old")
    (dest / "model.json").write_text("{}")

    def broken(d: Path, name: str = "model.safetensors") -> None:
        raise OSError("disk full")

    monkeypatch.setattr(cmnist_models, "store_half", broken)
    with pytest.raises(OSError, match="disk full"):
        cmnist_models.ship(run, dest)
    assert (dest / "model.json").read_text() == "{}"
    monkeypatch.undo()
    cmnist_models.ship(run, dest)
    assert json.loads((dest / "model.json").read_text())["role"] == "generator"
    assert not (dest / "plots" / "translation_lam2.png").exists()
    assert sorted(p.name for p in (dest / "plots").iterdir()) == \
        sorted(p.name for p in (run / "plots").iterdir())
    assert not dest.with_name("rdmd_cond.new").exists()


def test_recipe_says_where_and_which_score(run: Path, tmp_path: Path) -> None:
    assert cmnist_models.recipe(run, "2 CPU threads").endswith("wall time on 2 CPU threads")
    assert "autoguided" not in cmnist_models.recipe(run)
    guided = tmp_path / "guided"
    shutil.copytree(run, guided)
    rec = json.loads((guided / "config.json").read_text())
    rec["config"]["teacher_guidance"] = 2.0
    (guided / "config.json").write_text(json.dumps(rec))
    assert "the teacher's autoguided score at weight 2" in cmnist_models.recipe(guided)


def test_lambda_front_gap_to_the_fixed_front() -> None:
    """experiments/cmnist_lambda_front.py reads a conditioned point against the fixed
    generators' front interpolated at its own L2, and refuses to extrapolate."""
    import cmnist_lambda_front

    fixed = [{"l2": 6.0, "fd_cnn_cmnist": 40.0}, {"l2": 10.0, "fd_cnn_cmnist": 4.0},
             {"l2": 8.0, "fd_cnn_cmnist": 12.0}]
    rows = [{"l2": 9.0, "fd_cnn_cmnist": 10.0}, {"l2": 6.0, "fd_cnn_cmnist": 41.0},
            {"l2": 5.0, "fd_cnn_cmnist": 50.0}, {"l2": 11.0, "fd_cnn_cmnist": 3.0}]
    cmnist_lambda_front.above_fixed(rows, fixed)
    assert rows[0]["fd_above_fixed"] == pytest.approx(10.0 - 8.0)  # halfway 12 -> 4
    assert rows[1]["fd_above_fixed"] == pytest.approx(1.0)
    assert all(r["fd_above_fixed"] != r["fd_above_fixed"] for r in rows[2:])  # NaN outside


def test_fmnist_ship_cond_rewrites_the_conditioned_section(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``fmnist_pipeline.py --ship-cond`` ships a conditioned run as ``rdmd_cond``, writes its
    recipe, command and table into the card, keeps the fixed generators' section, and a later
    ``--ship``-style rewrite keeps its section; a run that is not a finished conditioned
    generator, or no command, is refused before anything is replaced."""
    import fmnist_pipeline as fp

    ship_dir = tmp_path / "fmnist"
    shutil.copytree(fp.SHIP, ship_dir)
    monkeypatch.setattr(fp, "SHIP", ship_dir)
    monkeypatch.setattr(fp, "real_target_rate", lambda: 0.5)
    run = tmp_path / "cond_run"
    shutil.copytree(ship_dir / "rdmd_cond", run)
    meta = json.loads((run / "model.json").read_text())
    shipped_range = meta["lam_range"]
    meta.update(lam_range=[0.03, 3.0], selected={"step": 480}, val_size=500)
    (run / "model.json").write_text(json.dumps(meta))
    m = json.loads((run / "metrics.json").read_text())
    m["by_lam"] = {"0.03": {**next(iter(m["by_lam"].values())), "l2": 123.25}}
    (run / "metrics.json").write_text(json.dumps(m))
    card_before = (ship_dir / "MODEL_CARD.md").read_text()

    with pytest.raises(SystemExit, match="not a finished lambda-conditioned"):
        fp.ship_cond(ship_dir / "rdmd_lam0.05", "rdmd distill ...", "here")
    with pytest.raises(SystemExit, match="needs --command"):
        fp.ship_cond(run, " ", "here")
    assert (ship_dir / "MODEL_CARD.md").read_text() == card_before
    assert json.loads((ship_dir / "rdmd_cond" / "model.json").read_text())[
        "lam_range"] == shipped_range

    fp.ship_cond(run, "rdmd distill --lam-range 0.03:3 MARK", "two CPU threads")
    card = (ship_dir / "MODEL_CARD.md").read_text()
    old = "every lambda in [{:g}, {:g}]".format(*shipped_range)
    assert "every lambda in [0.03, 3]" in card and old not in card
    assert "rdmd distill --lam-range 0.03:3 MARK" in card
    assert "best validation (iteration 480)" in card and "held out 500" in card
    assert "| 0.03 | 123.2 |" in card and "on two CPU threads" in card
    assert card.count(fp.FIXED_BEGIN) == 1 and fp.fixed_section(card) == fp.fixed_section(
        card_before)
    assert card.index(fp.COND_END) < card.index("Metrics of `rdmd_cond`")
    fp.write_card(fp.plan(1600))  # what --ship does after copying: the section stays
    assert (ship_dir / "MODEL_CARD.md").read_text() == card


def test_fmnist_ship_all_writes_the_section_of_the_generator_it_ships(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``fmnist_pipeline.py --ship`` copies the pipeline's runs and describes the conditioned
    generator stage 4 trained, with stage 4's command, not the section of the one it
    replaces."""
    import fmnist_pipeline as fp

    ship_dir, root = tmp_path / "fmnist", tmp_path / "repo"
    shutil.copytree(fp.SHIP, ship_dir)
    monkeypatch.setattr(fp, "SHIP", ship_dir)
    monkeypatch.setattr(fp, "ROOT", root)
    monkeypatch.setattr(fp, "real_target_rate", lambda: 0.5)
    steps = fp.plan(7)
    for _, out in steps:  # the pipeline's runs, stood in for by the shipped folders
        shutil.copytree(ship_dir / out.name, out)
    meta = json.loads((steps[3][1] / "model.json").read_text())
    meta["lam_range"] = [0.04, 4.0]
    (steps[3][1] / "model.json").write_text(json.dumps(meta))
    before = (ship_dir / "MODEL_CARD.md").read_text()
    assert fp.fixed_section(before) is not None

    fp.ship_all(steps, "a test machine")
    card = (ship_dir / "MODEL_CARD.md").read_text()
    assert "every lambda in [0.04, 4]" in card and "on a test machine" in card
    assert "rdmd " + " ".join(steps[3][0]) in card and "--steps 7" in card
    assert card.count(fp.COND_BEGIN) == 1 and fp.fixed_section(card) == fp.fixed_section(before)

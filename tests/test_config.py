"""Run configuration: defaults, files (JSON/TOML), ``--set`` overrides, and strict checking.

A typo or a wrong type must stop the run with a one-line error naming the key, before any
training time is spent.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import rdmd
from rdmd.cli import main
from rdmd.config import (
    DistillConfig,
    TeacherConfig,
    build_config,
    fill_kind_defaults,
    parse_overrides,
    read_config_file,
    to_dict,
)
from rdmd.errors import RdmdError


def test_defaults_follow_the_spec() -> None:
    t = fill_kind_defaults(build_config(TeacherConfig), "vector")
    assert (t.lr, t.lr_schedule, t.ema_decay, t.p_mean, t.p_std) == (1e-3, "cosine", 0.999,
                                                                     -1.2, 1.2)
    assert t.batch_size == 1024
    d = build_config(DistillConfig, None, {})
    assert d == DistillConfig()
    d = fill_kind_defaults(d, "vector")
    assert d.cost == "l2" and d.sigma_g == 1.0 and d.fake_steps == 1
    assert (d.lr_generator, d.lr_fake, d.beta1, d.beta2) == (2e-5, 5e-4, 0.9, 0.999)
    img = fill_kind_defaults(build_config(DistillConfig), "image")
    assert (img.batch_size, img.lr_generator) == (64, 5e-5)
    explicit = fill_kind_defaults(build_config(DistillConfig, {"lr_generator": 1e-4}), "image")
    assert explicit.lr_generator == 1e-4
    assert (d.dm_sigma_min, d.dm_sigma_max) == (0.02, 80.0)
    assert 0.01 <= d.lam <= 0.05  # the useful range measured in SPEC §7
    assert d.normalize is True


def test_json_file_then_overrides_then_cli(tmp_path: Path) -> None:
    f = tmp_path / "c.json"
    f.write_text(json.dumps({"lam": 0.5, "steps": 7, "cost": "l1", "batch_size": 32}))
    file_layer = read_config_file(f)
    cfg = build_config(DistillConfig, file_layer, parse_overrides(["lam=0.1", "steps=8"]),
                       {"steps": 9, "lam": None, "seed": None})
    assert cfg.lam == 0.1          # --set beats the file
    assert cfg.steps == 9          # an explicit flag beats --set
    assert cfg.cost == "l1"        # the file beats the default
    assert cfg.batch_size == 32
    assert cfg.seed == DistillConfig().seed  # None never overrides


def test_toml_file(tmp_path: Path) -> None:
    f = tmp_path / "c.toml"
    f.write_text('steps = 12\nlr = 2e-3\nencoder = [8, 8]\nlr_schedule = "constant"\n'
                 'device = "cpu"\n')
    cfg = build_config(TeacherConfig, read_config_file(f), parse_overrides(["steps=13"]))
    assert cfg.steps == 13 and cfg.lr == 2e-3 and cfg.encoder == [8, 8]
    assert cfg.lr_schedule == "constant" and cfg.device == "cpu"


def test_bad_config_files(tmp_path: Path) -> None:
    with pytest.raises(RdmdError, match="not found"):
        read_config_file(tmp_path / "missing.json")
    bad_json = tmp_path / "bad.json"
    bad_json.write_text("{lam: 0.1")
    with pytest.raises(RdmdError, match="parse"):
        read_config_file(bad_json)
    bad_toml = tmp_path / "bad.toml"
    bad_toml.write_text("lam = = 0.1\n")
    with pytest.raises(RdmdError, match="parse"):
        read_config_file(bad_toml)


@pytest.mark.parametrize("layer", [{"lamda": 0.1}, {"Steps": 10}, {"generator_lr": 1e-4}])
def test_unknown_key_is_named(layer: dict) -> None:
    key = next(iter(layer))
    with pytest.raises(RdmdError, match=f"'{key}'"):
        build_config(DistillConfig, layer)


def test_unknown_key_in_set_and_in_api(tmp_path: Path) -> None:
    with pytest.raises(RdmdError, match="'lamda'"):
        build_config(DistillConfig, parse_overrides(["lamda=0.1"]))
    out = tmp_path / "t"
    with pytest.raises(RdmdError, match="'stepz'"):
        rdmd.train_teacher("8gaussians", out, stepz=10, progress=False)
    assert not out.exists()


@pytest.mark.parametrize(("cls", "layer"), [
    (DistillConfig, {"lam": "abc"}),            # string for a float
    (DistillConfig, {"lr_generator": [1e-4]}),  # list for a float
    (TeacherConfig, {"steps": 1.5}),            # non-integer for an int
    (TeacherConfig, {"steps": True}),           # bool for an int
    (DistillConfig, {"normalize": "maybe"}),    # neither true nor false
    (DistillConfig, {"normalize": 1}),          # int for a bool
    (DistillConfig, {"lam": None, "fake_steps": "two"}),
])
def test_wrong_types(cls: type, layer: dict) -> None:
    key = [k for k, v in layer.items() if v is not None][0]
    with pytest.raises(RdmdError, match=f"'{key}'"):
        build_config(cls, layer)


@pytest.mark.parametrize("item", ["lam=abc", "steps=1.5", "normalize=maybe", "steps=true",
                                  "batch_size=[1]"])
def test_wrong_types_from_set(item: str) -> None:
    with pytest.raises(RdmdError, match=f"'{item.split('=')[0]}'"):
        build_config(DistillConfig, parse_overrides([item]))


@pytest.mark.parametrize(("cls", "layer"), [
    (DistillConfig, {"cost": 3}),          # a number for a string field
    (TeacherConfig, {"device": ["cpu"]}),  # a list for a string field
    (TeacherConfig, {"encoder": 5}),       # a number for a list of widths
])
def test_wrong_types_in_non_numeric_fields(cls: type, layer: dict) -> None:
    key = next(iter(layer))
    with pytest.raises(RdmdError, match=f"'{key}'"):
        build_config(cls, layer)


def test_set_coercion() -> None:
    cfg = build_config(DistillConfig, parse_overrides([
        "lr_generator=1e-4", "steps=500", "normalize=false", "cost=l1", "lam=1",
        "batch_size=2e3", "device=cuda:1"]))
    assert cfg.lr_generator == 1e-4 and isinstance(cfg.lr_generator, float)
    assert cfg.steps == 500 and isinstance(cfg.steps, int)
    assert cfg.normalize is False
    assert cfg.cost == "l1"
    assert cfg.lam == 1.0 and isinstance(cfg.lam, float)
    assert cfg.batch_size == 2000 and isinstance(cfg.batch_size, int)
    assert cfg.device == "cuda:1"
    t = build_config(TeacherConfig, parse_overrides(["encoder=[64,64,32]", "lr_schedule=constant",
                                                     "ema_decay=0.99"]))
    assert t.encoder == [64, 64, 32] and t.lr_schedule == "constant" and t.ema_decay == 0.99
    assert build_config(DistillConfig, parse_overrides(["normalize=False"])).normalize is False
    assert build_config(DistillConfig, parse_overrides(["normalize=true"])).normalize is True


def test_parse_overrides() -> None:
    assert parse_overrides(None) == {}
    assert parse_overrides([" lam = 0.1 ", "device=cuda:0", "a=b=c"]) == {
        "lam": "0.1", "device": "cuda:0", "a": "b=c"}
    assert parse_overrides(["lam=0.1", "lam=0.2"]) == {"lam": "0.2"}  # last one wins
    with pytest.raises(RdmdError, match="key=value"):
        parse_overrides(["lam0.1"])


def test_to_dict_round_trip() -> None:
    cfg = build_config(DistillConfig, {"lam": 0.3, "cost": "l1"})
    assert DistillConfig(**to_dict(cfg)) == cfg
    assert json.loads(json.dumps(to_dict(cfg))) == to_dict(cfg)


TINY = {"batch_size": 16, "n_train": 40, "n_test": 20, "sample_steps": 2, "warmup_steps": 0,
        "device": "cpu", "lr": 0.5}


def test_cli_layers_order_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    f = tmp_path / "c.json"
    f.write_text(json.dumps({**TINY, "steps": 5, "seed": 3}))
    out = tmp_path / "t"
    rc = main(["train-teacher", "--target", "8gaussians", "--out", str(out), "--config",
               str(f), "--set", "lr=0.25", "--set", "seed=4", "--seed", "5", "--steps", "2",
               "--no-progress"])
    capsys.readouterr()
    assert rc == 0
    saved = json.loads((out / "config.json").read_text())["config"]
    assert saved["steps"] == 2 and saved["seed"] == 5 and saved["lr"] == 0.25
    assert saved["batch_size"] == 16 and saved["ema_decay"] == TeacherConfig().ema_decay
    # resume keeps the saved settings: anything but --steps is refused, nothing changes
    before = (out / "config.json").read_bytes()
    rc = main(["train-teacher", "--target", "8gaussians", "--out", str(out), "--resume",
               "--set", "lr=0.1", "--no-progress"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and err[0].startswith("rdmd: error: ")
    assert "lr=0.1" in err[0]
    assert (out / "config.json").read_bytes() == before


def test_cli_unknown_key_in_set(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "t"
    rc = main(["train-teacher", "--target", "8gaussians", "--out", str(out), "--set",
               "bach_size=16", "--steps", "1", "--no-progress"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "'bach_size'" in err[0]
    assert not out.exists()


@pytest.mark.parametrize(("name", "cls"), [("cat2wild_teacher.toml", TeacherConfig),
                                           ("cat2wild_rdmd.toml", DistillConfig)])
def test_cat2wild_configs_are_valid(name: str, cls: type) -> None:
    """The Cat -> Wild recipe's configs parse, validate, and hold the paper's settings."""
    path = Path(__file__).resolve().parents[1] / "configs" / name
    cfg = fill_kind_defaults(build_config(cls, read_config_file(path)), "image")
    assert cfg.batch_size == 512 and cfg.precision == "bf16"
    if cls is TeacherConfig:
        assert (cfg.backbone, cfg.image_size, cfg.lr, cfg.steps) == ("unet:edm64", 64, 2e-4,
                                                                     80000)
    else:
        assert (cfg.lr_generator, cfg.lr_fake, cfg.sigma_g, cfg.steps) == (5e-5, 3e-4, 1.0,
                                                                           25000)
        assert cfg.teacher_dtype == "bf16"

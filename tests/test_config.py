"""Run configuration: defaults, files (JSON/TOML), ``--set`` overrides, and strict checking.

A typo or a wrong type must stop the run with a one-line error naming the key, before any
training time is spent.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

import rdmd
from rdmd.cli import main
from rdmd.config import (
    KIND_DEFAULTS,
    PLANE_DEFAULTS,
    DistillConfig,
    TeacherConfig,
    build_config,
    config_from_saved,
    fill_kind_defaults,
    parse_overrides,
    read_config_file,
    resolve_config,
    to_dict,
)
from rdmd.errors import RdmdError


def test_defaults_follow_the_spec() -> None:
    """The one literal check: the SPEC's method constants (§1, §2, §7)."""
    d = DistillConfig()
    for kind in ("vector", "image"):  # 2-D data train at lower levels (PLANE_DEFAULTS)
        filled = fill_kind_defaults(TeacherConfig(device="cpu"), kind)
        assert (filled.p_mean, filled.p_std) == (-1.2, 1.2)
    assert (d.dm_sigma_min, d.dm_sigma_max, d.sigma_g, d.cost) == (0.02, 80.0, 1.0, "l2")
    assert 0.01 <= d.lam <= 0.05  # the useful range measured in SPEC §7


@pytest.mark.parametrize("cls", [TeacherConfig, DistillConfig])
def test_kind_defaults_fill_only_what_is_unset(cls: type) -> None:
    """Data-dependent keys start unset; vectors and images fill them differently, and an
    explicit value is never replaced."""
    keys = KIND_DEFAULTS[cls.__name__]["vector"].keys()
    assert all(getattr(cls(), k) is None for k in keys)
    vec, img = fill_kind_defaults(cls(), "vector"), fill_kind_defaults(cls(), "image")
    assert all(getattr(vec, k) is not None and getattr(img, k) is not None for k in keys)
    assert [getattr(vec, k) for k in keys] != [getattr(img, k) for k in keys]
    assert all(getattr(vec, k) == getattr(img, k) for k in
               (f.name for f in dataclasses.fields(cls)) if k not in keys and k != "precision")
    special = {"batch_size": 7, "steps": 17, "lr_schedule": "cosine", "ot_start": 0}
    explicit = {k: special.get(k, 3e-4) for k in keys}
    for kind in ("vector", "image"):
        cfg = fill_kind_defaults(build_config(cls, explicit), kind)
        assert {k: getattr(cfg, k) for k in keys} == explicit


@pytest.mark.parametrize("cls", [TeacherConfig, DistillConfig])
def test_precision_default_follows_the_hardware(cls: type, monkeypatch: pytest.MonkeyPatch
                                                ) -> None:
    """Images run in bf16 only where the CPU computes in bf16 (emulated bf16 on an AVX2 CPU
    was 14x slower, docs/images.md); vectors always in fp32; an explicit value wins."""
    from rdmd import precision

    for native, image_default in ((True, "bf16"), (False, "fp32")):
        monkeypatch.setattr(precision, "cpu_bf16_native", lambda native=native: native)
        assert fill_kind_defaults(cls(device="cpu"), "image").precision == image_default
        for kind in ("vector", "plane"):
            assert fill_kind_defaults(cls(device="cpu"), kind).precision == "fp32"
        for given in ("fp32", "bf16"):
            cfg = fill_kind_defaults(cls(device="cpu", precision=given), "image")
            assert cfg.precision == given
    # a GPU with bf16 takes it whatever the CPU has
    monkeypatch.setattr(precision.torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(precision.torch.cuda, "is_bf16_supported", lambda: True)
    assert precision.default_precision(True, "cuda") == "bf16"
    assert precision.default_precision(False, "cuda") == "fp32"


@pytest.mark.parametrize("cls", [TeacherConfig, DistillConfig])
def test_plane_defaults_overlay_the_vector_ones(cls: type) -> None:
    """2-D data get PLANE_DEFAULTS over the vector defaults; an explicit value still wins."""
    plane, vec = fill_kind_defaults(cls(), "plane"), fill_kind_defaults(cls(), "vector")
    for key, value in PLANE_DEFAULTS[cls.__name__].items():
        assert getattr(plane, key) == value and getattr(vec, key) != value
    for key in KIND_DEFAULTS[cls.__name__]["vector"]:
        if key not in PLANE_DEFAULTS[cls.__name__] and key != "ot_start":  # test_ot_start
            assert getattr(plane, key) == getattr(vec, key)
    explicit = fill_kind_defaults(build_config(cls, {"steps": 17}), "plane")
    assert explicit.steps == 17


def test_plane_generator_features_only_for_the_denoiser_generator() -> None:
    """The default Fourier features belong to the paper's generator; the gradient-field
    generators refuse or ignore them, so they get none; [] and none turn them off."""
    assert resolve_config(DistillConfig, [{}], "plane").generator_fourier == [256, 3.0]
    for gen in ("potential", "convex"):
        cfg = resolve_config(DistillConfig, [{"generator": gen}], "plane")
        assert cfg.generator_fourier is None
    for off in ("[]", "none", []):
        cfg = resolve_config(DistillConfig, [{"generator_fourier": off}], "plane")
        assert cfg.generator_fourier == []
    assert resolve_config(DistillConfig, [{}], "vector").generator_fourier is None
    with pytest.raises(RdmdError, match="generator_fourier"):
        resolve_config(DistillConfig, [{"generator_fourier": [0, 3]}], "plane")


def test_potential_generator_gets_its_rates_and_the_2d_ot_start() -> None:
    """The paper's generator is the default everywhere; a vector run that asks for the
    gradient-field generator gets its rate and schedule (it starts at the identity), an
    explicit rate still wins, and on 2-D data it starts at the OT map as the denoiser does."""
    from rdmd.config import VECTOR_POTENTIAL_DEFAULTS

    def resolved(layer: dict, kind: str = "vector") -> DistillConfig:
        return resolve_config(DistillConfig, [layer], kind)

    for kind in ("vector", "plane", "image"):
        assert resolved({}, kind).generator == "denoiser"
    vec = resolved({})
    assert (vec.lr_generator, vec.lr_schedule) == (2e-5, "constant")
    pot = resolved({"generator": "potential"})
    assert {k: getattr(pot, k) for k in VECTOR_POTENTIAL_DEFAULTS} == VECTOR_POTENTIAL_DEFAULTS
    assert pot.ot_start == 0
    assert resolved({"generator": "potential", "lr_generator": 3e-5}).lr_generator == 3e-5
    plane_pot = resolved({"generator": "potential"}, "plane")
    assert plane_pot.ot_start == resolved({}, "plane").ot_start > 0
    assert resolved({"generator": "convex"}, "plane").ot_start == 0


def test_data_kind_reads_the_dimension(tmp_path: Path) -> None:
    import numpy as np

    from rdmd.config import data_kind
    from rdmd.data.registry import vector_dim

    np.save(tmp_path / "two.npy", np.zeros((10, 2), np.float32))
    np.save(tmp_path / "three.npy", np.zeros((10, 3), np.float32))
    dims = {s: vector_dim(s) for s in ("8gaussians", "gaussian:d=8", "swissroll",
                                       str(tmp_path / "two.npy"), str(tmp_path / "three.npy"),
                                       "nonesuch", str(tmp_path / "missing.npy"))}
    assert list(dims.values()) == [2, 8, 2, 2, 3, None, None]
    assert [data_kind("vector", d) for d in (1, 2, 3, None)] == [
        "plane", "plane", "vector", "vector"]
    assert data_kind("image", 2) == "image"


@pytest.mark.parametrize(("cls", "layer", "key"), [
    (TeacherConfig, {"batch_size": 0}, "batch_size"),
    (TeacherConfig, {"lr": -1e-3}, "lr"),
    (TeacherConfig, {"ema_decay": 1.0}, "ema_decay"),
    (TeacherConfig, {"precision": "fp16"}, "precision"),
    (TeacherConfig, {"decoder": []}, "decoder"),
    (DistillConfig, {"lam": -0.1}, "lam"),
    (DistillConfig, {"floor_pairs": 0}, "floor_pairs"),
    (DistillConfig, {"sigma_g": 0.0}, "sigma_g"),
    (DistillConfig, {"teacher_dtype": "int8"}, "teacher_dtype"),
    (DistillConfig, {"lam": 0.1, "lam_start": 0.1}, "lam_start"),
    (DistillConfig, {"lam": 0.0, "lam_start": 1.0}, "lam_start"),
    (DistillConfig, {"lam_anneal": 0.0}, "lam_anneal"),
    (DistillConfig, {"method": "rdmd_lam", "lam_range": [0, 1], "lam_start": 1.0},
     "lam_start"),
])
def test_validation_refuses_bad_values(cls: type, layer: dict, key: str) -> None:
    cfg = build_config(cls, layer)  # the type is right: only the range is wrong
    with pytest.raises(RdmdError, match=key) as e:
        fill_kind_defaults(cfg, "vector")
    assert "\n" not in str(e.value)
    fill_kind_defaults(build_config(cls), "vector")  # the defaults themselves pass


@pytest.mark.parametrize("cls", [TeacherConfig, DistillConfig])
def test_saved_config_round_trips(cls: type, tmp_path: Path) -> None:
    """What a run writes to config.json reads back as the same config."""
    cfg = fill_kind_defaults(build_config(cls, {"steps": 17, "seed": 3}), "image")
    if cls is TeacherConfig:
        cfg.encoder = [8, 4]
    f = tmp_path / "config.json"
    f.write_text(json.dumps({"config": to_dict(cfg)}))
    assert config_from_saved(cls, json.loads(f.read_text())["config"], f) == cfg


@pytest.mark.parametrize(("saved", "needle"), [
    ({"lamda": 0.1}, "config.json: unknown config key 'lamda'"),
    ({"steps": None}, "config.json: config key 'steps' must not be null"),
    ({"steps": 1.5}, "'steps' must be int"),
    ([1, 2], "config.json: 'config' must be a table"),
])
def test_saved_config_refused_in_one_line(saved: object, needle: str, tmp_path: Path) -> None:
    with pytest.raises(RdmdError, match=needle) as e:
        config_from_saved(DistillConfig, saved, tmp_path / "config.json")  # type: ignore[arg-type]
    assert "\n" not in str(e.value)


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


def test_number_pairs_from_set() -> None:
    """``--set`` gives a pair as ``[a, b]`` (fourier) or ``a:b`` (a lambda range); both
    parse, and anything else is the key's one-line error."""
    cfg = build_config(DistillConfig, parse_overrides(["generator_fourier=[64, 3]",
                                                       "lam_range=0.05:1"]))
    assert cfg.generator_fourier == [64.0, 3.0] and cfg.lam_range == [0.05, 1.0]
    assert build_config(TeacherConfig, parse_overrides(["fourier=[16,1]"])).fourier == [16, 1]
    with pytest.raises(RdmdError, match="'fourier' must be two numbers"):
        build_config(TeacherConfig, parse_overrides(["fourier=[16,1,2]"]))


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


CONFIGS = Path(__file__).resolve().parents[1] / "configs"
SHIPPED = sorted([*CONFIGS.glob("*_teacher.toml"), *CONFIGS.glob("*_rdmd.toml")])


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_shipped_configs_are_valid(path: Path) -> None:
    """Every shipped teacher/RDMD config parses, names only real keys and passes validation,
    and sets something (an empty file would silently train with the defaults)."""
    cls = TeacherConfig if path.stem.endswith("_teacher") else DistillConfig
    layer = read_config_file(path)
    assert layer
    cfg = fill_kind_defaults(build_config(cls, layer), "image")
    assert {k: getattr(cfg, k) for k in layer} == layer  # the kind defaults override none


def test_configs_are_shipped() -> None:
    assert len(SHIPPED) >= 4


@pytest.mark.parametrize("path", sorted(CONFIGS.glob("*_sweep.toml")), ids=lambda p: p.name)
def test_shipped_sweep_configs_are_valid(path: Path) -> None:
    """A shipped sweep config loads (keys, exclusions) before hours of models are trained for
    it; the runs it names need not exist yet."""
    from rdmd.sweep import load_sweep_config

    cfg = load_sweep_config(path)
    assert cfg.source and cfg.target

"""Run configurations: dataclasses, loaded from JSON/TOML files plus command-line overrides.

An unknown key is an error (a typo silently ignored costs a day of training).
"""

from __future__ import annotations

import dataclasses
import json
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from rdmd.errors import RdmdError


@dataclass
class TeacherConfig:
    """Diffusion model of the target (SPEC §1, §7)."""

    steps: int = 10_000
    batch_size: int = 1024
    lr: float = 1e-3
    lr_schedule: str = "cosine"  # "cosine" decays to 0 over `steps`; "constant"
    warmup_steps: int = 100
    ema_decay: float = 0.999
    p_mean: float = -1.2
    p_std: float = 1.2
    encoder: list[int] | None = None  # MLP input-encoder widths; None: scaled with d
    n_train: int = 5000  # samples drawn from a built-in distribution (ignored for files)
    n_test: int = 5000
    seed: int = 0
    device: str = "auto"
    log_every: int = 100
    ckpt_every: int = 1000
    keep_checkpoints: int = 3
    sample_steps: int = 32  # Heun steps for the teacher's samples in its evaluation


@dataclass
class DistillConfig:
    """RDMD (SPEC §2, §7). ``lam`` multiplies the transport cost; 0 is plain DMD."""

    steps: int = 10_000
    batch_size: int = 1024
    lam: float = 0.02
    cost: str = "l2"
    sigma_g: float = 1.0
    lr_generator: float = 2e-5
    lr_fake: float = 5e-4
    beta1: float = 0.9
    beta2: float = 0.999
    fake_steps: int = 1
    dm_sigma_min: float = 0.02
    dm_sigma_max: float = 80.0
    normalize: bool = True
    grad_clip: float = 0.0  # 0 disables
    n_train: int = 5000
    n_test: int = 5000
    seed: int = 0
    device: str = "auto"
    log_every: int = 100
    ckpt_every: int = 1000
    keep_checkpoints: int = 3
    eval_every: int = 0  # held-out metrics during training; 0: only at the end
    floor_pairs: int = 5  # pairs of target sets for the W2 noise floor


C = TypeVar("C", TeacherConfig, DistillConfig)


def read_config_file(path: str | Path) -> dict[str, Any]:
    """A JSON or TOML file as a flat dict."""
    p = Path(path)
    if not p.is_file():
        raise RdmdError(f"config file not found: {p}")
    try:
        if p.suffix == ".toml":
            return tomllib.loads(p.read_text())
        return json.loads(p.read_text())
    except (json.JSONDecodeError, tomllib.TOMLDecodeError) as e:
        raise RdmdError(f"cannot parse config file {p}: {e}") from None


def _coerce(value: Any, current: Any, key: str) -> Any:
    """Convert a string override (``--set key=value``) to the field's type."""
    if not isinstance(value, str) or isinstance(current, str):
        return value
    try:
        return json.loads(value)
    except json.JSONDecodeError:
        if isinstance(current, bool) and value.lower() in ("true", "false"):
            return value.lower() == "true"
        raise RdmdError(f"config key {key!r}: cannot parse value {value!r}") from None


def build_config(cls: type[C], *layers: dict[str, Any] | None) -> C:
    """Defaults, then each layer in order (file, then CLI); unknown keys are errors."""
    cfg = cls()
    names = {f.name: f for f in dataclasses.fields(cls)}
    for layer in layers:
        for key, value in (layer or {}).items():
            if value is None:
                continue
            if key not in names:
                raise RdmdError(f"unknown config key {key!r} for {cls.__name__}; "
                                f"valid keys: {', '.join(sorted(names))}")
            current = getattr(cfg, key)
            value = _coerce(value, current, key)
            if isinstance(current, bool) and not isinstance(value, bool):
                raise RdmdError(f"config key {key!r} must be true/false, got {value!r}")
            if isinstance(current, int | float) and not isinstance(current, bool):
                if not isinstance(value, int | float) or isinstance(value, bool):
                    raise RdmdError(f"config key {key!r} must be a number, got {value!r}")
                value = type(current)(value) if isinstance(current, float) else value
                if isinstance(current, int) and not float(value).is_integer():
                    raise RdmdError(f"config key {key!r} must be an integer, got {value!r}")
                value = int(value) if isinstance(current, int) else value
            setattr(cfg, key, value)
    return cfg


def parse_overrides(items: list[str] | None) -> dict[str, Any]:
    """``["lam=0.1", "steps=500"]`` -> dict, values still strings (coerced per field)."""
    out: dict[str, Any] = {}
    for item in items or []:
        if "=" not in item:
            raise RdmdError(f"--set expects key=value, got {item!r}")
        k, v = item.split("=", 1)
        out[k.strip()] = v.strip()
    return out


def to_dict(cfg: TeacherConfig | DistillConfig) -> dict[str, Any]:
    return dataclasses.asdict(cfg)

"""Run configurations: dataclasses, loaded from JSON/TOML files plus command-line overrides.

An unknown key is an error (a typo silently ignored costs a day of training). A run's config
is resolved once (:func:`resolve_config`: defaults, then each layer, then the data-kind
defaults, then validation) and saved whole in the run's ``config.json``; a resumed run reads
it back (:func:`config_from_saved`) and may change only what :func:`apply_resume_changes`
allows.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from rdmd.errors import RdmdError


@dataclass
class TeacherConfig:
    """Diffusion model of the target (SPEC §1, §7)."""

    steps: int | None = None  # None: 10000; 2-D data: PLANE_DEFAULTS
    batch_size: int | None = None  # None: 1024 for vectors, 128 for images
    lr: float | None = None  # None: 1e-3 for vectors, 5e-4 for images
    lr_schedule: str = "cosine"  # "cosine" decays to 0 over `steps`; "constant"
    # "constant" only: the last decay_steps steps decay the rate linearly to 0 (a finished
    # constant-rate run extends with --resume --steps N --set decay_steps=K; docs/images.md)
    decay_steps: int = 0
    warmup_steps: int = 100  # linear learning-rate warm-up
    ema_decay: float = 0.999
    # warm the EMA up like the generator's (rdmd.ema.warmup_decay): without it a run shorter
    # than 1 / (1 - ema_decay) steps is mostly its random initialisation
    ema_warmup: bool = True
    grad_clip: float = 0.0  # max global gradient norm; 0 disables
    # EDM's log-normal training noise levels: log sigma ~ N(p_mean, p_std^2); None: -1.2 (EDM's),
    # 2-D data: PLANE_DEFAULTS (lower levels draw the modes sharper, docs/twod.md)
    p_mean: float | None = None
    p_std: float = 1.2
    # MLP input-encoder widths; None: scaled with d (2-D data: PLANE_DEFAULTS)
    encoder: list[int] | None = None
    # MLP decoder widths; None: the paper's [128, 256, 128, 64]
    decoder: list[int] | None = None
    # MLP: [n, scale] random Fourier features of the input (docs/twod.md); None: plain input
    fourier: list[float] | None = None
    backbone: str = "auto"  # "mlp", "unet:<preset>" (small32, tiny8, edm64); auto by data
    # "bf16": autocast the networks' forward passes; None: bf16 for images where the
    # hardware computes in bf16 (CUDA, AVX512-BF16/AMX CPUs), else fp32 (rdmd.precision)
    precision: str | None = None
    image_size: int | None = None  # image folders: side length; None: from the images
    image_channels: int | None = None  # image folders: 1 (grey) or 3 (RGB); None: from them
    recursive: bool = False  # image folders: also read the images in subfolders
    classifier: str | None = None  # feature classifier dir: FD of the teacher's samples
    n_train: int = 5000  # samples drawn from a built-in distribution (ignored for files)
    n_test: int = 5000
    # built-in distributions: draw every batch afresh (n_train then only fits the
    # normalizer); files and image sets always use their finite training set
    fresh_data: bool = True
    # "hue": each training image's hue rotated by a fresh uniform angle every time it is
    # drawn. Coloured MNIST only, whose hues are uniform, so the distribution is unchanged
    # while 400 shapes stop being 400 fixed colours (docs/images.md)
    augment: str = "none"
    seed: int = 0
    device: str = "auto"
    log_every: int = 100
    ckpt_every: int = 1000
    keep_checkpoints: int = 3
    sample_steps: int = 32  # Heun steps for the teacher's samples in its evaluation
    # autoguidance (rdmd.guidance, docs/twod.md "A guided teacher"): the EMA at this share of
    # the steps is kept as a guide, and the teacher is sampled and distilled as
    # guide + guidance * (teacher - guide); None: 0.5 and 3 for 2-D data, else 0 (no guide)
    guide_at: float | None = None
    guidance: float | None = None
    # guidance at noise levels up to this only (a guidance interval; above, the plain
    # teacher): None: 0.5 for 2-D data, else no limit
    guidance_sigma_max: float | None = None
    # EDM's stochastic sampler for the teacher's samples (S_churn; 0: deterministic Heun) at
    # noise levels up to churn_sigma_max (S_tmax); None: 20 and 0.25 for 2-D data (with the
    # guide it draws the modes at their width), else 0
    sample_churn: float | None = None
    churn_sigma_max: float | None = None


@dataclass
class DistillConfig:
    """RDMD (SPEC §2, §7). ``lam`` multiplies the transport cost; 0 is plain DMD."""

    method: str = "rdmd"  # the distillation method (rdmd.methods.METHODS)
    steps: int | None = None  # None: 10000; 2-D data: PLANE_DEFAULTS
    batch_size: int | None = None  # None: 1024 for vectors, 64 for images
    lam: float = 0.02
    # lambda-conditioned RDMD (method rdmd_lam, docs/lambda.md): one generator for every
    # lambda in [min, max] ("MIN:MAX" or [MIN, MAX]; --lam-range); lam is then unused
    lam_range: list[float] | None = None
    lam_zero_prob: float | None = None  # share of exact lambda = MIN draws; None: 0.1 if MIN=0
    lam_shift: float | None = None  # log(lambda + shift) is uniform; None: MAX/10 if MIN=0
    # the lambda embeddings (generator and fake score) learn at this multiple of their
    # networks' rates (docs/lambda.md: under the pixel OT start they barely move at 1)
    lam_lr_scale: float = 1.0
    # lambda continuation (fixed-lambda methods; docs/twod.md): lambda decays geometrically
    # from lam_start to lam over the first lam_anneal share of the steps; None: constant lam
    lam_start: float | None = None
    lam_anneal: float = 0.5
    cost: str = "l2"  # l2, l1, chroma, lowpass:<f>, feature:<dir>; sums: l2+10*chroma
    sigma_g: float = 1.0
    # MLP: [n, scale] random Fourier features as an extra, zero-initialised input path of the
    # generator only (the teacher and fake score unchanged; docs/twod.md); None: none, except
    # for the "denoiser" generator on 2-D data (PLANE_DEFAULTS); [] : none
    generator_fourier: list[float] | None = None
    # "denoiser": the teacher's network at sigma_g (the paper's); "potential": G(x) = x +
    # grad s(x), a gradient field by construction, as the l2 optimum is (vectors; starts at
    # the identity, sigma_g unused; its rates: VECTOR_POTENTIAL_DEFAULTS; docs/twod.md);
    # generator_widths: its MLP's hidden widths
    generator: str = "denoiser"
    generator_widths: list[int] | None = None
    # "convex": G = grad of tau*logsumexp of convex quadratics, a monotone map whose jumps
    # between modes are as sharp as tau (vectors; docs/twod.md); its number of pieces (64);
    # with generator_widths, plus the gradient of a smooth MLP potential of those widths
    generator_pieces: int | None = None
    # steps of a least-squares fit of the generator to the semi-discrete OT map onto
    # ot_start_atoms teacher samples before RDMD's first step, at rate ot_start_lr (cosine)
    # on batches of ot_start_batch; images are assigned by the pixel-space squared distance
    # (rdmd.methods.ot_start, docs/twod.md, docs/images.md); None: 0 (off), except 2-D data
    # with the "denoiser" or "potential" generator: OT_START_PER_STEP (8) times steps, at
    # most 8000
    ot_start: int | None = None
    # autoguidance weight of the real score, for a teacher with a guide (rdmd.guidance):
    # 1 distils the bare network (the guided score at 3 drew the modes narrower, docs/twod.md);
    # the OT start's atoms are drawn as the teacher samples, guided
    teacher_guidance: float = 1.0
    ot_start_atoms: int = 1024
    ot_start_lr: float = 1e-3
    ot_start_batch: int = 128
    lr_generator: float | None = None  # None: 2e-5 for vectors, 5e-5 for images
    lr_fake: float | None = None  # None: 5e-4 for vectors, 2e-4 for images
    beta1: float = 0.9
    beta2: float = 0.999
    # "cosine" decays both rates to 0 over `steps`; None: "constant" (2-D data: "cosine")
    lr_schedule: str | None = None
    decay_steps: int = 0  # "constant" only: linear decay to 0 over the last decay_steps
    warmup_steps: int = 0  # linear learning-rate warm-up
    fake_steps: int = 1
    # DMD2's GAN term (methods rdmd_gan, rdmd_lam_gan; --gan; docs/gan.md): loss weights in
    # the generator's and the discriminator's losses, and whose bottleneck features the head
    # reads ("teacher", frozen, or "fake", the fake score)
    gan_weight_gen: float = 3e-3
    gan_weight_disc: float = 1e-2
    gan_features: str = "teacher"
    dm_sigma_min: float = 0.02
    dm_sigma_max: float = 80.0
    # noise levels the fake score trains on: "lognormal" (EDM's, p_mean -1.2, p_std 1.2),
    # "loguniform" (the DM term's range), "shared" (the DM term's own draw, FastGen; the
    # default by docs/results.md "Fake-score noise levels")
    fake_sigma: str = "shared"
    normalize: bool = True
    # how the score difference is normalised: "sample", DMD's per-sample mean|y - D_real|;
    # "sigma", that mean's value for Gaussian data of the teacher's sigma_data, a function
    # of the noise level alone (keeps the DM field a gradient: docs/twod.md)
    dm_weight: str = "sample"
    grad_clip: float = 0.0  # 0 disables
    ema_decay: float | None = None  # generator EMA (warmed up); 0: off; None: by data kind
    n_train: int = 5000
    n_test: int = 5000
    fresh_data: bool = True  # a built-in source draws every batch afresh (as the teacher)
    seed: int = 0
    device: str = "auto"
    log_every: int = 100
    ckpt_every: int = 1000
    keep_checkpoints: int = 3
    eval_every: int = 0  # held-out metrics during training; 0: only at the end
    # training sources held out for validation (the generator never trains on them): scored
    # at every evaluation against target data the test never uses (rdmd.training.select)
    val_size: int = 0
    select: str = "last"  # "best_val": ship the weights of the best validation score
    # conditioned runs: "best_val" chooses only weights whose validation L2 at the top of
    # lam_range is at least this share below that at its bottom (a knob that turns); 0: any
    select_knob: float = 0.1
    floor_pairs: int = 5  # pairs of target sets for the W2 noise floor
    precision: str | None = None  # "bf16" / "fp32"; None: as TeacherConfig.precision
    teacher_dtype: str = "fp32"  # "bf16": hold the frozen teacher's weights in bf16
    classifier: str | None = None  # feature classifier dir: FD and target accuracy (images)
    target_class: int | None = None  # the classifier's label of the target domain
    recursive: bool = False  # image folders: also read the images in subfolders
    # warm start: a distillation checkpoint folder (RUN/checkpoints/step_N) or run folder (its
    # latest checkpoint) whose networks and optimiser moments this new run starts from, with
    # its own schedule from step 0 and no ot_start (rdmd.training.state.warm_start)
    init_from: str | None = None


#: a teacher sampled as before autoguidance: no guide, the deterministic sampler (the
#: vector and image defaults, and every teacher saved before the keys existed)
UNGUIDED_TEACHER: dict[str, Any] = {"guide_at": 0.0, "guidance": 1.0,
                                    "guidance_sigma_max": 1e9, "sample_churn": 0.0,
                                    "churn_sigma_max": 1e9}

#: values of keys that runs saved by earlier rdmd versions lack: what those runs used
LEGACY: dict[str, dict[str, Any]] = {
    "TeacherConfig": {"ema_warmup": False, "fresh_data": False, "augment": "none",
                      **UNGUIDED_TEACHER},
    "DistillConfig": {"ema_decay": 0.0, "fake_sigma": "lognormal", "method": "rdmd",
                      "lr_schedule": "constant", "warmup_steps": 0, "fresh_data": False,
                      # no run saved before these keys used a GAN term (its method says so):
                      # the defaults, so a saved run and the same run asked for anew compare
                      # equal (experiments/common.check_reusable_run)
                      "gan_weight_gen": 3e-3, "gan_weight_disc": 1e-2, "gan_features": "teacher",
                      "ot_start": 0, "ot_start_atoms": 1024, "ot_start_lr": 1e-3,
                      "ot_start_batch": 128},
}

CHOICES: dict[str, tuple[str, ...]] = {
    "precision": ("fp32", "bf16"), "teacher_dtype": ("fp32", "bf16"),
    "lr_schedule": ("cosine", "constant"),
    "fake_sigma": ("lognormal", "loguniform", "shared"),
    "gan_features": ("teacher", "fake"),
    "dm_weight": ("sample", "sigma"),
    "generator": ("denoiser", "potential", "convex"),
    "augment": ("none", "hue"),
    "select": ("last", "best_val"),
}

#: methods with DMD2's GAN term (their keys are refused for any other method)
GAN_METHODS = ("rdmd_gan", "rdmd_lam_gan")
GAN_KEYS = ("gan_weight_gen", "gan_weight_disc", "gan_features")

KIND_DEFAULTS: dict[str, dict[str, dict[str, Any]]] = {
    "TeacherConfig": {"vector": {"steps": 10_000, "batch_size": 1024, "lr": 1e-3,
                                 "p_mean": -1.2, **UNGUIDED_TEACHER},
                      "image": {"steps": 10_000, "batch_size": 128, "lr": 5e-4,
                                "p_mean": -1.2, **UNGUIDED_TEACHER}},
    "DistillConfig": {"vector": {"steps": 10_000, "batch_size": 1024, "lr_generator": 2e-5,
                                 "lr_fake": 5e-4, "lr_schedule": "constant",
                                 "ema_decay": 0.999, "ot_start": 0},
                      "image": {"steps": 10_000, "batch_size": 64, "lr_generator": 5e-5,
                                "lr_fake": 2e-4, "lr_schedule": "constant", "ema_decay": 0.0,
                                "ot_start": 0}},
}

#: vectors of at most this dimension are "plane" data (the 2-D built-ins, two-column .npy)
PLANE_DIM = 2
#: what "plane" data change over the vector defaults: the recipe that halves the smear
#: between 8 Gaussians' modes at the same wall time (docs/twod.md, "The 2-D defaults"), and
#: since the eleventh session the OT start before the RDMD iterations (docs/twod.md,
#: "Starting at the OT map"); since the twelfth, an autoguided teacher and 1000 RDMD
#: iterations (docs/twod.md, "A guided teacher": after the fit, more iterations trade a
#: little sharpness for W2).
#: ``generator_fourier`` applies to the "denoiser" generator only.
#: 2-D data, "denoiser" or "potential" generator: ``ot_start`` defaults to this many fit
#: steps per RDMD
#: iteration (a fit step costs about a third of an iteration; a short run's fit stays
#: short), at most OT_START_MAX (4000 / 6000 / 8000 steps: 3.8 / 3.0 / 2.8% off the modes)
OT_START_PER_STEP = 8
OT_START_MAX = 8000
PLANE_DEFAULTS: dict[str, dict[str, Any]] = {
    "TeacherConfig": {"steps": 4000, "encoder": [64, 128, 128, 128], "p_mean": -1.8,
                      "guide_at": 0.5, "guidance": 3.0, "guidance_sigma_max": 0.5,
                      "sample_churn": 20.0, "churn_sigma_max": 0.25},
    "DistillConfig": {"steps": 1000, "batch_size": 256, "lr_generator": 1e-4,
                      "lr_schedule": "cosine", "generator_fourier": [256, 3.0]},
}


#: vectors of dimension > 2 with ``generator = "potential"``: it starts at the identity, so it
#: trains at a higher, decaying rate (Theorem 3.1's d = 8 gap 0.62-0.71%, docs/twod.md,
#: "Theorem 3.1 with one key"). Not the default generator: on clustered d = 8 data it
#: put 29% of outputs off the modes against the paper's generator's 12%. No OT start there
#: (in d = 8 a fit onto 1024 atoms starts farther from the map: 3.5% at 4000 iterations
#: against 1.1%).
VECTOR_POTENTIAL_DEFAULTS: dict[str, Any] = {"lr_generator": 1e-4, "lr_schedule": "cosine"}


def data_kind(kind: str, dim: int | None) -> str:
    """The defaults profile of a data set: "image", "vector", or "plane" (vectors of
    dimension at most :data:`PLANE_DIM`)."""
    return "plane" if kind == "vector" and dim is not None and dim <= PLANE_DIM else kind


C = TypeVar("C", TeacherConfig, DistillConfig)


def fill_kind_defaults(cfg: C, kind: str) -> C:
    """Replace the ``None`` of data-dependent keys by their default for vectors, images or
    plane data (:func:`data_kind`), then validate the whole config."""
    name = type(cfg).__name__
    defaults = dict(KIND_DEFAULTS[name]["vector" if kind == "plane" else kind])
    if kind == "vector" and getattr(cfg, "generator", None) == "potential":
        defaults.update(VECTOR_POTENTIAL_DEFAULTS)
    if kind == "plane":
        defaults.update(PLANE_DEFAULTS[name])
        if getattr(cfg, "generator", "denoiser") != "denoiser":
            defaults.pop("generator_fourier", None)
        if (name == "DistillConfig" and cfg.ot_start is None
                and cfg.generator in ("denoiser", "potential")):
            steps = cfg.steps if cfg.steps is not None else defaults["steps"]
            defaults["ot_start"] = min(OT_START_PER_STEP * steps, OT_START_MAX)
    for key, value in defaults.items():
        if getattr(cfg, key) is None:
            setattr(cfg, key, copy.deepcopy(value))
    if cfg.precision is None:  # the hardware decides what is faster (rdmd.precision)
        from rdmd.precision import default_precision
        from rdmd.training.runtime import resolve_device

        cfg.precision = default_precision(kind == "image", resolve_device(cfg.device))
    validate(cfg)
    return cfg


def layered_config(cls: type[C], layers: list[dict[str, Any] | None]) -> C:
    """The layers (file, ``--set``, flags, API keywords) over the defaults. A ``lam_range``
    without an explicit ``method`` selects the conditioned method; with ``rdmd_gan``, the
    conditioned GAN method."""
    cfg = build_config(cls, *layers)
    if getattr(cfg, "lam_range", None):
        if not any((layer or {}).get("method") is not None for layer in layers):
            cfg.method = "rdmd_lam"  # type: ignore[union-attr]
        elif cfg.method == "rdmd_gan":  # type: ignore[union-attr]
            cfg.method = "rdmd_lam_gan"  # type: ignore[union-attr]
    return cfg


def resolve_config(cls: type[C], layers: list[dict[str, Any] | None], kind: str) -> C:
    """The one pass from layers to a new run's config, with the data kind's defaults. GAN
    keys set away from their defaults for a method without the GAN term are refused (they
    would do nothing); a whole config passed back as a layer (the API's ``DistillConfig``)
    carries the defaults and passes."""
    cfg = layered_config(cls, layers)
    default = cls()
    given = sorted({k for layer in layers for k, v in (layer or {}).items()
                    if k in GAN_KEYS and v is not None and v != getattr(default, k)})
    if given and getattr(cfg, "method", None) not in GAN_METHODS:
        raise RdmdError(f"{', '.join(given)} are for methods {' and '.join(GAN_METHODS)} "
                        f"(--gan sets one); this run's method is {cfg.method}")  # type: ignore[union-attr]
    return fill_kind_defaults(cfg, kind)


def apply_resume_changes(cfg: C, layers: list[dict[str, Any] | None]) -> C:
    """A resumed run keeps its saved settings. A key given again with its saved value is
    fine; any other change is refused, except ``steps`` and ``decay_steps``, which may
    extend (or shorten) a constant-rate run and add a final decay to it. A cosine schedule
    decays over the run's ``steps``: changing them would move the schedule under a
    half-trained model (extending a finished run would jump the rate from about 0 back to
    half its peak), so that is refused with the way forward. The loop then checks that the
    rate the run resumes with is the rate it stopped with (:func:`check_resumed_rate`)."""
    given = layered_config(type(cfg), layers)  # a lam_range upgrades --gan's method too
    names = {k for layer in layers for k, v in (layer or {}).items() if v is not None}
    changed = sorted(k for k in names if getattr(given, k) != getattr(cfg, k))
    others = [k for k in changed if k not in ("steps", "decay_steps")]
    if others:
        shown = ", ".join(f"{k}={getattr(given, k)!r} (saved {getattr(cfg, k)!r})"
                          for k in others)
        raise RdmdError(f"--resume continues the saved run with its saved settings; only "
                        f"steps and decay_steps may change (got {shown})")
    if "decay_steps" in changed:
        cfg.decay_steps = given.decay_steps
    if "steps" in changed:
        if cfg.lr_schedule == "cosine":
            raise RdmdError(f"this run's cosine learning-rate schedule decays over its "
                            f"{cfg.steps} steps; changing them to {given.steps} would move "
                            "the schedule mid-run (extending a finished run restarts the "
                            "rate near half its peak). Resume without --steps, or train a new "
                            "run with the total you want")
        cfg.steps = given.steps
    if "steps" in changed or "decay_steps" in changed:
        validate(cfg)
    return cfg


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


#: ``[n, scale]`` keys that ``[]`` (or ``none``) turns off, whatever the data's default
FEATURE_KEYS = ("fourier", "generator_fourier")


def _float_range(key: str, value: Any) -> list[float]:
    """``"A:B"``, ``"[A, B]"`` (as ``--set`` gives it) or ``[A, B]`` -> ``[A, B]``: a lambda
    range, or a ``[n, scale]`` pair (``fourier``; ``[]`` or ``none``: no features)."""
    given = value
    if key in FEATURE_KEYS and (
            (isinstance(value, str) and value.strip().lower() in ("[]", "none", "null"))
            or (isinstance(value, list | tuple) and not value)):
        return []
    if isinstance(value, str):
        try:
            value = (json.loads(value) if value.lstrip().startswith("[")
                     else [float(p) for p in value.split(":")])
        except ValueError:  # json.JSONDecodeError is a ValueError
            value = None
    if (not isinstance(value, list | tuple) or len(value) != 2 or not all(
            isinstance(v, int | float) and not isinstance(v, bool) for v in value)):
        form = ("MIN:MAX or [MIN, MAX]" if key == "lam_range" else
                "[n, scale], or [] for none" if key in FEATURE_KEYS else "[n, scale]")
        raise RdmdError(f"config key {key!r} must be two numbers ({form}), got {given!r}")
    return [float(v) for v in value]


def _convert(key: str, value: Any, ann: str) -> Any:
    """Check (and convert) one value against its field's annotation, e.g. ``int | None``."""
    optional = ann.endswith("| None")
    base = ann.replace("| None", "").strip()
    if base == "list[float]" and value is not None and (key in FEATURE_KEYS or not (
            optional and isinstance(value, str) and value.lower() in ("none", "null"))):
        return _float_range(key, value)
    if isinstance(value, str) and base != "str":
        if base == "bool" and value.lower() in ("true", "false"):
            return value.lower() == "true"
        if optional and value.lower() in ("none", "null"):
            return None
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            raise RdmdError(f"config key {key!r}: cannot parse value {value!r}") from None
    if value is None and optional:
        return None
    bad = RdmdError(f"config key {key!r} must be {base.replace('list[int]', 'a list of ints')}"
                    f"{' or null' if optional else ''}, got {value!r}")
    if base == "bool":
        if not isinstance(value, bool):
            raise bad
    elif base in ("int", "float"):
        if not isinstance(value, int | float) or isinstance(value, bool):
            raise bad
        if not math.isfinite(value):  # NaN or inf would first show as a NaN loss, mid-run
            raise RdmdError(f"config key {key!r} must be a finite number, got {value!r}")
        if base == "int":
            if not float(value).is_integer():
                raise bad
            value = int(value)
        else:
            value = float(value)
    elif base == "str":
        if not isinstance(value, str):
            raise bad
    elif base == "list[float]":
        return _float_range(key, value)
    elif base == "list[int]" and (not isinstance(value, list) or not all(
            isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value)):
        raise bad
    return value


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
            setattr(cfg, key, _convert(key, value, str(names[key].type)))
    return cfg


#: keys whose default became data-dependent (None until resolved) but that every saved run
#: stores: null there is a damaged file
SAVED_NOT_NULL = ("steps", "lr_schedule")


def config_from_saved(cls: type[C], saved: dict[str, Any], where: str | Path) -> C:
    """The config stored in a run's ``config.json``, checked like a config file: an unknown
    key (a hand edit, or a run written by another rdmd version) is a one-line error."""
    if not isinstance(saved, dict):
        raise RdmdError(f"{where}: 'config' must be a table of config keys")
    names = {f.name for f in dataclasses.fields(cls)}
    saved = {**LEGACY[cls.__name__], **saved}
    unknown = sorted(set(saved) - names)
    if unknown:
        raise RdmdError(f"{where}: unknown config key {unknown[0]!r} for {cls.__name__} "
                        "(written by another rdmd version, or edited?)")
    cfg = cls()
    for f in dataclasses.fields(cls):
        if f.name in saved:
            value = saved[f.name]
            # keys that were never null in a saved run (a saved config is resolved)
            if value is not None or (str(f.type).endswith("| None")
                                     and f.name not in SAVED_NOT_NULL):
                try:
                    value = None if value is None else _convert(f.name, value, str(f.type))
                except RdmdError as e:
                    raise RdmdError(f"{where}: {e}") from None
            else:
                raise RdmdError(f"{where}: config key {f.name!r} must not be null")
            setattr(cfg, f.name, value)
    try:
        validate(cfg)
    except RdmdError as e:
        raise RdmdError(f"{where}: {e}") from None
    return cfg


POSITIVE = ("batch_size", "lr", "lr_generator", "lr_fake", "log_every", "ckpt_every",
            "keep_checkpoints", "fake_steps", "floor_pairs", "n_train", "n_test",
            "sample_steps", "dm_sigma_min", "dm_sigma_max", "sigma_g", "image_size",
            "ot_start_atoms", "ot_start_lr", "ot_start_batch", "guidance",
            "teacher_guidance", "guidance_sigma_max", "churn_sigma_max")
NON_NEGATIVE = ("steps", "warmup_steps", "decay_steps", "ema_decay", "grad_clip", "eval_every",
                "val_size",
                "lam", "gan_weight_gen", "gan_weight_disc", "ot_start", "guide_at",
                "sample_churn")


def validate(cfg: TeacherConfig | DistillConfig, whole: bool = True) -> None:
    """Ranges the types cannot express; a zero batch or a negative rate is a typo.
    ``whole=False`` checks keys one by one (layers before they meet the saved or default
    config), leaving out the checks that tie keys together."""
    for key in POSITIVE:
        v = getattr(cfg, key, None)
        if v is not None and v <= 0:
            raise RdmdError(f"config key {key!r} must be > 0, got {v}")
    for key in NON_NEGATIVE:
        v = getattr(cfg, key, None)
        if v is not None and v < 0:
            alias = " (lambda)" if key == "lam" else ""
            raise RdmdError(f"config key {key!r}{alias} must be >= 0, got {v}")
    if whole and cfg.decay_steps and cfg.lr_schedule != "constant":
        raise RdmdError(f"config key 'decay_steps' is for lr_schedule 'constant' (a "
                        f"{cfg.lr_schedule} schedule decays over all steps already)")
    if whole and cfg.steps is not None and cfg.decay_steps > cfg.steps:
        raise RdmdError(f"config key 'decay_steps' ({cfg.decay_steps}) must be at most "
                        f"steps ({cfg.steps})")
    if whole and getattr(cfg, "select", "last") == "best_val" and not (cfg.val_size
                                                                      and cfg.eval_every):
        raise RdmdError("select 'best_val' needs val_size > 0 and eval_every > 0 (the "
                        "validation score is computed at each evaluation)")
    guide_at = getattr(cfg, "guide_at", None)
    if guide_at is not None and guide_at >= 1:
        raise RdmdError(f"config key 'guide_at' is a share of the steps, in [0, 1); got "
                        f"{guide_at}")
    ema = getattr(cfg, "ema_decay", None)
    if ema is not None and ema >= 1:
        raise RdmdError(f"config key 'ema_decay' must be < 1, got {ema}")
    for key, allowed in CHOICES.items():
        v = getattr(cfg, key, None)
        if v is not None and v not in allowed:
            raise RdmdError(f"config key {key!r} must be one of {', '.join(allowed)}, "
                            f"got {v!r}")
    for key in ("generator_widths", "encoder", "decoder"):
        widths = getattr(cfg, key, None)
        if widths is not None and (not widths or any(int(w) != w or w < 1 for w in widths)):
            raise RdmdError(f"config key {key!r} must be a list of integers >= 1, "
                            f"got {widths}")
    pieces = getattr(cfg, "generator_pieces", None)
    if pieces is not None and (int(pieces) != pieces or pieces < 1):
        raise RdmdError(f"config key 'generator_pieces' must be an integer >= 1, got {pieces}")
    if getattr(cfg, "generator", None) == "convex" and getattr(cfg, "generator_fourier", None):
        raise RdmdError("generator = 'convex' takes no generator_fourier (its pieces are "
                        "quadratics of the input)")
    if pieces is not None and getattr(cfg, "generator", None) != "convex":
        raise RdmdError(f"generator_pieces is for generator = 'convex'; this run's generator "
                        f"is {getattr(cfg, 'generator', None)!r}")
    for key in ("fourier", "generator_fourier"):
        ff = getattr(cfg, key, None)
        if ff and (len(ff) != 2 or int(ff[0]) != ff[0] or ff[0] < 1
                               or ff[1] <= 0):
            raise RdmdError(f"config key {key!r} must be [n, scale] with an integer n >= 1 "
                            f"and a scale > 0 ([] for none), got {ff}")
    method = getattr(cfg, "method", None)
    if method is not None:
        from rdmd.methods import METHODS

        if method not in METHODS:
            raise RdmdError(f"config key 'method' must be one of {', '.join(METHODS)}, "
                            f"got {method!r}")
        _validate_lam_range(cfg)


def _validate_lam_range(cfg: Any) -> None:
    """A lambda range belongs to the conditioned method, and that method needs one; a lambda
    continuation belongs to a fixed lambda."""
    rng = cfg.lam_range
    if cfg.method in ("rdmd_lam", "rdmd_lam_gan"):
        if not rng:
            raise RdmdError(f"method {cfg.method} needs lam_range (--lam-range MIN:MAX)")
        lo, hi = rng
        if not (math.isfinite(lo) and math.isfinite(hi) and 0 <= lo < hi):
            raise RdmdError(f"config key 'lam_range' must satisfy 0 <= MIN < MAX, got "
                            f"{lo:g}:{hi:g}")
        if cfg.lam_zero_prob is not None and not 0 <= cfg.lam_zero_prob < 1:
            raise RdmdError(f"config key 'lam_zero_prob' must be in [0, 1), got "
                            f"{cfg.lam_zero_prob:g}")
        if cfg.lam_shift is not None and (cfg.lam_shift < 0 or lo + cfg.lam_shift <= 0):
            raise RdmdError("config key 'lam_shift' must be >= 0, and > 0 when lam_range "
                            f"starts at 0 (got {cfg.lam_shift:g})")
        if not 0 <= cfg.select_knob < 1:
            raise RdmdError(f"config key 'select_knob' must be in [0, 1), got "
                            f"{cfg.select_knob:g}")
        if not (math.isfinite(cfg.lam_lr_scale) and cfg.lam_lr_scale > 0):
            raise RdmdError(f"config key 'lam_lr_scale' must be > 0, got {cfg.lam_lr_scale:g}")
        if cfg.lam_start is not None:
            raise RdmdError(f"lam_start (a lambda continuation) is for a fixed lambda; method "
                            f"{cfg.method} trains every lambda of lam_range at once")
        if cfg.generator != "denoiser":
            raise RdmdError(f"generator = {cfg.generator!r} is for a fixed lambda (it has no "
                            f"conditioning input); method {cfg.method} needs the denoiser")
    elif (rng or cfg.lam_zero_prob is not None or cfg.lam_shift is not None
          or cfg.lam_lr_scale != 1.0):
        raise RdmdError(f"lam_range, lam_zero_prob, lam_shift and lam_lr_scale are for method "
                        f"rdmd_lam (--lam-range sets it); this run's method is {cfg.method}")
    from rdmd.methods.rdmd import check_continuation

    check_continuation(cfg.lam, cfg.lam_start, cfg.lam_anneal)


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

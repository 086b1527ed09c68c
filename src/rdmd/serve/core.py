"""What the ``rdmd serve`` page does, as plain functions: no Gradio here.

- :func:`load_catalog` finds the generators to show (the shipped ones by default) and groups
  fixed-``lambda`` generators of one source/target pair into one :class:`Family`, so a
  ``lambda`` slider can choose among them; a ``lambda``-conditioned generator (its
  ``model.json`` has ``lam_range``) is a family of its own, served at any ``lambda``.
- :func:`prepare_uploads` reads uploaded files with the very function ``rdmd translate``
  uses for a folder (:func:`rdmd.data.images.load_image_file`), so the page and the CLI see
  the same pixels.
- :func:`translate_images` translates through :func:`rdmd.api.translate` and times it;
  :func:`run_baseline` runs SDEdit/ILVR/EGSDE on the family's teacher through
  :func:`rdmd.translators.make_translator`, the registry the CLI and the sweep use.
- :func:`twod_map` draws the input -> output map of a 2-D generator.

Every failure a user can cause is an :class:`~rdmd.errors.RdmdError` with a one-line message,
which the page shows while it keeps serving.
"""

from __future__ import annotations

import functools
import json
import math
import threading
import time
import warnings
import weakref
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rdmd.errors import RdmdError
from rdmd.models import META, Model, load_model

MAX_UPLOAD_MB = 10  # per file (the page refuses larger files before they reach us)
MAX_IMAGES = 64  # per translation: the page re-translates on every slider release
N_EXAMPLES = 16  # held-out examples loaded by the page's button
GRID_COLUMNS = 8
GRID_PAD = 2
N_POINTS_2D = 2000

# The baselines' main parameter (the one the page's Compare tab turns) and its default.
BASELINE_PARAM = {"sdedit": "sigma_start", "ilvr": "down", "egsde": "sigma_start"}
BASELINE_DEFAULT = {"sdedit": 2.0, "ilvr": 8, "egsde": 2.0}
N_STEPS = 18  # Heun steps of the baselines: 35 denoiser calls per image


def shipped_dirs() -> list[Path]:
    """The model folders shipped inside the package: colored MNIST, the 2-D models, then
    Fashion-MNIST (its held-out examples need the Debian package; uploads work without)."""
    from importlib import resources

    root = Path(str(resources.files("rdmd") / "pretrained"))
    return [root / "cmnist", root / "twod", root / "fmnist"]


# -- models --------------------------------------------------------------------------------

def lam_range_of(model: Model) -> tuple[float, float] | None:
    """A conditioned generator's ``lambda`` range, ``None`` for a fixed-``lambda`` one.

    Read from ``Model.lam_range`` where the model class has it, else from ``model.json``."""
    raw = getattr(model, "lam_range", None)
    if raw is None:
        raw = model.meta.get("lam_range")
    if raw is None:
        return None
    try:
        lo, hi = (float(v) for v in raw)
    except (TypeError, ValueError):
        raise RdmdError(f"lam_range must be two numbers [min, max], got {raw!r}") from None
    if not (math.isfinite(lo) and math.isfinite(hi) and 0 <= lo < hi):
        raise RdmdError(f"lam_range must satisfy 0 <= min < max, got {raw!r}")
    return lo, hi


@dataclass
class Family:
    """Generators of one source -> target pair that the page's ``lambda`` control chooses
    among: several fixed-``lambda`` models, or one conditioned model."""

    name: str
    models: list[tuple[float, Model, Path]]  # (lambda, model, directory), sorted by lambda
    conditioned: tuple[float, float] | None = None  # lam_range of a conditioned model
    teacher_dir: Path | None = None
    domain_classifier_dir: Path | None = None
    precision: str | None = None  # the networks' precision (None: rdmd translate's default)
    _teacher: Model | None = field(default=None, repr=False)
    _domain_classifier: Any = field(default=None, repr=False)

    @property
    def meta(self) -> dict[str, Any]:
        return self.models[0][1].meta

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(int(s) for s in self.meta["data_shape"])

    @property
    def kind(self) -> str:
        return "image" if len(self.shape) == 3 else "vector"

    @property
    def lams(self) -> list[float]:
        return [lam for lam, _, _ in self.models]

    def lam_bounds(self) -> tuple[float, float]:
        """The slider's range: the conditioned range, or the shipped lambdas' span."""
        if self.conditioned is not None:
            return self.conditioned
        return self.lams[0], self.lams[-1]

    def pick(self, lam: float) -> tuple[Model, float, Path]:
        """The model for ``lam``: the conditioned one at ``lam`` (clipped to its range), or
        the fixed-``lambda`` model nearest to ``lam``."""
        lam = float(lam)
        if not math.isfinite(lam):
            raise RdmdError(f"lambda must be a finite number, got {lam}")
        if self.conditioned is not None:
            lo, hi = self.conditioned
            _, model, d = self.models[0]
            return model, min(max(lam, lo), hi), d
        lam_used, model, d = min(self.models, key=lambda m: (abs(m[0] - lam), m[0]))
        return model, lam_used, d

    def teacher(self) -> Model:
        """The teacher the generators were distilled from (the baselines run on it)."""
        if self._teacher is None:
            if self.teacher_dir is None:
                raise RdmdError(f"{self.name}: its teacher was not found next to it, so the "
                                "baselines cannot run (keep the teacher folder beside the "
                                "generator, as the shipped models do)")
            self._teacher = load_model(self.teacher_dir)
        return self._teacher

    def domain_classifier(self) -> Any:
        if self._domain_classifier is None:
            if self.domain_classifier_dir is None:
                raise RdmdError(f"{self.name}: EGSDE needs a domain classifier folder "
                                "(domain_classifier/) beside the models; train one with "
                                "`rdmd train-domain-classifier`")
            from rdmd.baselines.domain_classifier import load_domain_classifier

            self._domain_classifier, _ = load_domain_classifier(self.domain_classifier_dir)
        return self._domain_classifier


def _find_teacher(gen_dir: Path, name: Any) -> Path | None:
    """The generator's teacher: ``model.json``'s ``teacher`` as given, beside the
    generator, or relative to the working directory; a folder holding a teacher."""
    if not isinstance(name, str) or not name:
        return None
    given = Path(name).expanduser()
    # A shipped or copied run keeps its teacher beside it, whatever path it was trained with.
    cands = [given] if given.is_absolute() else [gen_dir.parent / given, Path.cwd() / given]
    for cand in [*cands, gen_dir.parent / given.name]:
        try:
            if json.loads((cand / META).read_text()).get("role") == "teacher":
                return cand
        except (OSError, ValueError):
            continue
    return None


def _find_domain_classifier(*dirs: Path | None) -> Path | None:
    for d in dirs:
        if d is not None and (d.parent / "domain_classifier" / "domain_classifier.json").is_file():
            return d.parent / "domain_classifier"
    return None


def _fmt_lam(lam: float) -> str:
    return f"{lam:g}"


@dataclass
class Catalog:
    """The families the page shows: image families (Translate and Compare tabs) and 2-D
    families (2-D tab), plus a message per folder that did not load."""

    images: list[Family] = field(default_factory=list)
    vectors: list[Family] = field(default_factory=list)
    messages: list[str] = field(default_factory=list)
    precision: str | None = None  # given to every family it loads

    def names(self, kind: str = "image") -> list[str]:
        return [f.name for f in (self.images if kind == "image" else self.vectors)]

    def get(self, name: str, kind: str = "image") -> Family:
        for f in self.images if kind == "image" else self.vectors:
            if f.name == name:
                return f
        raise RdmdError(f"no model named {name!r} is loaded")

    def add_dir(self, path: str | Path) -> list[Family]:
        """Load a generator folder, or a folder of generator folders (fixed-``lambda`` runs
        of one pair become one family). Raises if nothing in it loads; a broken sibling in
        a folder of runs is reported in :attr:`messages` and skipped."""
        p = Path(str(path).strip()).expanduser()
        if not str(path).strip():
            raise RdmdError("no model directory given")
        if not p.is_dir():
            raise RdmdError(f"model directory not found: {p}")
        if (p / META).is_file():
            model = load_model(p)
            if model.role != "generator":
                raise RdmdError(f"{p} holds a {model.role}; rdmd serve shows generators: pass "
                                "a distilled run (its teacher is found through it)")
            loaded = [(p, model)]
        else:
            subs = sorted(d for d in p.iterdir() if d.is_dir() and (d / META).is_file())
            loaded = []
            for d in subs:
                try:
                    m = load_model(d)
                except RdmdError as e:
                    self.messages.append(str(e))
                    continue
                if m.role == "generator":
                    loaded.append((d, m))
            if not loaded:
                raise RdmdError(f"{p}: no generator in it or its sub-folders (a folder with "
                                f"{META} written by `rdmd distill`)")
        groups: dict[tuple[Any, ...], list[tuple[Path, Model]]] = {}
        for d, m in loaded:
            shape = tuple(m.meta["data_shape"])
            if len(shape) not in (1, 3) or (len(shape) == 1 and shape != (2,)):
                self.messages.append(f"{d}: only image and 2-D models can be shown "
                                     f"(data shape {list(shape)})")
                continue
            rng = lam_range_of(m)
            teacher = _find_teacher(d, m.meta.get("teacher"))
            key = (shape, m.meta.get("source"), m.meta.get("target"),
                   str(teacher.resolve()) if teacher else m.meta.get("teacher"),
                   str(d) if rng is not None else None)
            groups.setdefault(key, []).append((d, m))
        added = []
        for members in groups.values():
            fam = self._family(p, members)
            (self.images if fam.kind == "image" else self.vectors).append(fam)
            added.append(fam)
        if not added:
            raise RdmdError(f"{p}: nothing in it can be shown ({'; '.join(self.messages[-1:])})")
        return added

    def _family(self, root: Path, members: list[tuple[Path, Model]]) -> Family:
        d0, m0 = members[0]
        rng = lam_range_of(m0)
        models = sorted(((float(m.meta.get("lam", float("nan"))) if rng is None else rng[0],
                          m, d) for d, m in members), key=lambda t: t[0])
        if rng is None and any(not math.isfinite(lam) for lam, _, _ in models):
            bad = next(d for lam, _, d in models if not math.isfinite(lam))
            raise RdmdError(f"{bad / META}: no lambda (key 'lam') in it")
        pair = f"{m0.meta.get('source', '?')} -> {m0.meta.get('target', '?')}"
        if rng is not None:
            name = f"{pair}: {d0.name} (lambda in [{_fmt_lam(rng[0])}, {_fmt_lam(rng[1])}])"
        elif len(models) == 1:
            name = f"{pair}: {d0.name} (lambda {_fmt_lam(models[0][0])})"
        else:
            name = (f"{pair}: {root.name} (lambda "
                    f"{', '.join(_fmt_lam(lam) for lam, _, _ in models)})")
        taken = set(self.names("image")) | set(self.names("vector"))
        base, k = name, 2
        while name in taken:
            name, k = f"{base} #{k}", k + 1
        teacher = _find_teacher(d0, m0.meta.get("teacher"))
        return Family(name, models, rng, teacher, _find_domain_classifier(d0, teacher),
                      self.precision)


def load_catalog(dirs: Sequence[str | Path] | None = None,
                 precision: str | None = None) -> Catalog:
    """The families to serve: the given folders (each a generator run or a folder of runs),
    or the shipped models when none is given. Without a 2-D model among the given folders,
    the 2-D tab shows the shipped 2-D models. A folder that does not load becomes a message,
    not an exception: the page still starts and shows it. ``precision``: as ``rdmd translate
    --precision`` (None: its default)."""
    cat = Catalog(precision=precision)
    for d in (dirs or shipped_dirs()):
        try:
            cat.add_dir(d)
        except RdmdError as e:
            cat.messages.append(str(e))
    if dirs and not cat.vectors:
        twod = shipped_dirs()[1]
        if twod.is_dir():
            try:
                cat.add_dir(twod)
            except RdmdError as e:
                cat.messages.append(str(e))
    return cat


# -- inputs --------------------------------------------------------------------------------

def prepare_uploads(paths: Sequence[str | Path] | None, shape: Sequence[int]
                    ) -> tuple[torch.Tensor, list[str]]:
    """Uploaded files as a batch for a model of image ``shape`` (C, H, W), read exactly as
    ``rdmd translate`` reads a folder: any size or mode, shorter side resized, centre-cropped.
    """
    from rdmd.data.images import load_image_file

    if len(shape) != 3:
        raise RdmdError("this model translates 2-D points, not images")
    if not paths:
        raise RdmdError("no images uploaded: choose one or more PNG or JPEG files, or load "
                        "held-out examples")
    if len(paths) > MAX_IMAGES:
        raise RdmdError(f"{len(paths)} files uploaded; the page translates at most "
                        f"{MAX_IMAGES} at once")
    xs, names = [], []
    for raw in paths:
        p = Path(raw)
        size = p.stat().st_size if p.is_file() else 0
        if size == 0:
            raise RdmdError(f"{p.name}: empty file")
        if size > MAX_UPLOAD_MB * 2**20:
            raise RdmdError(f"{p.name}: {size / 2**20:.1f} MB; uploads are limited to "
                            f"{MAX_UPLOAD_MB} MB per file")
        try:
            xs.append(load_image_file(p, int(shape[-1]), int(shape[0])))
        except RdmdError as e:
            raise RdmdError(str(e).replace(str(p), p.name) + " - upload PNG or JPEG images"
                            ) from None
        names.append(p.name)
    return torch.stack(xs), names


@functools.lru_cache(maxsize=8)
def _held_out(source: str, size: int, channels: int) -> torch.Tensor:
    from rdmd.data import load_domain

    return load_domain(source, size=size, channels=channels).test


def held_out_examples(family: Family, n: int = N_EXAMPLES) -> tuple[torch.Tensor, list[str]]:
    """The first ``n`` held-out images of the family's source set (the split every run
    holds out, so the generators never trained on them)."""
    source = family.meta.get("source")
    if not isinstance(source, str):
        raise RdmdError(f"{family.name}: its model.json names no source data set")
    n = max(1, min(int(n), MAX_IMAGES))
    shape = family.shape
    x = _held_out(source, shape[-1], shape[0])[:n]
    if tuple(x.shape[1:]) != shape:
        raise RdmdError(f"{source}: held-out images are {tuple(x.shape[1:])}, the model takes "
                        f"{shape}")
    return x.clone(), [f"{source} held-out #{i}" for i in range(len(x))]


# -- translation -----------------------------------------------------------------------------

@dataclass
class Translation:
    """One method's outputs for a batch, with what the page reports about them."""

    label: str
    outputs: torch.Tensor
    l2: np.ndarray  # per image, EGSDE's L2 on [0, 1] images
    seconds: float
    nfe: int  # diffusion-network calls per image
    aux_evals: int = 0  # other networks' forward+backward passes per image (EGSDE)
    lam: float | None = None

    @property
    def ms_per_image(self) -> float:
        return 1000.0 * self.seconds / max(1, len(self.outputs))

    def calls(self) -> str:
        return f"{self.nfe}" + (f" + {self.aux_evals} classifier" if self.aux_evals else "")

    def row(self) -> list[Any]:
        return [self.label, self.calls(), round(1000.0 * self.seconds, 1),
                round(self.ms_per_image, 2), round(float(np.mean(self.l2)), 3)]


ROW_HEADERS = ["method", "network calls per image", "time (ms)", "ms per image", "mean L2"]


def _l2(x: torch.Tensor, y: torch.Tensor) -> np.ndarray:
    from rdmd.metrics.image import l2_per_image

    return l2_per_image(x, y).numpy()


_WORKER: ThreadPoolExecutor | None = None


def on_worker(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """``fn(*args, **kwargs)`` on one long-lived thread. The page's handlers run on whichever
    of the web server's threads is free; a translation on a thread that has not run one
    lately meets a cold OpenMP team and cold caches. One thread keeps them warm (issue 17)."""
    global _WORKER
    if _WORKER is None:
        _WORKER = ThreadPoolExecutor(max_workers=1, thread_name_prefix="rdmd-serve")
    return _WORKER.submit(fn, *args, **kwargs).result()


class _Frozen(torch.nn.Module):
    """A traced, frozen generator in the place of ``OneStep.net``: one graph call instead of
    about a thousand Python-level module calls (the conditioned one takes its ``lambda``
    code as an input, so one graph serves the whole slider)."""

    def __init__(self, graph: Any, cond: torch.Tensor | None) -> None:
        super().__init__()
        self.graph, self.cond = graph, cond

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.graph(z) if self.cond is None else self.graph(z, self.cond)


#: id(model) -> (a weak reference to that model, its frozen graph or None: translate eagerly).
#: The reference tells a model from a later one that reuses a freed model's id.
_GRAPHS: dict[int, tuple[weakref.ref[Any], Any]] = {}
_GRAPHS_LOCK = threading.Lock()


def cached_graph(model: Model) -> Any:
    """The frozen graph kept for this very model object; None if none was kept (not traced
    yet, or it runs eagerly)."""
    entry = _GRAPHS.get(id(model))
    return entry[1] if entry is not None and entry[0]() is model else None


def _graph(model: Model, tr: Any) -> Any:
    """``model``'s generator traced and frozen once (shape-generic: traced on a batch of 2),
    kept only if it gives bit-identical outputs to the eager network on a check batch;
    otherwise (a backbone that does not trace, a mismatch) ``None`` and the page stays
    eager. ``tr``: an ``rdmd`` translator of ``model`` (its ``net`` holds the lambda code)."""
    key = id(model)
    with _GRAPHS_LOCK:
        entry = _GRAPHS.get(key)
        if entry is None or entry[0]() is not model:  # new, or a freed model's id reused
            graph = None
            try:
                cond = getattr(tr.net, "cond", None)
                shape = tuple(int(v) for v in model.meta["data_shape"])
                gen = torch.Generator().manual_seed(0)
                z = tr.normalizer.encode(torch.randn((2, *shape), generator=gen).clamp(-1, 1))
                args = (z,) if cond is None else (z, cond)
                with torch.inference_mode(), warnings.catch_warnings():
                    warnings.simplefilter("ignore")  # tracer warnings about shape checks
                    cand = torch.jit.freeze(torch.jit.trace(model.net.eval(), args,
                                                            check_trace=False))
                    if torch.equal(tr.net(z[:1]), cand(*(z[:1], *args[1:]))):
                        graph = cand
            except Exception:  # noqa: BLE001 - a failure to trace just means: stay eager
                graph = None
            _GRAPHS[key] = (weakref.ref(model), graph)
        return _GRAPHS[key][1]


def warm_graphs(families: Sequence[Family]) -> threading.Thread:
    """Trace the image generators of ``families`` on a background thread (about a second
    each), so the first upload or slider move on each model does not wait for it."""
    from rdmd.translators import make_translator

    def run() -> None:
        for fam in families:
            for lam, model, _ in fam.models:
                try:
                    tr = make_translator("rdmd", model, **_params(fam, lam))
                    if tr.resolved_precision == "fp32":
                        _graph(model, tr)
                except RdmdError:
                    continue

    t = threading.Thread(target=run, name="rdmd-serve-trace", daemon=True)
    t.start()
    return t


def _params(family: Family, lam: float) -> dict[str, Any]:
    """The translator's keywords for ``family`` at ``lam`` (already picked)."""
    kw: dict[str, Any] = {"lam": lam} if family.conditioned is not None else {}
    return kw | ({"precision": family.precision} if family.precision else {})


def translate_images(family: Family, x: torch.Tensor, lam: float,
                     frozen: bool = False) -> Translation:
    """RDMD at ``lam`` (the nearest shipped ``lambda`` for fixed-``lambda`` families), through
    the translator :func:`rdmd.api.translate` builds: the same outputs as ``rdmd translate``.

    ``frozen``: run the generator as a traced, frozen graph (the page's slider; about 10%
    faster on 2 CPU cores), used only where it reproduced the eager outputs bit for bit.
    Not thread-safe: the page calls it with ``frozen`` on one thread (:func:`on_worker`)."""
    from rdmd.api import translate
    from rdmd.translators import make_translator

    model, used, d = family.pick(lam)
    kw = _params(family, used)
    tr = None
    if frozen:  # the first call per model traces it (about a second), before the clock
        tr = make_translator("rdmd", model, **kw)
        # a graph traced under bf16 autocast does not reproduce the eager numbers: images
        # (bf16 by default) run eagerly, which in bf16 is faster than the fp32 graph anyway
        graph = _graph(model, tr) if tr.resolved_precision == "fp32" else None
        if graph is not None:
            tr.net = _Frozen(graph, getattr(tr.net, "cond", None))
    t0 = time.perf_counter()
    if tr is None:
        y = translate(model, x, **kw)
    else:
        with torch.inference_mode():  # no autograd bookkeeping at all; the same numbers
            y = tr.translate(x, 0, 512)  # rdmd.translate's call, with its chunk
    dt = time.perf_counter() - t0
    label = (f"RDMD (lambda {_fmt_lam(used)}"
             + ("" if family.conditioned is not None else f", {d.name}") + ")")
    return Translation(label, y, _l2(x, y), dt, 1, 0, used)


def run_baseline(family: Family, method: str, x: torch.Tensor, value: float | None = None,
                 n_steps: int = N_STEPS, seed: int = 0) -> Translation:
    """A multi-step baseline on the family's teacher, its main parameter set to ``value``;
    the same call ``rdmd translate --method`` makes."""
    from rdmd.translators import make_translator

    if method not in BASELINE_PARAM:
        raise RdmdError(f"unknown baseline {method!r}; choose one of "
                        f"{', '.join(BASELINE_PARAM)}")
    key = BASELINE_PARAM[method]
    v = BASELINE_DEFAULT[method] if value is None else value
    params: dict[str, Any] = {key: int(v) if key == "down" else float(v),
                              "n_steps": int(n_steps)}
    if method == "egsde":
        params["domain_classifier"] = family.domain_classifier()
    if family.precision:
        params["precision"] = family.precision
    tr = make_translator(method, family.teacher(), **params)
    t0 = time.perf_counter()
    y = tr.translate(x, seed, 512)
    dt = time.perf_counter() - t0
    return Translation(tr.describe(), y, _l2(x, y), dt, tr.nfe, tr.aux_evals)


def to_grid(rows: Sequence[torch.Tensor], columns: int = GRID_COLUMNS,
            pad: int = GRID_PAD) -> np.ndarray:
    """Rows of images (inputs, then each method's outputs) as one uint8 RGB picture: blocks
    of ``columns`` images, each block one row per method, quantised as a saved PNG is."""
    from rdmd.data.images import to_uint8

    n = len(rows[0])
    c, h, w = rows[0].shape[1:]
    n_cols = min(columns, n)
    n_blocks = math.ceil(n / columns)
    k = len(rows)
    height = n_blocks * (k * (h + pad) + pad) + pad
    width = n_cols * (w + pad) + pad
    grid = np.full((height, width, 3), 255, np.uint8)
    for i in range(n):
        b, col = divmod(i, columns)
        for r, batch in enumerate(rows):
            top = pad + b * (k * (h + pad) + pad) + r * (h + pad)
            left = pad + col * (w + pad)
            grid[top:top + h, left:left + w] = to_uint8(batch[i])  # (h, w, 1) broadcasts
    return grid


# -- 2-D -----------------------------------------------------------------------------------

@functools.lru_cache(maxsize=8)
def _points(spec: str, n: int) -> np.ndarray:
    from rdmd.data import load_domain

    return load_domain(spec, n_train=n, n_test=n, seed=0).test[:n].numpy()


def twod_map(family: Family, lam: float, n: int = N_POINTS_2D) -> tuple[np.ndarray, str]:
    """The input -> output map of a 2-D generator on ``n`` held-out source points, beside
    held-out target points: an RGB picture and a line of its saved metrics."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from rdmd.api import translate
    from rdmd.plots import draw_map

    model, used, d = family.pick(lam)
    meta = model.meta
    x = _points(str(meta["source"]), n)
    y = _points(str(meta["target"]), n)
    kw = {"lam": used} if family.conditioned is not None else {}
    t0 = time.perf_counter()
    gx = np.asarray(translate(model, x, **kw))
    dt = time.perf_counter() - t0
    fig, ax = plt.subplots(figsize=(5, 5))
    draw_map(ax, x, gx, y)
    ax.set_title(f"{meta['source']} -> {meta['target']}, lambda = {_fmt_lam(used)}")
    ax.legend(loc="upper right", markerscale=4, fontsize=8)
    fig.tight_layout()
    fig.canvas.draw()
    img = np.asarray(fig.canvas.buffer_rgba())[:, :, :3].copy()
    plt.close(fig)
    text = (f"lambda {_fmt_lam(used)} ({d.name}): {n} held-out points in one network call, "
            f"{1000 * dt:.1f} ms; mean squared move {float(((gx - x) ** 2).sum(1).mean()):.3g}")
    mpath = d / "metrics.json"
    if mpath.is_file():
        try:
            m = json.loads(mpath.read_text())
        except ValueError:
            m = {}
        shown = [f"{k} {m[k]:.3g}" for k in ("w2_over_floor", "crossings", "ot_gap")
                 if isinstance(m.get(k), int | float)]
        if shown:
            text += "; saved metrics: " + ", ".join(shown)
    return img, text

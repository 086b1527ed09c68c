"""Running the sweep: the data at the teacher's shape, the RDMD runs (given, trained or
resumed), EGSDE's domain classifier, and one scored, timed entry per configuration."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from rdmd.checkpoint import atomic_save_tensors, atomic_write_json
from rdmd.errors import RdmdError
from rdmd.sweep.config import (
    METHOD_ORDER,
    NEEDS_DOMAIN_CLASSIFIER,
    SweepConfig,
    config_dict,
    load_sweep_config,
    plan,
)
from rdmd.sweep.report import fd_name, write_outputs

if TYPE_CHECKING:
    from rdmd.data import Domain
    from rdmd.models import Model


def load_data(cfg: SweepConfig) -> tuple[Model, Domain, Domain]:
    """The teacher, and source and target loaded at the teacher's image shape.

    Image folders are brought to the teacher's size and channels by the folder policy the
    teacher's own target went through (:mod:`rdmd.data.folders`, conversions counted and
    printed); every method then scores inputs the teacher was trained on. Built-in sets of
    another shape are refused."""
    from rdmd.data import load_domain
    from rdmd.data.folders import announce
    from rdmd.data.images import is_image_spec
    from rdmd.models import load_model

    if not is_image_spec(cfg.source):
        load_domain(cfg.source)  # a missing file or folder is reported as such
        raise RdmdError("rdmd sweep compares image translators (the baselines filter pixels)")
    teacher = load_model(cfg.teacher)
    shape = tuple(int(s) for s in teacher.meta["data_shape"])
    if len(shape) != 3:
        raise RdmdError(f"rdmd sweep compares image translators; the teacher in {cfg.teacher} "
                        f"models vectors of shape {shape}")
    channels, size = shape[0], shape[-1]
    doms = []
    for name, spec in (("source", cfg.source), ("target", cfg.target)):
        dom = load_domain(spec, size=size, channels=channels,
                          purpose=f"the teacher in {cfg.teacher}")
        announce(dom, f"{name} folder")
        if dom.kind != "image" or dom.shape != shape:
            raise RdmdError(f"{name} {spec!r} has samples of shape "
                            f"{'x'.join(map(str, dom.shape))} but the teacher in "
                            f"{cfg.teacher} was trained on {'x'.join(map(str, shape))}")
        doms.append(dom)
    return teacher, doms[0], doms[1]


def _rdmd_run(cfg: SweepConfig, out: Path, lam: float, progress: bool) -> Path:
    """The run directory of RDMD at ``lam``: a given one, else trained (or resumed) here."""
    given = cfg.rdmd.get("runs", {}).get(lam)
    if given:
        if not (Path(given) / "model.json").is_file():
            raise RdmdError(f"[rdmd] runs: {given} holds no finished model (model.json)")
        return Path(given)
    run = out / "rdmd" / f"lam{lam:g}"
    if (run / "model.json").is_file():
        return run
    from rdmd.config import read_config_file
    from rdmd.training import distill

    layers: list[dict[str, Any]] = []
    if cfg.rdmd.get("config"):
        layers.append(read_config_file(cfg.rdmd["config"]))
    extra = {"lam": lam, "classifier": cfg.classifier, "target_class": cfg.target_class,
             "steps": cfg.rdmd.get("steps")}
    layers.append({k: v for k, v in extra.items() if v is not None})
    # The same layers on resume: a run whose saved settings differ from the sweep's is
    # refused (only steps and decay_steps may change), never silently continued with the old ones.
    resume = (run / "config.json").is_file()
    print(f"sweep: {'resuming' if resume else 'training'} RDMD lambda={lam:g} in {run}")
    return distill(cfg.source, cfg.teacher, run, layers, target=cfg.target, resume=resume,
                   progress=progress)


def _domain_classifier(cfg: SweepConfig, method: str, out: Path, src: Any, tgt: Any,
                       progress: bool) -> str:
    """EGSDE's classifier: the configured directory if it holds one, else trained there (or
    in ``<out>/domain_classifier``) on the sweep's own source and target training images."""
    from rdmd.baselines.domain_classifier import META, fit_and_save

    g = cfg.grids[method]
    d = Path(g.get("domain_classifier") or out / "domain_classifier")
    if not (d / META).is_file():
        steps = int(g.get("classifier_steps", 1500))
        print(f"sweep: training EGSDE's domain classifier ({steps} steps) in {d}")
        fit_and_save(src, tgt, d, steps, progress=progress)
    return str(d)


def _throughput(tr: Any, x: torch.Tensor, seed: int, chunk: int) -> tuple[torch.Tensor, float]:
    """Outputs for ``x`` and images per second of that call, after a one-batch warm-up."""
    tr.translate(x[:min(len(x), 4)], seed, chunk)
    t0 = time.perf_counter()
    y = tr.translate(x, seed, chunk)
    return y, len(x) / max(time.perf_counter() - t0, 1e-9)


def run_sweep(config: str | Path | SweepConfig, out_dir: str | Path,
              only: list[str] | None = None, progress: bool = True) -> dict[str, Any]:
    """Run (or finish) the sweep; returns the summary. See :mod:`rdmd.sweep`."""
    from rdmd.evaluation import image_translation_metrics
    from rdmd.translators import make_translator

    cfg = config if isinstance(config, SweepConfig) else load_sweep_config(config)
    out = Path(out_dir)
    entries = plan(cfg)
    if only:
        bad = sorted(set(only) - set(METHOD_ORDER))
        if bad:
            raise RdmdError(f"--only: unknown method(s) {', '.join(bad)}")
        entries = [e for e in entries if e.method in only]
    teacher, src, tgt = load_data(cfg)
    # checked before anything is written: a refused sweep leaves no folder behind
    (out / "entries").mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / "sweep_config.json", config_dict(cfg))
    x = src.test[:cfg.n_eval] if cfg.n_eval > 0 else src.test
    todo = [e for e in entries if not (out / "entries" / f"{e.key}.json").is_file()]
    print(f"sweep: {len(entries)} configurations, {len(entries) - len(todo)} done, "
          f"{len(todo)} to run, on {len(x)} held-out {cfg.source} images")
    fixed = {m: {"domain_classifier": _domain_classifier(cfg, m, out, src, tgt, progress)}
             for m in NEEDS_DOMAIN_CLASSIFIER if any(e.method == m for e in todo)}
    for i, e in enumerate(todo, 1):
        if e.method == "rdmd" and cfg.rdmd.get("model"):  # one conditioned generator
            run = Path(cfg.rdmd["model"])
            tr = make_translator("rdmd", run, lam=e.params["lam"])
        elif e.method == "rdmd":
            run = _rdmd_run(cfg, out, e.params["lam"], progress)
            tr = make_translator("rdmd", run)
        else:
            tr = make_translator(e.method, teacher, **e.params, **fixed.get(e.method, {}))
        t0 = time.perf_counter()
        y, ips = _throughput(tr, x, cfg.seed, cfg.chunk)  # images, clamped to [-1, 1]
        res = image_translation_metrics(x, y, tgt, cfg.classifier, cfg.target_class)
        row = {"method": e.method, "key": e.key, **{f"p_{k}": v for k, v in e.params.items()},
               "nfe": tr.nfe, "aux_evals": tr.aux_evals, "images_per_s": ips,
               "threads": torch.get_num_threads(), "device": str(tr.device),
               "seconds": time.perf_counter() - t0, **res}
        if e.method == "rdmd":
            row["run"] = str(run)
        else:
            row["guidance"] = tr.guidance
        atomic_save_tensors(out / "entries" / f"{e.key}.safetensors",
                            {"outputs": y[:cfg.fig5_images].contiguous()})
        atomic_write_json(out / "entries" / f"{e.key}.json", row)  # marks the entry done
        fd = fd_name(row)
        print(f"sweep: [{i}/{len(todo)}] {tr.describe()}: l2 {row['l2']:.3f}, "
              + (f"{fd} {row[fd]:.2f}, " if fd else "") + f"{ips:.1f} img/s")
    return write_outputs(cfg, out, x)


"""Recipe: distil a teacher into a one-step generator with a distillation method (RDMD by
default; the config key ``method`` picks one of :data:`rdmd.methods.METHODS`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from rdmd import distributed
from rdmd.config import DistillConfig
from rdmd.costs import get_cost
from rdmd.data import load_domain
from rdmd.errors import RdmdError
from rdmd.methods import METHODS
from rdmd.models import Model, load_model, save_model
from rdmd.training.checks import check_classifier
from rdmd.training.loop import run_loop
from rdmd.training.rundir import as_layers, prepare_run, start_run
from rdmd.training.runtime import data_batches, hold_in_bf16, setup_dist
from rdmd.training.state import fmt_shape


def _load_teacher(path: str) -> Model:
    model = load_model(path)
    if model.role != "teacher":
        raise RdmdError(f"{path} holds a {model.role}, not a teacher")
    return model


def distill(source: str | None, teacher_dir: str | Path | None, out_dir: str | Path,
            config: Any = None,
            target: str | None = None, resume: bool = False, progress: bool = True) -> Path:
    """Distil the teacher into a one-step generator from ``source`` (Eq. 15).

    ``config`` holds config keys (a dict, or layers applied in order). ``target``
    (optional) gives held-out target samples for the metrics; by default the teacher's own
    target is used. With ``resume=True`` the saved run continues; only ``steps`` may change.
    """
    out = Path(out_dir)
    layers = as_layers(config)
    teachers: dict[str, Model] = {}

    def kind(data: dict[str, Any]) -> str:
        if data["teacher"] is None:
            raise RdmdError("a teacher run directory is required")
        teachers[data["teacher"]] = _load_teacher(data["teacher"])
        return str(teachers[data["teacher"]].meta["kind"])

    data = {"source": source, "teacher": None if teacher_dir is None else str(teacher_dir),
            "target": target}
    run, cfg = prepare_run(out, "distill", DistillConfig, data, layers, kind, resume)
    teacher_model = teachers.get(run["teacher"]) or _load_teacher(run["teacher"])
    run["target"] = run["target"] or teacher_model.meta["target"]
    shape = tuple(teacher_model.meta["data_shape"])
    size = shape[-1] if len(shape) == 3 else 32
    channels = shape[0] if len(shape) == 3 else 3
    if len(shape) == 3:
        from rdmd.data.images import check_folder_fits

        for name in ("source", "target"):
            check_folder_fits(run[name], size, channels,
                              f"{name} folder", f"the teacher in {run['teacher']}")
    src = load_domain(run["source"], cfg.n_train, cfg.n_test, cfg.seed, size, channels)
    tgt = load_domain(run["target"], cfg.n_test, cfg.n_test, cfg.seed, size, channels)
    for name, dom in (("source", src), ("target", tgt)):
        if dom.shape != shape:
            what = "images" if dom.kind == "image" else "samples"
            raise RdmdError(f"{name} {dom.name!r} has {what} of shape {fmt_shape(dom.shape)} "
                            f"but the teacher in {run['teacher']} was trained on "
                            f"{fmt_shape(shape)}")
    cost = get_cost(cfg.cost, shape)
    check_classifier(cfg.classifier, shape, cfg.target_class)
    d, device = setup_dist(cfg.device, cfg.batch_size)
    distributed.barrier()  # every rank has checked the run folder before rank 0 creates it
    torch.manual_seed(cfg.seed)
    norm = teacher_model.normalizer
    x_train = norm.encode(src.train).to(device)
    teacher = teacher_model.denoiser.to(device)
    method = METHODS[cfg.method].from_config(teacher, cfg, cost)
    if cfg.teacher_dtype == "bf16":
        hold_in_bf16(method.teacher)
    rng = torch.Generator().manual_seed(cfg.seed)
    backbone = teacher_model.meta["backbone"]
    meta = {"role": "generator", "method": cfg.method, "backbone": backbone,
            "sigma_data": teacher_model.meta["sigma_data"], "normalizer": norm.to_dict(),
            "data_shape": list(shape), "kind": teacher_model.meta["kind"],
            "source": run["source"], "target": run["target"], "teacher": run["teacher"],
            "cost": cfg.cost, "steps": cfg.steps, "ema_decay": cfg.ema_decay, "lam": cfg.lam,
            "sigma_g": float(method.result().sigma_g), **method.model_meta()}
    # The generator's EMA (if on) is what is evaluated and saved; the raw one trains.
    from rdmd.evaluation import evaluate_translation, write_translation_report

    def eval_fn(step: int) -> dict[str, float]:  # on every rank: outputs are gathered
        net = method.result()
        was = net.training
        m = evaluate_translation(distributed.gathered(net), norm, src, tgt, cfg, floor=False)
        net.train(was)
        return {k: v for k, v in m.items() if isinstance(v, float)}

    run_loop(out, method, data_batches(src, norm, x_train, cfg, rng, d, device), rng, cfg,
                   dist=d,
                   device=device, signature={"job": "distill", "backbone": backbone,
                                             "data_shape": list(shape)},
                   ema_name="generator_ema", ema_warmup=True, resume=resume,
                   progress=progress, desc=f"{cfg.method} lam={cfg.lam:g}", eval_fn=eval_fn,
                   on_start=lambda: start_run(out, run))
    if d.main:
        save_model(out, method.result(), meta)
    # every rank translates its share of the held-out set; rank 0 writes the report
    write_translation_report(out, distributed.gathered(method.result()), norm, src, tgt, cfg)
    distributed.barrier()  # every rank returns with the model and report written
    return out

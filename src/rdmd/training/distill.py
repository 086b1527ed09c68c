"""Recipe: distil a teacher into a one-step generator with a distillation method (RDMD by
default; the config key ``method`` picks one of :data:`rdmd.methods.METHODS`)."""

from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path
from typing import Any

import torch

from rdmd import checkpoint as ckpt
from rdmd import distributed
from rdmd.config import DistillConfig, data_kind
from rdmd.costs import get_cost
from rdmd.data import Domain, load_domain
from rdmd.data.folders import announce
from rdmd.errors import RdmdError
from rdmd.methods import METHODS
from rdmd.methods.rdmd_lam import eval_at_lams, gmean_key, knob_turns, write_lam_report
from rdmd.models import Model, load_model, save_model
from rdmd.training.checks import check_classifier
from rdmd.training.loop import run_loop
from rdmd.training.rundir import (
    CHECKPOINTS,
    Claim,
    as_layers,
    check_layers,
    claim_run,
    prepare_run,
    start_run,
)
from rdmd.training.runtime import data_batches, hold_in_bf16, setup_dist, source_draw
from rdmd.training.select import BestWeights, split_validation
from rdmd.training.state import fmt_shape, warm_start


def _load_teacher(path: str) -> Model:
    model = load_model(path)
    if model.role != "teacher":
        raise RdmdError(f"{path} holds a {model.role}, not a teacher")
    return model


HELD_OUT_KEYS = ("val_size", "seed")


def check_held_out(init_from: str, source: str, cfg: DistillConfig) -> None:
    """Refuse a warm start whose networks trained on this run's validation sources.

    Why: the held-out split follows ``seed`` and ``val_size``; a checkpoint
    from a run that split otherwise (or held nothing out) has seen some of the sources this
    run would choose its weights on, and the choice would flatter it. The source run's
    settings are read from its ``config.json`` (the run folder, or the one above a
    checkpoint's ``checkpoints/``); where there is none, say so and go on.
    """
    path = Path(init_from)
    run_dir = path if (path / "config.json").is_file() else path.parent.parent
    try:
        saved = json.loads((run_dir / "config.json").read_text())
    except (OSError, ValueError):
        print(f"rdmd: warning: init_from {path} has no readable config.json beside it: "
              "cannot check that its networks never trained on this run's validation "
              "sources", file=sys.stderr, flush=True)
        return
    theirs = saved.get("config") or {}
    ours = {"source": source, **{k: getattr(cfg, k) for k in HELD_OUT_KEYS}}
    theirs = {"source": saved.get("source"), **{k: theirs.get(k) for k in HELD_OUT_KEYS}}
    diff = [k for k in ours if theirs[k] != ours[k]]
    if diff:
        k = diff[0]
        raise RdmdError(f"init_from {path} trained on another split of the sources (its {k} "
                        f"is {theirs[k]!r}, this run's {ours[k]!r}): its networks have seen "
                        "this run's validation sources; use the same source, seed and "
                        "val_size, or val_size=0")


def load_pair(run: dict[str, Any], cfg: DistillConfig, teacher_meta: dict[str, Any]
              ) -> tuple[Domain, Domain]:
    """Source and target at the teacher's shape, by the folder policy the teacher's target
    went through (rdmd.data.folders): what the teacher accepted, distillation accepts. The
    teacher's own target folder is read as the teacher read it (``recursive`` included).
    Only the teacher's metadata (``model.json``) is read, so a finished run's data can be
    loaded again without its weights."""
    shape = tuple(teacher_meta["data_shape"])
    size, channels = (shape[-1], shape[0]) if len(shape) == 3 else (None, None)
    purpose = f"the teacher in {run['teacher']}"
    t_info = teacher_meta.get("target_info") or {}
    t_rec = cfg.recursive or (run["target"] == teacher_meta.get("target")
                              and bool(t_info.get("recursive", False)))
    src = load_domain(run["source"], cfg.n_train, cfg.n_test, cfg.seed, size, channels,
                      recursive=cfg.recursive, purpose=purpose)
    tgt = load_domain(run["target"], cfg.n_test, cfg.n_test, cfg.seed, size, channels,
                      recursive=t_rec, purpose=purpose)
    announce(src, "source folder")
    announce(tgt, "target folder")
    return src, tgt


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
    check_layers(DistillConfig, layers)  # a bad value is refused before any folder exists
    with claim_run(out, "distill", resume, distributed.env_world().main) as claim:
        return _distill(source, teacher_dir, out, layers, target, resume, progress, claim)


def start_method(method: Any, draw: Any, main: bool, meta: dict[str, Any],
                 progress: bool = False) -> None:
    """The method's start before step 0 of a new run (RDMD's ``ot_start``; a progress bar
    of its own), and what it reports kept in the model's metadata."""
    t0 = time.perf_counter()
    info = method.start(draw, progress=progress and main)
    if info:
        meta["start"] = {**info, "seconds": round(time.perf_counter() - t0, 1)}


def _distill(source: str | None, teacher_dir: str | Path | None, out: Path,
             layers: list[dict[str, Any] | None], target: str | None, resume: bool,
             progress: bool, claim: Claim) -> Path:
    teachers: dict[str, Model] = {}

    def kind(data: dict[str, Any]) -> str:
        if data["teacher"] is None:
            raise RdmdError("a teacher run directory is required")
        teachers[data["teacher"]] = _load_teacher(data["teacher"])
        meta = teachers[data["teacher"]].meta
        shape = meta.get("data_shape") or []
        return data_kind(str(meta["kind"]), shape[0] if len(shape) == 1 else None)

    data = {"source": source, "teacher": None if teacher_dir is None else str(teacher_dir),
            "target": target}
    run, cfg = prepare_run(out, "distill", DistillConfig, data, layers, kind, resume)
    teacher_model = teachers.get(run["teacher"]) or _load_teacher(run["teacher"])
    run["target"] = run["target"] or teacher_model.meta["target"]
    if run["target"] is None:  # a diffusers teacher carries no data of its own
        raise RdmdError(f"the teacher in {run['teacher']} names no target data: pass --target "
                        "(held-out target images for the metrics)")
    from rdmd.interop.diffusers import clip_to_teacher

    clipped = clip_to_teacher(cfg, teacher_model.meta)  # noise levels the scheduler covers
    if clipped:
        run["config"]["sigma_g"] = cfg.sigma_g
        run["config"]["dm_sigma_min"], run["config"]["dm_sigma_max"] = (cfg.dm_sigma_min,
                                                                        cfg.dm_sigma_max)
        if distributed.is_main():
            print(f"rdmd: {clipped}", file=sys.stderr)
    shape = tuple(teacher_model.meta["data_shape"])
    src, tgt = load_pair(run, cfg, teacher_model.meta)
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
    fit, x_val = split_validation(src.train, cfg.val_size, cfg.seed, src.name)
    if cfg.init_from and x_val is not None:
        check_held_out(cfg.init_from, run["source"], cfg)
    x_train = norm.encode(fit).to(device)
    teacher = teacher_model.denoiser.to(device)
    method = METHODS[cfg.method].from_config(teacher, cfg, cost)
    if cfg.teacher_dtype == "bf16":
        for net in (teacher, teacher_model.guide):
            if net is not None:
                hold_in_bf16(net)
    # the teacher's samples as it draws them (autoguided, rdmd.guidance; else the bare
    # network), and the real score at teacher_guidance (1: the bare network)
    method.use_teacher(teacher_model.score().to(device), teacher_model.churn,
                       teacher_model.score(cfg.teacher_guidance).to(device))
    rng = torch.Generator().manual_seed(cfg.seed)
    if method.needs_target:  # real target samples (rdmd_gan's discriminator), same draws
        method.attach_target(data_batches(tgt, norm, norm.encode(tgt.train).to(device), cfg,
                                          rng, d, device))
    backbone = teacher_model.meta["backbone"]
    meta = {"role": "generator", "method": cfg.method, "backbone": backbone,
            "sigma_data": teacher_model.meta["sigma_data"], "normalizer": norm.to_dict(),
            "data_shape": list(shape), "kind": teacher_model.meta["kind"],
            "source": run["source"], "target": run["target"], "teacher": run["teacher"],
            "cost": cfg.cost, "steps": cfg.steps, "ema_decay": cfg.ema_decay, "lam": cfg.lam,
            "sigma_g": getattr(method.result(), "sigma_g", None)}
    for key, value in method.model_meta().items():  # a method adds keys (None drops one)
        if value is None:
            meta.pop(key, None)
        else:
            meta[key] = value
    if "policy" in src.info or "policy" in tgt.info:  # folders: what the policy did to them
        meta["folder_policy"] = {"source": src.info.get("policy"),
                                 "target": tgt.info.get("policy")}
    code = getattr(method, "code", None)  # a lambda-conditioned method's range (rdmd_lam)
    from rdmd.evaluation import (
        validation_metrics,
        validation_reference,
        validation_score_key,
    )

    score = validation_score_key(src, cfg.classifier)
    if x_val is not None and src.kind == "image" and score is not None:
        validation_reference(tgt, len(src.test))  # enough target images, before training
    best = None
    if cfg.select == "best_val":
        if score is None:
            raise RdmdError("select 'best_val' on images needs a classifier (its Frechet "
                            "distance is the validation score)")
        best = BestWeights(method.result())
    # a conditioned run is one network for every lambda: scored over the report lambdas
    chosen_by = score if code is None or score is None else gmean_key(score)
    # The generator's EMA (if on) is what is evaluated and saved; the raw one trains.
    from rdmd.evaluation import evaluate_translation, write_translation_report

    def eval_fn(step: int) -> dict[str, float]:  # on every rank: outputs are gathered
        net = method.result()
        was = net.training

        def evaluate(g: torch.nn.Module) -> dict[str, float]:
            m = evaluate_translation(distributed.gathered(g), norm, src, tgt, cfg, floor=False)
            if x_val is not None:
                m.update(validation_metrics(distributed.gathered(g), norm, x_val, src, tgt,
                                            cfg))
            return {k: v for k, v in m.items() if isinstance(v, float)}

        res = (evaluate(net) if code is None else
               eval_at_lams(net, code, evaluate, gmean=score if x_val is not None else None))
        if best is not None:  # a conditioned generator is chosen only where its knob turns
            ok = code is None or knob_turns(res, cfg.select_knob)
            best.offer(net, res[str(chosen_by)] if ok else math.nan, step)
        net.train(was)
        return res

    signature = {"job": "distill", "backbone": backbone, "data_shape": list(shape)}
    if not (resume and ckpt.latest_checkpoint(out / CHECKPOINTS) is not None):
        if cfg.init_from:  # the networks come from another run: no start of their own
            meta["init_from"] = warm_start(method.modules, method.optimizers, cfg.init_from,
                                           signature)
            if d.main:
                w = meta["init_from"]
                print(f"rdmd: starting from {w['path']} (step {w['step']}): "
                      f"{', '.join(w['modules'])}"
                      + (f"; fresh: {', '.join(w['fresh'])}" if w["fresh"] else ""),
                      file=sys.stderr, flush=True)
        else:
            start_method(method, source_draw(src, norm, x_train, cfg, device), d.main, meta,
                         progress)
    run_loop(out, method, data_batches(src, norm, x_train, cfg, rng, d, device), rng, cfg,
                   dist=d,
                   device=device, signature=signature,
                   ema_name="generator_ema", ema_warmup=True, resume=resume,
                   progress=progress, eval_fn=eval_fn,
                   desc=f"{cfg.method} lam={cfg.lam:g}" if code is None else
                   f"{cfg.method} lam={code.lo:g}:{code.hi:g}",
                   on_start=lambda: start_run(out, run), stop=claim.stop,
                   keep=None if best is None else {"generator_best": best})
    final = method.result()
    if best is not None and best.chosen() is not None:
        final = best.net  # the evaluation with the best validation score, not the last
        meta["selected"] = {"rule": "best_val", "metric": chosen_by, **best.chosen()}
        if code is not None:
            meta["selected"]["select_knob"] = cfg.select_knob
    elif best is not None:
        meta["selected"] = {"rule": "last", "why": "no evaluation was eligible"}
        if d.main:
            print(f"rdmd: warning: no evaluation's validation L2 fell by select_knob = "
                  f"{cfg.select_knob:g} over lam_range: the last weights are saved",
                  file=sys.stderr, flush=True)
    if x_val is not None:
        meta["val_size"] = len(x_val)
    if d.main:
        save_model(out, final, meta)
    # every rank translates its share of the held-out set; rank 0 writes the report
    extra = {k: meta[k] for k in ("selected", "val_size") if k in meta}
    if code is None:
        write_translation_report(out, distributed.gathered(final), norm, src, tgt, cfg, extra)
    else:
        write_lam_report(out, final, code, norm, src, tgt, cfg, extra)
    distributed.barrier()  # every rank returns with the model and report written
    return out

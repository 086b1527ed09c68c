"""Recipe: a diffusion model of the target (the teacher), trained by denoising score matching."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import torch

from rdmd import distributed
from rdmd.backbones import backbone_spec
from rdmd.config import TeacherConfig
from rdmd.data import Normalizer, load_domain
from rdmd.data.folders import announce
from rdmd.edm import EDMLoss, LogNormalSigma
from rdmd.guidance import guide_step, sampling_meta, save_guide
from rdmd.methods import DSM
from rdmd.models import build_denoiser, save_model
from rdmd.training.checks import check_classifier
from rdmd.training.loop import run_loop
from rdmd.training.rundir import (
    Claim,
    as_layers,
    check_layers,
    claim_run,
    prepare_run,
    start_run,
)
from rdmd.training.runtime import augmented, data_batches, setup_dist


def _kind(data: dict[str, Any]) -> str:
    """The target's defaults profile: image, vector, or plane (2-D vectors)."""
    from rdmd.config import data_kind
    from rdmd.data.images import is_image_spec
    from rdmd.data.registry import vector_dim

    target = data["target"]
    if is_image_spec(target):
        return "image"
    return data_kind("vector", vector_dim(target) if target else None)


def train_teacher(target: str | None, out_dir: str | Path,
                  config: Any = None,
                  resume: bool = False, progress: bool = True) -> Path:
    """Train a diffusion model of ``target`` and write it (EMA weights) to ``out_dir``.

    ``config`` holds config keys (a dict, or layers applied in order: file, overrides).
    With ``resume=True`` the saved run continues; only ``steps`` may change. The folder is
    locked for the run (see :func:`rdmd.training.rundir.claim_run`).
    """
    out = Path(out_dir)
    layers = as_layers(config)
    check_layers(TeacherConfig, layers)  # a bad value is refused before any folder exists
    with claim_run(out, "teacher", resume, distributed.env_world().main) as claim:
        return _train_teacher(target, out, layers, resume, progress, claim)


def _train_teacher(target: str | None, out: Path, layers: list[dict[str, Any] | None],
                   resume: bool, progress: bool, claim: Claim) -> Path:
    run, cfg = prepare_run(out, "teacher", TeacherConfig, {"target": target}, layers, _kind,
                           resume)
    dom = load_domain(run["target"], cfg.n_train, cfg.n_test, cfg.seed, cfg.image_size,
                      cfg.image_channels, recursive=cfg.recursive)
    if "policy" in dom.info:  # a folder: its shape, resolved once, is stored with the run
        announce(dom, "target folder")
        cfg.image_size, cfg.image_channels = dom.info["size"], dom.info["channels"]
        run["config"].update(image_size=cfg.image_size, image_channels=cfg.image_channels)
    backbone = backbone_spec(cfg.backbone, dom.kind, dom.shape, encoder=cfg.encoder,
                             decoder=cfg.decoder, fourier=cfg.fourier)
    check_classifier(cfg.classifier, dom.shape, None)
    d, device = setup_dist(cfg.device, cfg.batch_size)
    distributed.barrier()  # every rank has checked the run folder before rank 0 creates it
    torch.manual_seed(cfg.seed)
    if dom.kind == "image":
        norm, sigma_data = Normalizer.identity(), 0.5
        data = dom.train.to(device)
    else:
        norm = Normalizer.fit(dom.train)
        data = norm.encode(dom.train).to(device)
        sigma_data = float(data.std())
    net = build_denoiser(backbone, sigma_data).to(device)
    backbone = {"name": backbone["name"], **net.backbone.config}
    method = DSM(net, EDMLoss(LogNormalSigma(cfg.p_mean, cfg.p_std)), cfg.lr, cfg.grad_clip,
                 guide_at=cfg.guide_at)
    rng = torch.Generator().manual_seed(cfg.seed)
    draws = augmented(data_batches(dom, norm, data, cfg, rng, d, device), cfg.augment, dom, rng)
    run_loop(out, method, draws, rng, cfg, dist=d,
                   device=device, signature={"job": "teacher", "backbone": backbone,
                                             "data_shape": list(dom.shape)},
                   ema_name="ema", ema_warmup=cfg.ema_warmup, resume=resume, progress=progress,
                   desc="teacher", on_start=lambda: start_run(out, run), stop=claim.stop)
    if d.main:
        guide = method.guide()
        if guide is not None:  # before model.json: a folder with model.json is complete
            save_guide(out, guide)
        elif cfg.guide_at:  # resumed past the guide step with other steps: none was kept
            print(f"rdmd: no guide was kept (guide_at {cfg.guide_at:g}: step "
                  f"{guide_step(cfg.guide_at, cfg.steps)} passed before this run resumed); "
                  "the teacher is saved unguided", file=sys.stderr)
        save_model(out, method.result(), {
            "role": "teacher", "backbone": backbone, "sigma_data": sigma_data,
            "normalizer": norm.to_dict(), "data_shape": list(dom.shape), "kind": dom.kind,
            "target": run["target"], "target_info": dom.info, "steps": cfg.steps,
            **sampling_meta(cfg, guide is not None)})
    distributed.barrier()  # the model is written before any rank reads it
    from rdmd.evaluation import evaluate_teacher

    # every rank samples its share; rank 0 writes the metrics and plots
    evaluate_teacher(out, dom, n_steps=cfg.sample_steps, classifier=cfg.classifier,
                     device=device)
    distributed.barrier()  # and every rank returns with the report written
    return out

"""``rdmd`` command line: train-teacher, distill, translate, evaluate, export, demo.

Every failure the user can cause ends as one line ``rdmd: error: ...`` and exit status 2; a
run stopped by SIGINT/SIGTERM ends as ``rdmd: interrupted: ...`` (its checkpoint and the
``--resume`` command) and exit status 130/143.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

from rdmd.errors import RdmdError, RunInterrupted
from rdmd.translators import METHODS, PRECISIONS

DATA_HELP = ("a .npy file (N x d floats), a folder of images, or a built-in name: gaussian, "
             "8gaussians, swissroll, moons (vectors; parameters after a colon, e.g. "
             "'gaussian:d=8;std=1.5' or 'gaussian:mean=[1,2];cov=[[2,0.5],[0.5,1]]'), "
             "cmnist2, cmnist3, cmnist:digit=K, fmnist-sneaker, fmnist-boot, fmnist:class=K, "
             "digits:class=K (images)")


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", required=True,
                   help="run directory to create (or resume); locked while the run lasts, so "
                        "a second run into it is refused")
    p.add_argument("--steps", type=int, help="training iterations (default 10000)")
    p.add_argument("--config", help="JSON or TOML file of config keys")
    p.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="override any config key (repeatable), e.g. --set batch_size=512")
    p.add_argument("--seed", type=int, help="seed of the run (default 0)")
    p.add_argument("--device", help="auto, cpu, cuda, cuda:1, ... (default auto)")
    p.add_argument("--resume", action="store_true",
                   help="continue the run in --out from its latest checkpoint (the step it "
                        "continues from is printed); SIGINT or SIGTERM stops a run with a "
                        "checkpoint to resume from")
    p.add_argument("--recursive", action="store_true",
                   help="image folders: also read the images in subfolders (config key "
                        "recursive)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="rdmd", description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train-teacher", help="train a diffusion model of the target data")
    t.add_argument("--target", help=DATA_HELP + " (not needed with --resume)")
    _common(t)

    d = sub.add_parser("distill", help="RDMD: distil the teacher into a one-step translator")
    d.add_argument("--source", help=DATA_HELP + " (not needed with --resume)")
    d.add_argument("--teacher", help="run directory of train-teacher (not needed with --resume)")
    d.add_argument("--lam", type=float,
                   help="transport-cost weight lambda (default 0.02; 0 = plain DMD)")
    d.add_argument("--lam-range", metavar="MIN:MAX",
                   help="train one lambda-conditioned generator for every lambda in "
                        "[MIN, MAX] (method rdmd_lam; MIN 0 includes plain DMD; "
                        "docs/lambda.md)")
    d.add_argument("--gan", choices=("teacher", "fake"),
                   help="add DMD2's GAN term (method rdmd_gan, or rdmd_lam_gan with "
                        "--lam-range) on the bottleneck features of the frozen teacher or of "
                        "the fake score (docs/gan.md)")
    d.add_argument("--target", help="held-out target data for the metrics, as for --source: "
                                    "a .npy file, a folder of images or a built-in name "
                                    "(default: the teacher's target)")
    d.add_argument("--cost", help="transport cost (default l2): l2 (squared), l1, "
                                  "lowpass:<factor> (squared L2 of average-pooled images), "
                                  "chroma (mean colour's chromaticity, RGB), "
                                  "feature:<classifier dir> (squared L2 of its features), "
                                  "or a weighted sum such as l2+10*chroma")
    d.add_argument("--sigma-g", type=float, help="generator noise level sigma_g (default 1)")
    d.add_argument("--init-from", metavar="RUN_OR_CHECKPOINT",
                   help="warm start: a new run starts from this distillation run's latest "
                        "checkpoint (or a checkpoints/step_N folder): its networks and "
                        "optimiser moments, with this run's rates and schedule from step 0 "
                        "(config key init_from)")
    _common(d)

    tr = sub.add_parser("translate", help="map source samples with a trained generator, or "
                                          "with a baseline on a teacher")
    tr.add_argument("--model", required=True,
                    help="run directory of distill (rdmd) or of train-teacher (baselines)")
    tr.add_argument("--method", default="rdmd", choices=METHODS,
                    help="rdmd: the one-step generator (default); sdedit, ilvr, egsde: "
                         "multi-step baselines on the teacher in --model")
    tr.add_argument("--sigma-start", type=float,
                    help="sdedit/egsde: noise level the source is perturbed to (default 2)")
    tr.add_argument("--n-steps", type=int, help="baselines: Heun steps (default 18, 35 NFE)")
    tr.add_argument("--down", type=int,
                    help="ilvr/egsde: low-pass down-sampling factor N (default 8)")
    tr.add_argument("--lam-s", type=float, help="egsde: realistic-expert weight (default 1)")
    tr.add_argument("--lam-i", type=float,
                    help="egsde: faithful-expert weight in [0, 1] (default 0.1)")
    tr.add_argument("--domain-classifier",
                    help="egsde: directory of train-domain-classifier")
    tr.add_argument("--guidance", type=float,
                    help="baselines: the autoguided teacher's weight (default: its own; 1: "
                         "the plain network, half the network calls)")
    tr.add_argument("--seed", type=int, default=0, help="baselines: noise seed")
    tr.add_argument("--lam", type=float,
                    help="rdmd: the lambda to translate at (required for a lambda-conditioned "
                         "generator, within its trained range)")
    tr.add_argument("--precision", choices=PRECISIONS,
                    help="the networks' precision (default: bf16 for images where the "
                         "hardware computes in bf16, i.e. CUDA or AVX512-BF16/AMX CPUs; "
                         "fp32 otherwise and for vectors)")
    tr.add_argument("--input", required=True,
                    help=".npy of source vectors (data units), or a folder of images")
    tr.add_argument("--output", required=True,
                    help=".npy to write, or a folder for one PNG per input image")
    tr.add_argument("--overwrite", action="store_true",
                    help="replace outputs that already exist (refused otherwise)")
    tr.add_argument("--keep-size", action="store_true",
                    help="images: write each output at its input's width and height")
    tr.add_argument("--recursive", action="store_true",
                    help="images: also translate the images in subfolders (same layout out)")
    tr.add_argument("--no-progress", action="store_true")

    e = sub.add_parser("evaluate", help="metrics of a generator on held-out data, or of "
                                        "given arrays")
    e.add_argument("--model", help="run directory of distill (uses its held-out splits)")
    e.add_argument("--input", help=".npy of source samples or a folder of images: with "
                                   "--model, translated and scored (every image of a folder); "
                                   "else with --translated and --target")
    e.add_argument("--translated", help=".npy of translated samples, row-aligned with "
                                        "--input, or a folder of translated images (paired "
                                        "with --input's images by name)")
    e.add_argument("--target", help="target data (.npy, folder or built-in) for the metrics")
    e.add_argument("--source", help="source data for --model (default: the model's)")
    e.add_argument("--classifier", help="images: feature classifier directory for the "
                                        "Frechet distance and KID (default: the model's)")
    e.add_argument("--target-class", type=int,
                   help="images: the classifier's label of the target (target accuracy)")
    e.add_argument("--recursive", action="store_true",
                   help="image folders: also read the images in subfolders")
    e.add_argument("--json", help="also write the metrics to this JSON file")
    e.add_argument("--lam", type=float,
                   help="with --model: the lambda to evaluate a lambda-conditioned generator at")

    dc = sub.add_parser("train-domain-classifier",
                        help="EGSDE's noise-conditioned source-vs-target classifier")
    dc.add_argument("--source", required=True, help="source images (built-in name or folder)")
    dc.add_argument("--target", required=True, help="target images (built-in name or folder)")
    dc.add_argument("--out", required=True, help="directory to write")
    dc.add_argument("--steps", type=int, default=3000)
    dc.add_argument("--batch-size", type=int, default=64)
    dc.add_argument("--lr", type=float, default=1e-3)
    dc.add_argument("--seed", type=int, default=0)
    dc.add_argument("--size", type=int,
                    help="image size for folders (default: from the target's images)")
    dc.add_argument("--channels", type=int,
                    help="image channels for folders (default: from the target's images)")
    dc.add_argument("--no-progress", action="store_true")

    c = sub.add_parser("train-classifier",
                       help="the feature classifier behind fd_<name> and target accuracy")
    c.add_argument("--data", help="cmnist, fmnist or digits (all classes)")
    c.add_argument("--folder", action="append",
                   help="instead of --data: a folder of images, one class per --folder "
                        "(repeat; e.g. the source, then the target: the shape is the last "
                        "folder's, as a teacher of it resolves)")
    c.add_argument("--size", type=int, help="--folder: image size (default: from the data)")
    c.add_argument("--channels", type=int, help="--folder: 1 or 3 (default: from the data)")
    c.add_argument("--recursive", action="store_true",
                   help="--folder: also read the images in subfolders")
    c.add_argument("--name", help="--folder: the metric is fd_cnn_<name> (default: the "
                                  "folder names)")
    c.add_argument("--out", required=True, help="directory to write")
    c.add_argument("--epochs", type=int, default=15)
    c.add_argument("--batch-size", type=int, default=128)
    c.add_argument("--lr", type=float, default=2e-3)
    c.add_argument("--seed", type=int, default=0)
    c.add_argument("--no-progress", action="store_true")

    sw = sub.add_parser("sweep", help="RDMD over a lambda grid and SDEdit/ILVR/EGSDE over "
                                      "theirs: one table, the trade-off plots (resumable)")
    sw.add_argument("--config", required=True,
                    help="TOML/JSON sweep file (see configs/cmnist_sweep.toml)")
    sw.add_argument("--out", required=True,
                    help="folder for entries, table.csv/json/md, summary.json, plots; "
                         "running again continues an interrupted sweep")
    sw.add_argument("--only", action="append", choices=METHODS,
                    help="run only these methods (repeatable); the table keeps all entries")
    sw.add_argument("--list", action="store_true",
                    help="print the configurations and which are done, run nothing")
    sw.add_argument("--no-progress", action="store_true")

    ex = sub.add_parser("export", help="write a distilled image generator as a diffusers "
                                       "folder (unet/ + RDMDPipeline, safetensors)")
    ex.add_argument("--model", required=True, help="run directory of distill")
    ex.add_argument("--out", required=True, help="folder to create (must not hold files)")

    ag = sub.add_parser("attach-guide", help="a copy of a teacher guided by a shorter-trained "
                                             "teacher of the same network (autoguidance)")
    ag.add_argument("--teacher", required=True, help="run directory of train-teacher")
    ag.add_argument("--guide", required=True,
                    help="another train-teacher run: same target, same network, trained less")
    ag.add_argument("--guidance", type=float, required=True,
                    help="weight w of guide + w (teacher - guide); 1: the plain teacher")
    ag.add_argument("--sigma-max", type=float, default=math.inf,
                    help="guide only at noise levels up to this (default: all)")
    ag.add_argument("--out", required=True, help="folder to create (must not hold files)")

    m = sub.add_parser("demo", help="teacher + RDMD on Gaussian -> 8 Gaussians, with a report")
    m.add_argument("--out", default="rdmd-demo", help="folder for the demo (default rdmd-demo)")
    m.add_argument("--quick", action="store_true", help="a much shorter run (about a minute)")
    m.add_argument("--no-progress", action="store_true")

    sv = sub.add_parser("serve", help="a local web page: translate images, turn lambda, "
                                      "compare the baselines (needs pip install -e '.[ui]')")
    sv.add_argument("--model", action="extend", nargs="+", metavar="DIR",
                    help="distilled run(s), or folder(s) of runs (default: the shipped models)")
    sv.add_argument("--host", default="127.0.0.1",
                    help="address to bind (default 127.0.0.1: this machine only)")
    sv.add_argument("--port", type=int, default=7860)
    sv.add_argument("--precision", choices=PRECISIONS,
                    help="the networks' precision, as in translate (default: bf16 for images "
                         "on bf16 hardware, else fp32)")
    return ap


def _config_layers(args: argparse.Namespace, extra: dict[str, Any]) -> list[dict[str, Any]]:
    """File, then ``--set``, then the dedicated flags. On ``--resume`` the same layers are
    compared with the saved run (a flag given with another value is refused; see
    :func:`rdmd.config.apply_resume_changes`)."""
    from rdmd.config import parse_overrides, read_config_file

    file_layer = read_config_file(args.config) if args.config else {}
    cli = {"steps": args.steps, "seed": args.seed, "device": args.device,
           "recursive": True if args.recursive else None, **extra}
    return [file_layer, parse_overrides(args.set), cli]


def _require(args: argparse.Namespace, *names: str) -> None:
    """Data arguments are required for a new run; a resumed run has them saved."""
    missing = [f"--{n}" for n in names if not args.resume and getattr(args, n) is None]
    if missing:
        raise RdmdError(f"{', '.join(missing)} required (unless --resume)")


def _cmd_train_teacher(args: argparse.Namespace) -> None:
    from rdmd.training import train_teacher

    _require(args, "target")
    out = train_teacher(args.target, args.out, _config_layers(args, {}), resume=args.resume,
                        progress=not args.no_progress)
    _print_metrics(out / "metrics.json", f"teacher written to {out}")


def _cmd_distill(args: argparse.Namespace) -> None:
    from rdmd.training import distill

    _require(args, "source", "teacher")
    if args.lam is not None and args.lam_range is not None:
        raise RdmdError("give --lam (a fixed generator) or --lam-range (a conditioned one), "
                        "not both")
    extra = {"lam": args.lam, "lam_range": args.lam_range, "cost": args.cost,
             "sigma_g": args.sigma_g, "gan_features": args.gan,
             "method": "rdmd_gan" if args.gan else None, "init_from": args.init_from}
    out = distill(args.source, args.teacher, args.out, _config_layers(args, extra),
                  target=args.target, resume=args.resume, progress=not args.no_progress)
    _print_metrics(out / "metrics.json", f"generator written to {out}")


def _print_metrics(path: Path, head: str) -> None:
    from rdmd.distributed import is_main

    if not is_main():  # under torchrun, rank 0 reports
        return
    print(head)
    if path.is_file():
        _print_dict(json.loads(path.read_text()), "  ")


def _print_dict(res: dict[str, Any], indent: str) -> None:
    """Metrics one per line; a nested table (a conditioned run's ``by_lam``) indented."""
    for k, v in res.items():
        if isinstance(v, dict):
            print(f"{indent}{k}:")
            _print_dict(v, indent + "  ")
        else:
            print(f"{indent}{k:>16}: {v:.6g}" if isinstance(v, float) else f"{indent}{k:>16}: {v}")


def _cmd_translate(args: argparse.Namespace) -> None:
    import numpy as np

    from rdmd.api import translate, translate_folder
    from rdmd.checkpoint import atomic_save_npy
    from rdmd.data.vectors import read_npy

    inp, outp = Path(args.input), Path(args.output)
    params = _method_params(args)
    if not inp.exists():
        raise RdmdError(f"--input not found: {inp}")
    if inp.is_dir():
        written = translate_folder(args.model, inp, outp, progress=not args.no_progress,
                                   method=args.method, seed=args.seed,
                                   overwrite=args.overwrite, keep_size=args.keep_size,
                                   recursive=args.recursive, **params)
        print(f"translated {len(written)} images -> {outp}")
        return
    if outp.resolve() == inp.resolve():
        raise RdmdError("--output must differ from --input (the input would be overwritten)")
    if outp.suffix != ".npy":
        raise RdmdError(f"--output must end in .npy, got {outp}")
    if outp.exists() and not args.overwrite:
        raise RdmdError(f"--output {outp} already exists; pass --overwrite to replace it")
    y = translate(args.model, read_npy(inp), method=args.method, seed=args.seed, **params)
    atomic_save_npy(outp, np.asarray(y))
    print(f"translated {len(y)} samples -> {outp}")


def _method_params(args: argparse.Namespace) -> dict[str, Any]:
    """The baseline flags that were given; each must belong to ``--method``."""
    from rdmd.translators import PARAMS

    given = {k: getattr(args, k) for k in ("sigma_start", "n_steps", "down", "lam_s", "lam_i",
                                           "domain_classifier", "lam", "precision", "guidance")
             if getattr(args, k) is not None}
    wrong = [k for k in given if k not in PARAMS[args.method]]
    if wrong:
        flags = ", ".join("--" + k.replace("_", "-") for k in wrong)
        raise RdmdError(f"{flags} do(es) not apply to --method {args.method}")
    return given


def _cmd_evaluate(args: argparse.Namespace) -> None:
    import numpy as np

    from rdmd import metrics
    from rdmd.checkpoint import atomic_write_json

    if args.model:
        from rdmd.config import DistillConfig
        from rdmd.data import load_domain
        from rdmd.evaluation import evaluate_translation
        from rdmd.models import load_model
        from rdmd.training.rundir import CONFIG_FILE, load_run_config

        model = load_model(args.model)
        if model.role != "generator":
            raise RdmdError(f"{args.model} holds a {model.role}; evaluate --model needs a "
                            "distilled generator")
        cfg = DistillConfig()
        if (Path(args.model) / CONFIG_FILE).is_file():
            cfg = load_run_config(DistillConfig, args.model)
        shp = model.meta["data_shape"]
        size, channels = (shp[-1], shp[0]) if len(shp) == 3 else (None, None)
        rec = cfg.recursive or args.recursive
        cfg.classifier = args.classifier or cfg.classifier
        cfg.target_class = cfg.target_class if args.target_class is None else args.target_class
        tgt = load_domain(args.target or model.meta["target"], cfg.n_test, cfg.n_test,
                          cfg.seed, size, channels, recursive=rec, purpose="the model")
        from rdmd.data.folders import announce

        announce(tgt, "target folder")
        if args.input:
            from rdmd.evaluation import evaluate_model_input

            res = evaluate_model_input(model, args.input, tgt, cfg, rec, lam=args.lam)
        else:
            src = load_domain(args.source or model.meta["source"], cfg.n_train, cfg.n_test,
                              cfg.seed, size, channels, recursive=rec, purpose="the model")
            announce(src, "source folder")
            from rdmd.translators import OneStep

            net = OneStep(model, args.lam).net  # a conditioned model held at --lam
            res = evaluate_translation(net, model.normalizer, src, tgt, cfg)
        if model.lam_range is not None:
            res = {"lam": float(args.lam), "lam_range": list(model.lam_range), **res}
    elif args.input and Path(args.input).is_dir():
        from rdmd.evaluation import evaluate_folders

        if not (args.translated and args.target):
            raise RdmdError("evaluate --input FOLDER needs --model, or --translated FOLDER "
                            "and --target")
        res = evaluate_folders(args.input, args.translated, args.target, args.classifier,
                               args.target_class, args.recursive)
    else:
        if args.lam is not None:
            raise RdmdError("--lam applies to evaluate --model")
        if not (args.input and args.translated and args.target):
            raise RdmdError("evaluate needs --model DIR, or --input, --translated and --target")
        from rdmd.data import load_domain
        from rdmd.data.vectors import read_npy

        x, gx = read_npy(args.input), read_npy(args.translated)
        if x.shape != gx.shape:
            raise RdmdError(f"--input {x.shape} and --translated {gx.shape} differ in shape")
        tgt = load_domain(args.target)
        y = tgt.test.numpy() if tgt.sampler is not None else \
            np.concatenate([tgt.train.numpy(), tgt.test.numpy()])
        if y.shape[1] != x.shape[1]:
            raise RdmdError(f"target has dimension {y.shape[1]}, input has {x.shape[1]}")
        res = metrics.vector_metrics(x, gx, y)
        # a built-in target's known density or curve, beside true samples' values
        res.update(metrics.known_measures_with_truth(gx, tgt.info, tgt.sampler))
    for k, v in res.items():
        print(f"{k:>16}: {v:.6g}" if isinstance(v, float) else f"{k:>16}: {v}")
    if args.json:
        atomic_write_json(Path(args.json), res)


def _cmd_train_classifier(args: argparse.Namespace) -> None:
    from rdmd.classifier import save_classifier, train_classifier
    from rdmd.data.images import labelled_image_set

    out = Path(args.out)
    if (out / "classifier.json").exists():
        raise RdmdError(f"{out} already holds a classifier; choose another --out")
    if (args.data is None) == (args.folder is None):
        raise RdmdError("train-classifier needs --data NAME or --folder DIR (repeated), "
                        "not both")
    if args.folder:
        from rdmd.classifier import folders_meta
        from rdmd.data.images import labelled_folders

        tx, ty, vx, vy, doms = labelled_folders(args.folder, args.size, args.channels,
                                                args.recursive)
        meta = folders_meta(args.folder, doms, args.name)
    else:
        tx, ty, vx, vy = labelled_image_set(args.data, args.seed)
        meta = {"name": f"cnn_{args.data}", "data": args.data}
    model, stats = train_classifier(tx, ty, vx, vy, args.epochs, args.batch_size, args.lr,
                                    args.seed, augment_hue=args.data == "cmnist",
                                    progress=not args.no_progress)
    save_classifier(model, out, {**meta, "epochs": args.epochs, "seed": args.seed, **stats})
    print(f"classifier written to {out}: test accuracy {stats['test_accuracy']:.4f}")


def _cmd_train_domain_classifier(args: argparse.Namespace) -> None:
    from rdmd.baselines.domain_classifier import fit_and_save
    from rdmd.data import load_domain

    out = Path(args.out)
    if (out / "domain_classifier.json").exists():
        raise RdmdError(f"{out} already holds a domain classifier; choose another --out")
    # folders: the target's shape (from its images, as a teacher of it resolves, unless
    # --size/--channels), the source brought to it by the same policy (rdmd.data.folders)
    tgt = load_domain(args.target, size=args.size, channels=args.channels)
    size, channels = (tgt.shape[-1], tgt.shape[0]) if tgt.kind == "image" else (None, None)
    src = load_domain(args.source, size=size, channels=channels, purpose="the target")
    if src.kind != "image" or tgt.kind != "image":
        raise RdmdError("train-domain-classifier needs two image sets")
    if src.shape != tgt.shape:
        raise RdmdError(f"source images are {src.shape}, target images {tgt.shape}")
    acc = fit_and_save(src, tgt, out, args.steps, args.batch_size, args.lr, args.seed,
                       progress=not args.no_progress)
    print(f"domain classifier written to {out}")
    for k, v in acc.items():
        print(f"  {k}: {v:.3f}")


def _cmd_sweep(args: argparse.Namespace) -> None:
    from rdmd.sweep import load_sweep_config, plan, run_sweep

    if args.list:
        for e in plan(load_sweep_config(args.config)):
            done = (Path(args.out) / "entries" / f"{e.key}.json").is_file()
            print(f"{'done' if done else 'todo'}  {e.key}")
        return
    summary = run_sweep(args.config, args.out, only=args.only, progress=not args.no_progress)
    print(f"sweep written to {args.out}: table.csv, table.md, summary.json, fig4_tradeoff.png"
          + (", fig5_grid.png" if "fig5" in summary else ""))
    for k, v in summary.items():
        if k.startswith("rdmd_below_"):
            spans = ", ".join(f"[{a:.3g}, {b:.3g}]" for a, b in v) or "nowhere"
            print(f"  L2 where RDMD's front is below {k[len('rdmd_below_'):]}: {spans}")


def _cmd_export(args: argparse.Namespace) -> None:
    from rdmd.interop.pipeline import export_model

    out = export_model(args.model, args.out)
    print(f"exported to {out}: load with rdmd.RDMDPipeline.from_pretrained({str(out)!r})")


def _cmd_attach_guide(args: argparse.Namespace) -> None:
    from rdmd.guidance import attach_guide

    out = attach_guide(args.teacher, args.guide, args.out, args.guidance, args.sigma_max)
    print(f"guided teacher written to {out} (guidance {args.guidance:g}); distil it with "
          f"--teacher {out} --set teacher_guidance={args.guidance:g}")


def _cmd_demo(args: argparse.Namespace) -> None:
    from rdmd.demo import run_demo

    report = run_demo(Path(args.out), quick=args.quick, progress=not args.no_progress)
    print(f"demo report: {report}")


def _cmd_serve(args: argparse.Namespace) -> None:
    from rdmd.serve.app import launch

    launch(args.model, args.host, args.port, precision=args.precision)


COMMANDS = {"train-teacher": _cmd_train_teacher, "distill": _cmd_distill,
            "train-classifier": _cmd_train_classifier,
            "train-domain-classifier": _cmd_train_domain_classifier,
            "translate": _cmd_translate, "evaluate": _cmd_evaluate, "sweep": _cmd_sweep,
            "export": _cmd_export, "attach-guide": _cmd_attach_guide, "demo": _cmd_demo,
            "serve": _cmd_serve}


def main(argv: list[str] | None = None) -> int:
    from rdmd import distributed

    args = build_parser().parse_args(argv)
    d = distributed.env_world()
    where = f"[rank {d.rank}] " if d.active else ""
    try:
        COMMANDS[args.command](args)
    except RdmdError as e:
        # one write per line: under torchrun the ranks share stderr
        sys.stderr.write(f"rdmd: error: {where}{e}\n")
        sys.stderr.flush()
        return 2
    except RunInterrupted as e:  # the run wrote a checkpoint and says how to continue
        if d.main:
            sys.stderr.write(f"rdmd: interrupted: {e}\n")
            sys.stderr.flush()
        return 128 + e.signum
    except KeyboardInterrupt:
        print("rdmd: interrupted; resume with --resume from the same --out", file=sys.stderr)
        return 130
    finally:
        distributed.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())

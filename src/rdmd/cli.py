"""``rdmd`` command line: train-teacher, distill, translate, evaluate, demo.

Every failure the user can cause ends as one line ``rdmd: error: ...`` and exit status 2.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from rdmd.errors import RdmdError

DATA_HELP = ("a .npy file (N x d floats) or a built-in name: gaussian, 8gaussians, swissroll, "
             "moons; parameters after a colon, e.g. 'gaussian:d=8;std=1.5' or "
             "'gaussian:mean=[1,2];cov=[[2,0.5],[0.5,1]]'")


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", required=True, help="run directory to create (or resume)")
    p.add_argument("--steps", type=int, help="training iterations")
    p.add_argument("--config", help="JSON or TOML file of config keys")
    p.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="override any config key (repeatable), e.g. --set batch_size=512")
    p.add_argument("--seed", type=int)
    p.add_argument("--device", help="auto (default), cpu, cuda, cuda:1, ...")
    p.add_argument("--resume", action="store_true",
                   help="continue the run in --out from its latest checkpoint")
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
    d.add_argument("--lam", type=float, help="transport-cost weight lambda (0 = plain DMD)")
    d.add_argument("--target", help="held-out target data for metrics (default: teacher's)")
    d.add_argument("--cost", help="transport cost: l2 (squared, default) or l1")
    d.add_argument("--sigma-g", type=float, help="generator noise level sigma_g (default 1)")
    _common(d)

    tr = sub.add_parser("translate", help="map source samples with a trained generator")
    tr.add_argument("--model", required=True, help="run directory of distill")
    tr.add_argument("--input", required=True,
                    help=".npy of source vectors (data units), or a folder of images")
    tr.add_argument("--output", required=True,
                    help=".npy to write, or a folder for one PNG per input image")
    tr.add_argument("--no-progress", action="store_true")

    e = sub.add_parser("evaluate", help="metrics of a generator on held-out data, or of "
                                        "given arrays")
    e.add_argument("--model", help="run directory of distill (uses its held-out splits)")
    e.add_argument("--input", help=".npy of source samples (with --translated, --target)")
    e.add_argument("--translated", help=".npy of translated samples, row-aligned with --input")
    e.add_argument("--target", help="target data (.npy or built-in) for the metrics")
    e.add_argument("--source", help="source data for --model (default: the model's)")
    e.add_argument("--json", help="also write the metrics to this JSON file")

    c = sub.add_parser("train-classifier",
                       help="the feature classifier behind fd_<name> and target accuracy")
    c.add_argument("--data", required=True, help="cmnist, fmnist or digits (all classes)")
    c.add_argument("--out", required=True, help="directory to write")
    c.add_argument("--epochs", type=int, default=15)
    c.add_argument("--batch-size", type=int, default=128)
    c.add_argument("--lr", type=float, default=2e-3)
    c.add_argument("--seed", type=int, default=0)
    c.add_argument("--no-progress", action="store_true")

    m = sub.add_parser("demo", help="teacher + RDMD on Gaussian -> 8 Gaussians, with a report")
    m.add_argument("--out", default="rdmd-demo", help="folder for the demo (default rdmd-demo)")
    m.add_argument("--quick", action="store_true", help="a much shorter run (about a minute)")
    m.add_argument("--no-progress", action="store_true")
    return ap


def _config_layers(args: argparse.Namespace, extra: dict[str, Any]) -> list[dict[str, Any]]:
    from rdmd.config import parse_overrides, read_config_file

    if args.resume:
        given = [k for k, v in {"--config": args.config, "--set": args.set, "--seed": args.seed,
                                "--device": args.device, **extra}.items() if v]
        if given:
            raise RdmdError(f"--resume continues the saved run with its saved settings; only "
                            f"--steps may change (got {', '.join(given)})")
        return [{"steps": args.steps}]
    file_layer = read_config_file(args.config) if args.config else {}
    cli = {"steps": args.steps, "seed": args.seed, "device": args.device, **extra}
    return [file_layer, parse_overrides(args.set), cli]


def _require(args: argparse.Namespace, *names: str) -> None:
    """Data arguments are required for a new run; a resumed run has them saved."""
    missing = [f"--{n}" for n in names if not args.resume and getattr(args, n) is None]
    if missing:
        raise RdmdError(f"{', '.join(missing)} required (unless --resume)")


def _cmd_train_teacher(args: argparse.Namespace) -> None:
    from rdmd.config import TeacherConfig, build_config
    from rdmd.training import train_teacher

    _require(args, "target")
    layers = _config_layers(args, {})
    cfg = build_config(TeacherConfig, *layers) if layers[-1].get("steps") or not args.resume \
        else None
    out = train_teacher(args.target or "", args.out, cfg, resume=args.resume,
                        progress=not args.no_progress)
    _print_metrics(out / "metrics.json", f"teacher written to {out}")


def _cmd_distill(args: argparse.Namespace) -> None:
    from rdmd.config import DistillConfig, build_config
    from rdmd.training import distill

    _require(args, "source", "teacher")
    extra = {"lam": args.lam, "cost": args.cost, "sigma_g": args.sigma_g}
    layers = _config_layers(args, extra)
    cfg = build_config(DistillConfig, *layers) if layers[-1].get("steps") or not args.resume \
        else None
    out = distill(args.source or "", args.teacher or "", args.out, cfg, target=args.target,
                  resume=args.resume, progress=not args.no_progress)
    _print_metrics(out / "metrics.json", f"generator written to {out}")


def _print_metrics(path: Path, head: str) -> None:
    from rdmd.distributed import is_main

    if not is_main():  # under torchrun, rank 0 reports
        return
    print(head)
    if path.is_file():
        for k, v in json.loads(path.read_text()).items():
            print(f"  {k:>16}: {v:.6g}" if isinstance(v, float) else f"  {k:>16}: {v}")


def _cmd_translate(args: argparse.Namespace) -> None:
    import numpy as np

    from rdmd.api import translate, translate_folder
    from rdmd.checkpoint import atomic_save_npy
    from rdmd.data.vectors import read_npy

    inp, outp = Path(args.input), Path(args.output)
    if inp.is_dir():
        written = translate_folder(args.model, inp, outp, progress=not args.no_progress)
        print(f"translated {len(written)} images -> {outp}")
        return
    if outp.resolve() == inp.resolve():
        raise RdmdError("--output must differ from --input (the input would be overwritten)")
    if outp.suffix != ".npy":
        raise RdmdError(f"--output must end in .npy, got {outp}")
    y = translate(args.model, read_npy(inp))
    atomic_save_npy(outp, np.asarray(y))
    print(f"translated {len(y)} samples -> {outp}")


def _cmd_evaluate(args: argparse.Namespace) -> None:
    import numpy as np

    from rdmd import metrics
    from rdmd.checkpoint import atomic_write_json

    if args.model:
        from rdmd.config import DistillConfig
        from rdmd.data import load_domain
        from rdmd.evaluation import evaluate_translation
        from rdmd.models import load_model
        from rdmd.training import CONFIG_FILE

        model = load_model(args.model)
        if model.role != "generator":
            raise RdmdError(f"{args.model} holds a {model.role}; evaluate --model needs a "
                            "distilled generator")
        cfg = DistillConfig()
        cfg_path = Path(args.model) / CONFIG_FILE
        if cfg_path.is_file():
            cfg = DistillConfig(**json.loads(cfg_path.read_text())["config"])
        shp = model.meta["data_shape"]
        size, channels = (shp[-1], shp[0]) if len(shp) == 3 else (32, 3)
        src = load_domain(args.source or model.meta["source"], cfg.n_train, cfg.n_test,
                          cfg.seed, size, channels)
        tgt = load_domain(args.target or model.meta["target"], cfg.n_test, cfg.n_test,
                          cfg.seed, size, channels)
        res = evaluate_translation(model.net, model.normalizer, src, tgt, cfg)
    else:
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
    tx, ty, vx, vy = labelled_image_set(args.data, args.seed)
    model, stats = train_classifier(tx, ty, vx, vy, args.epochs, args.batch_size, args.lr,
                                    args.seed, augment_hue=args.data == "cmnist",
                                    progress=not args.no_progress)
    save_classifier(model, out, {"name": f"cnn_{args.data}", "data": args.data,
                                 "epochs": args.epochs, "seed": args.seed, **stats})
    print(f"classifier written to {out}: test accuracy {stats['test_accuracy']:.4f}")


def _cmd_demo(args: argparse.Namespace) -> None:
    from rdmd.demo import run_demo

    report = run_demo(Path(args.out), quick=args.quick, progress=not args.no_progress)
    print(f"demo report: {report}")


COMMANDS = {"train-teacher": _cmd_train_teacher, "distill": _cmd_distill,
            "train-classifier": _cmd_train_classifier,
            "translate": _cmd_translate, "evaluate": _cmd_evaluate, "demo": _cmd_demo}


def main(argv: list[str] | None = None) -> int:
    from rdmd import distributed

    args = build_parser().parse_args(argv)
    d = distributed.env_world()
    where = f"[rank {d.rank}] " if d.active else ""
    try:
        COMMANDS[args.command](args)
    except RdmdError as e:
        print(f"rdmd: error: {where}{e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("rdmd: interrupted; resume with --resume from the same --out", file=sys.stderr)
        return 130
    finally:
        distributed.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())

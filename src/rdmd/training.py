"""Training runs: the teacher (DSM on the target) and RDMD distillation, with run directories,
progress bars, CSV logs, atomic checkpoints and exact resume.

Everything random in a run (batch indices, noise levels, noise) comes from one CPU
``torch.Generator`` whose state is checkpointed, so ``--resume`` continues bit-for-bit on CPU.
"""

from __future__ import annotations

import csv
import io
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from rdmd import checkpoint as ckpt
from rdmd.config import DistillConfig, TeacherConfig, fill_kind_defaults, to_dict
from rdmd.costs import get_cost
from rdmd.data import Normalizer, load_domain
from rdmd.edm import EDMLoss, LogNormalSigma, LogUniformSigma
from rdmd.ema import EMA, warmup_decay
from rdmd.errors import RdmdError
from rdmd.method import RDMD, NonFiniteLossError
from rdmd.models import build_denoiser, load_model, save_model

CONFIG_FILE = "config.json"
LOG_FILE = "log.csv"
METRICS_FILE = "metrics.json"


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise RdmdError(f"device {name!r} requested but CUDA is not available")
    return torch.device(name)


class CsvLog:
    """Append-only CSV of the losses (and metrics, when evaluated).

    On resume, rows after the checkpoint's step are dropped so the log reads as if the run
    had never been interrupted. A column that first appears later (an evaluation metric)
    rewrites the file with the wider header; earlier rows leave it empty.
    """

    def __init__(self, path: Path, resume_step: int) -> None:
        self.path = path
        self.fields: list[str] = []
        self.rows: list[dict[str, str]] = []
        if path.is_file():
            with open(path, newline="") as f:
                reader = csv.DictReader(f)
                self.fields = list(reader.fieldnames or [])
                self.rows = [r for r in reader if int(r["step"]) <= resume_step]
            self._rewrite()

    def _rewrite(self) -> None:
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=self.fields, restval="", lineterminator="\n")
        w.writeheader()
        w.writerows(self.rows)
        ckpt.atomic_write_text(self.path, buf.getvalue())

    def write(self, row: dict[str, Any]) -> None:
        row = {k: str(v) for k, v in row.items()}
        self.rows.append(row)
        new = [k for k in row if k not in self.fields]
        if new or not self.path.is_file():
            self.fields += new
            self._rewrite()
            return
        with open(self.path, "a", newline="") as f:
            csv.DictWriter(f, fieldnames=self.fields, restval="",
                           lineterminator="\n").writerow(row)


@dataclass
class RunState:
    """What a checkpoint must hold to continue exactly."""

    modules: dict[str, nn.Module]
    optimizers: dict[str, torch.optim.Optimizer]
    rng: torch.Generator

    def to_checkpoint(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        tensors: dict[str, torch.Tensor] = {}
        meta: dict[str, Any] = {"optimizers": {}}
        for name, m in self.modules.items():
            for k, v in m.state_dict().items():
                tensors[f"module.{name}.{k}"] = v
        for name, opt in self.optimizers.items():
            t, m = ckpt.optimizer_to_flat(opt, f"opt.{name}")
            tensors.update(t)
            meta["optimizers"][name] = m
        tensors["rng.run"] = self.rng.get_state()
        tensors["rng.torch"] = torch.get_rng_state()
        return tensors, meta

    def from_checkpoint(self, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
        for name, m in self.modules.items():
            head = f"module.{name}."
            sd = {k[len(head):]: v for k, v in tensors.items() if k.startswith(head)}
            try:
                m.load_state_dict(sd)
            except RuntimeError as e:
                first = str(e).strip().splitlines()[0]
                raise RdmdError(f"checkpoint does not fit module {name!r}: {first}") from None
        for name, opt in self.optimizers.items():
            ckpt.optimizer_from_flat(opt, f"opt.{name}", tensors, meta["optimizers"][name])
        self.rng.set_state(tensors["rng.run"])
        torch.set_rng_state(tensors["rng.torch"])


def resolve_run(out_dir: Path, resume: bool, fresh: dict[str, Any],
                steps: int | None) -> dict[str, Any]:
    """The run's description, without writing anything yet.

    Fresh runs refuse a folder that already holds a run. Resumed runs reuse the saved
    description (data, config); only ``steps`` may change, to extend a run.
    """
    cfg_path = out_dir / CONFIG_FILE
    if resume:
        if not cfg_path.is_file():
            raise RdmdError(f"--resume: {out_dir} holds no run ({CONFIG_FILE} missing)")
        saved = ckpt.read_json(cfg_path)
        if steps is not None:
            saved["config"]["steps"] = steps
        return saved
    if cfg_path.exists() or (out_dir / "checkpoints").exists():
        raise RdmdError(f"{out_dir} already holds a run; pass --resume to continue it "
                        "or choose another --out")
    return fresh


def start_run(out_dir: Path, run: dict[str, Any]) -> None:
    """Create the run folder once every input has been checked."""
    out_dir.mkdir(parents=True, exist_ok=True)
    ckpt.atomic_write_json(out_dir / CONFIG_FILE, run)


def autocast(device: torch.device, precision: str) -> Any:
    """bf16 autocast of forward passes (about 2x faster image steps on CPU, SPEC §5)."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16")


def backbone_spec(name: str, dom: Any, encoder: list[int] | None) -> dict[str, Any]:
    """The backbone's JSON description; ``auto`` picks the MLP for vectors and a UNet preset
    by image size (``tiny8`` up to 16 px, ``small32`` above)."""
    if name == "auto":
        name = "mlp" if dom.kind == "vector" else (
            "unet:tiny8" if dom.shape[-1] < 16 else "unet:small32")
    if name == "mlp":
        if dom.kind != "vector":
            raise RdmdError("the mlp backbone is for vector data; use unet:<preset> for images")
        return {"name": "mlp", "dim": dom.dim, "encoder": encoder}
    if name.startswith("unet"):
        if dom.kind != "image":
            raise RdmdError("unet backbones are for images; use mlp for vector data")
        preset = name.partition(":")[2] or "small32"
        return {"name": "unet", "channels": dom.shape[0], "size": dom.shape[-1],
                "preset": preset}
    raise RdmdError(f"unknown backbone {name!r}; use auto, mlp or unet:<preset>")


def _probe_cost(cost: Any, name: str, src: Any) -> None:
    """Evaluate the cost on two source samples, so a cost that cannot apply to this data
    (a low-pass factor larger than the image, a feature net of other channels) fails before
    the run folder exists rather than at step 1."""
    x = src.train[:2]
    try:
        with torch.no_grad():
            cost(x, x)
    except (RuntimeError, ValueError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise RdmdError(f"cost {name!r} cannot be applied to samples of shape "
                        f"{_fmt_shape(tuple(x.shape[1:]))}: {first}") from None


def check_classifier(path: str | None, shape: tuple[int, ...], target_class: int | None
                     ) -> None:
    """The evaluation classifier must load and fit the data; checked before training, since
    it is only used once training has ended."""
    if path is None:
        if target_class is not None:
            raise RdmdError("target_class needs a classifier (--set classifier=DIR)")
        return
    if len(shape) != 3:
        raise RdmdError("a classifier evaluates images; this data is vectors")
    from rdmd.classifier import load_classifier

    net, meta = load_classifier(path)
    if net.in_channels != shape[0] or net.size != shape[-1]:
        raise RdmdError(f"classifier {path} takes {net.in_channels}x{net.size}x{net.size} "
                        f"images, the data are {_fmt_shape(shape)}")
    if target_class is not None and not 0 <= target_class < net.n_classes:
        raise RdmdError(f"target_class {target_class} is not a class of {path} "
                        f"(0..{net.n_classes - 1})")


def _abs_if_path(spec: str | None) -> str | None:
    """Files and folders are stored absolute, so a run resumes from any working directory;
    built-in names stay as they are."""
    if spec is None:
        return None
    try:
        p = Path(spec)
        return str(p.resolve()) if p.exists() else spec
    except OSError:
        return spec


def _fmt_shape(shape: tuple[int, ...]) -> str:
    return "x".join(str(s) for s in shape)


def adam(params: Any, lr: float, betas: tuple[float, float] = (0.9, 0.999)
         ) -> torch.optim.Adam:
    """Adam with the fused kernel: 4x cheaper steps than the default on CPU, which matters
    for small networks where the optimizer is a tenth of an iteration."""
    return torch.optim.Adam(params, lr=lr, betas=betas, fused=True)


def _lr_factor(step: int, total: int, warmup: int, schedule: str) -> float:
    if warmup and step < warmup:
        return (step + 1) / warmup
    if schedule == "cosine":
        return 0.5 * (1 + math.cos(math.pi * min(step, total) / max(total, 1)))
    return 1.0


def run_loop(out_dir: Path, state: RunState, total_steps: int, step_fn: Callable[[int], dict],
             log_every: int, ckpt_every: int, keep: int, resume: bool,
             progress: bool, desc: str,
             eval_fn: Callable[[int], dict] | None = None, eval_every: int = 0) -> int:
    """The loop both runs share: resume, step, log, checkpoint; returns the last step."""
    root = out_dir / "checkpoints"
    start = 0
    if resume:
        last = ckpt.latest_checkpoint(root)
        if last is not None:
            tensors, meta = ckpt.load_checkpoint(last)
            state.from_checkpoint(tensors, meta)
            start = int(meta["step"])
    log = CsvLog(out_dir / LOG_FILE, start)
    bar = tqdm(total=total_steps, initial=start, desc=desc, disable=not progress,
               dynamic_ncols=True, mininterval=1.0)
    t0 = time.perf_counter()
    for step in range(start, total_steps):
        try:
            stats = step_fn(step)
        except NonFiniteLossError as e:
            bar.close()
            raise RdmdError(f"non-finite loss at step {step + 1}: {e}; the last good "
                            f"checkpoint is in {root}") from None
        done = step + 1
        if done % log_every == 0 or done == total_steps:
            row = {"step": done, **{k: f"{v:.6g}" for k, v in stats.items()},
                   "time_s": f"{time.perf_counter() - t0:.2f}"}
            if eval_fn and eval_every and done % eval_every == 0:
                row.update({k: f"{v:.6g}" for k, v in eval_fn(done).items()})
            log.write(row)
            bar.set_postfix({k: f"{v:.4g}" for k, v in stats.items()}, refresh=False)
        if done % ckpt_every == 0 or done == total_steps:
            tensors, meta = state.to_checkpoint()
            ckpt.save_checkpoint(root, done, tensors, meta, keep)
        bar.update(1)
    bar.close()
    return max(start, total_steps)


def _batches(data: torch.Tensor, batch: int, rng: torch.Generator) -> Iterator[torch.Tensor]:
    while True:
        idx = torch.randint(0, data.shape[0], (batch,), generator=rng)
        yield data[idx.to(data.device)]


# -- teacher ----------------------------------------------------------------------------------

def train_teacher(target: str, out_dir: str | Path, cfg: TeacherConfig | None = None,
                  resume: bool = False, progress: bool = True) -> Path:
    """Train a diffusion model of ``target`` and write it (EMA weights) to ``out_dir``.

    With ``resume=True`` the saved run continues; of ``cfg`` only ``steps`` is used.
    """
    out = Path(out_dir)
    run = resolve_run(out, resume, {"job": "teacher", "target": _abs_if_path(target),
                                    "config": to_dict(cfg or TeacherConfig())},
                      cfg.steps if cfg is not None else None)
    cfg = TeacherConfig(**run["config"])
    dom = load_domain(run["target"], cfg.n_train, cfg.n_test, cfg.seed, cfg.image_size,
                      cfg.image_channels)
    cfg = fill_kind_defaults(cfg, dom.kind)
    backbone = backbone_spec(cfg.backbone, dom, cfg.encoder)
    run["config"] = to_dict(cfg)
    check_classifier(cfg.classifier, dom.shape, None)
    start_run(out, run)
    device = resolve_device(cfg.device)
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
    ema = EMA(net, cfg.ema_decay)
    opt = adam(net.parameters(), cfg.lr)
    rng = torch.Generator().manual_seed(cfg.seed)
    loss_fn = EDMLoss(LogNormalSigma(cfg.p_mean, cfg.p_std))
    batches = _batches(data, cfg.batch_size, rng)

    def step_fn(step: int) -> dict[str, float]:
        for g in opt.param_groups:
            g["lr"] = cfg.lr * _lr_factor(step, cfg.steps, cfg.warmup_steps, cfg.lr_schedule)
        with autocast(device, cfg.precision):
            loss = loss_fn(net, next(batches), generator=rng)
        if not torch.isfinite(loss):
            raise NonFiniteLossError(f"DSM loss is {loss.item()}")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        ema.update(net)
        return {"loss": loss.item(), "lr": opt.param_groups[0]["lr"]}

    state = RunState({"net": net, "ema": ema.model}, {"opt": opt}, rng)
    run_loop(out, state, cfg.steps, step_fn, cfg.log_every, cfg.ckpt_every,
             cfg.keep_checkpoints, resume, progress, "teacher")
    save_model(out, ema.model, {
        "role": "teacher", "backbone": backbone, "sigma_data": sigma_data,
        "normalizer": norm.to_dict(), "data_shape": list(dom.shape), "kind": dom.kind,
        "target": run["target"], "target_info": dom.info, "steps": cfg.steps})
    from rdmd.evaluation import evaluate_teacher

    evaluate_teacher(out, dom, n_steps=cfg.sample_steps, classifier=cfg.classifier)
    return out


# -- RDMD -----------------------------------------------------------------------------------

def distill(source: str, teacher_dir: str | Path, out_dir: str | Path,
            cfg: DistillConfig | None = None, target: str | None = None,
            resume: bool = False, progress: bool = True) -> Path:
    """Distil the teacher into a one-step generator from ``source`` (Eq. 15).

    ``target`` (optional) gives held-out target samples for the metrics; by default the
    teacher's own target is used. With ``resume=True`` the saved run continues; of ``cfg``
    only ``steps`` is used.
    """
    out = Path(out_dir)
    run = resolve_run(out, resume, {
        "job": "distill", "source": _abs_if_path(source),
        "teacher": str(Path(teacher_dir).resolve()), "target": _abs_if_path(target),
        "config": to_dict(cfg or DistillConfig())}, cfg.steps if cfg is not None else None)
    run["config"].setdefault("ema_decay", 0.0)  # runs saved before the generator EMA had none
    cfg = DistillConfig(**run["config"])
    teacher_model = load_model(run["teacher"])
    if teacher_model.role != "teacher":
        raise RdmdError(f"{run['teacher']} holds a {teacher_model.role}, not a teacher")
    run["target"] = run["target"] or teacher_model.meta["target"]
    shape = tuple(teacher_model.meta["data_shape"])
    size = shape[-1] if len(shape) == 3 else 32
    channels = shape[0] if len(shape) == 3 else 3
    src = load_domain(run["source"], cfg.n_train, cfg.n_test, cfg.seed, size, channels)
    tgt = load_domain(run["target"], cfg.n_test, cfg.n_test, cfg.seed, size, channels)
    for name, dom in (("source", src), ("target", tgt)):
        if dom.shape != shape:
            what = "images" if dom.kind == "image" else "samples"
            raise RdmdError(f"{name} {dom.name!r} has {what} of shape {_fmt_shape(dom.shape)} "
                            f"but the teacher in {run['teacher']} was trained on "
                            f"{_fmt_shape(shape)}")
    cfg = fill_kind_defaults(cfg, src.kind)
    run["config"] = to_dict(cfg)
    cost = get_cost(cfg.cost)
    _probe_cost(cost, cfg.cost, src)
    check_classifier(cfg.classifier, shape, cfg.target_class)
    start_run(out, run)
    device = resolve_device(cfg.device)
    torch.manual_seed(cfg.seed)
    norm = teacher_model.normalizer
    x_train = norm.encode(src.train).to(device)
    teacher = teacher_model.denoiser.to(device)
    method = RDMD.from_teacher(
        teacher, cfg.lam, cfg.sigma_g, cost=cost,
        dm_sigma=LogUniformSigma(cfg.dm_sigma_min, cfg.dm_sigma_max),
        fake_loss=EDMLoss(LogNormalSigma()), normalize=cfg.normalize)
    betas = (cfg.beta1, cfg.beta2)
    opt_g = adam(method.generator.parameters(), cfg.lr_generator, betas)
    opt_f = adam(method.fake.parameters(), cfg.lr_fake, betas)
    rng = torch.Generator().manual_seed(cfg.seed)
    batches = _batches(x_train, cfg.batch_size, rng)
    # The generator's EMA (if on) is what is evaluated and saved; the raw one trains.
    ema = EMA(method.generator, cfg.ema_decay) if cfg.ema_decay else None
    final = ema.model if ema else method.generator

    def step_fn(step: int) -> dict[str, float]:
        with autocast(device, cfg.precision):
            st = method.train_step(next(batches), opt_g, opt_f, cfg.fake_steps, rng,
                                   cfg.grad_clip or None)
        if ema:
            ema.update(method.generator, warmup_decay(ema.decay, step))
        return st.as_dict()

    meta = {"role": "generator", "backbone": teacher_model.meta["backbone"],
            "sigma_data": teacher_model.meta["sigma_data"], "sigma_g": cfg.sigma_g,
            "normalizer": norm.to_dict(), "data_shape": list(shape),
            "kind": teacher_model.meta["kind"], "source": run["source"],
            "target": run["target"], "teacher": run["teacher"], "lam": cfg.lam,
            "cost": cfg.cost, "steps": cfg.steps, "ema_decay": cfg.ema_decay}
    from rdmd.evaluation import evaluate_translation

    def eval_fn(step: int) -> dict[str, float]:
        was = final.training
        m = evaluate_translation(final, norm, src, tgt, cfg, floor=False)
        final.train(was)
        return {k: v for k, v in m.items() if isinstance(v, float)}

    modules = {"generator": method.generator, "fake": method.fake}
    if ema:
        modules["generator_ema"] = ema.model
    state = RunState(modules, {"generator": opt_g, "fake": opt_f}, rng)
    run_loop(out, state, cfg.steps, step_fn, cfg.log_every, cfg.ckpt_every,
             cfg.keep_checkpoints, resume, progress, f"rdmd lam={cfg.lam:g}",
             eval_fn, cfg.eval_every)
    save_model(out, final, meta)
    from rdmd.evaluation import write_translation_report

    write_translation_report(out, final, norm, src, tgt, cfg)
    return out

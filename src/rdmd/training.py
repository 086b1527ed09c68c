"""Training runs: the teacher (DSM on the target) and RDMD distillation, with run directories,
progress bars, CSV logs, atomic checkpoints and exact resume.

Everything random in a run (batch indices, noise levels, noise) comes from one CPU
``torch.Generator`` whose state is checkpointed, so ``--resume`` continues bit-for-bit on CPU.
Batches are drawn from that generator too, so its state is also the data position.

Under ``torchrun`` the same code trains data-parallel (see :mod:`rdmd.distributed`): every rank
draws the same global batch and noise and keeps its slice, DDP averages the gradients, and
rank 0 alone writes checkpoints, logs, plots and the final model.
"""

from __future__ import annotations

import csv
import io
import json
import math
import time
from collections.abc import Callable, Iterator
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from rdmd import checkpoint as ckpt
from rdmd import distributed
from rdmd.config import (
    DistillConfig,
    TeacherConfig,
    config_from_saved,
    fill_kind_defaults,
    to_dict,
)
from rdmd.costs import get_cost
from rdmd.data import Normalizer, load_domain
from rdmd.distributed import Dist
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
                self.rows = [r for r in reader if _complete_row(r, self.fields)
                             and int(r["step"]) <= resume_step]
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


def _complete_row(row: dict[str, Any], fields: list[str]) -> bool:
    """False for a line cut short by a kill during an append (it is dropped on resume)."""
    if None in row or any(row.get(k) is None for k in fields):
        return False
    try:
        int(row["step"])
    except (KeyError, TypeError, ValueError):
        return False
    return True


@dataclass
class RunState:
    """What a checkpoint must hold to continue exactly: every module (weights and EMA copies),
    every optimiser, the run generator (batches and noise, i.e. also the data position) and
    each rank's torch (and CUDA) generator.

    ``modules`` are the bare modules, never their DDP wrappers, so a checkpoint is the same
    whatever the number of ranks; any module added here is checkpointed and restored.
    """

    modules: dict[str, nn.Module]
    optimizers: dict[str, torch.optim.Optimizer]
    rng: torch.Generator
    dist: Dist = field(default_factory=Dist)
    #: what the checkpoint must match to be resumed here (job, backbone, data shape)
    signature: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.signature = json.loads(json.dumps(self.signature))  # as saved: lists, not tuples

    def to_checkpoint(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]] | None:
        """The checkpoint's tensors and JSON metadata, on rank 0; ``None`` on other ranks.
        A collective under DDP (the ranks' generator states are gathered): call it on all."""
        local = {"torch": torch.get_rng_state()}
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            local["cuda"] = torch.cuda.get_rng_state()
        states = distributed.all_gather_object(local)
        if not self.dist.main:
            return None
        tensors: dict[str, torch.Tensor] = {}
        meta: dict[str, Any] = {"optimizers": {}, "world_size": self.dist.world,
                                "run": self.signature}
        for name, m in self.modules.items():
            for k, v in m.state_dict().items():
                tensors[f"module.{name}.{k}"] = v
        for name, opt in self.optimizers.items():
            t, m = ckpt.optimizer_to_flat(opt, f"opt.{name}")
            tensors.update(t)
            meta["optimizers"][name] = m
        tensors["rng.run"] = self.rng.get_state()
        tensors["rng.torch"] = states[0]["torch"]
        for r, st in enumerate(states):
            if r:
                tensors[f"rng.rank{r}.torch"] = st["torch"]
            if "cuda" in st:
                tensors[f"rng.rank{r}.cuda"] = st["cuda"]
        return tensors, meta

    def from_checkpoint(self, tensors: dict[str, torch.Tensor], meta: dict[str, Any],
                        where: Path | str = "checkpoint") -> None:
        saved = meta.get("run")
        if saved and self.signature and saved != self.signature:
            diff = [k for k in self.signature if saved.get(k) != self.signature[k]]
            k = diff[0] if diff else "run"
            raise RdmdError(f"{where} belongs to another run: its {k} is "
                            f"{_fmt_sig(saved.get(k))}, this run's is "
                            f"{_fmt_sig(self.signature.get(k))}")
        for name, m in self.modules.items():
            head = f"module.{name}."
            sd = {k[len(head):]: v for k, v in tensors.items() if k.startswith(head)}
            try:
                m.load_state_dict(sd)
            except RuntimeError as e:
                lines = [ln.strip() for ln in str(e).strip().splitlines() if ln.strip()]
                first = lines[1] if len(lines) > 1 else lines[0] if lines else "mismatch"
                raise RdmdError(f"{where} does not fit module {name!r} of this run: "
                                f"{first[:300]}") from None
        for name, opt in self.optimizers.items():
            if name not in meta.get("optimizers", {}):
                raise RdmdError(f"{where} holds no state for optimiser {name!r}")
            try:
                ckpt.optimizer_from_flat(opt, f"opt.{name}", tensors, meta["optimizers"][name])
            except (KeyError, ValueError, RuntimeError) as e:
                first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
                raise RdmdError(f"{where}: optimiser {name!r} state does not fit: {first}"
                                ) from None
        if "rng.run" not in tensors:
            raise RdmdError(f"{where} holds no run generator state (rng.run)")
        self.rng.set_state(tensors["rng.run"])
        r = self.dist.rank
        own = "rng.torch" if r == 0 else f"rng.rank{r}.torch"
        if own in tensors:  # a rank the saved run did not have keeps its seeded generator
            torch.set_rng_state(tensors[own])
        if f"rng.rank{r}.cuda" in tensors and torch.cuda.is_available():
            torch.cuda.set_rng_state(tensors[f"rng.rank{r}.cuda"])


def _fmt_sig(v: Any) -> str:
    if isinstance(v, list) and all(isinstance(x, int) for x in v):
        return _fmt_shape(tuple(v))
    return json.dumps(v, sort_keys=True) if isinstance(v, dict) else str(v)


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
             eval_fn: Callable[[int], dict] | None = None, eval_every: int = 0,
             on_start: Callable[[], None] | None = None) -> int:
    """The loop both runs share: resume, step, log, checkpoint; returns the last step.

    ``on_start`` (writing the run's config) runs once the checkpoint to resume from has
    loaded: a checkpoint that cannot be resumed leaves every file as it was.
    Under DDP every rank steps and evaluates (``eval_fn`` splits its work over the ranks);
    rank 0 alone logs, shows progress and writes checkpoints, and all ranks resume from the
    checkpoint rank 0 picked.
    """
    d = state.dist
    root = out_dir / "checkpoints"
    start = 0
    if resume:
        last = ckpt.latest_checkpoint(root) if d.main else None
        last = distributed.broadcast_object(str(last) if last is not None else None)
        if last is not None:
            last = Path(last)
            if not (last / ckpt.STATE).is_file():
                raise RdmdError(f"rank {d.rank} cannot see checkpoint {last}: under several "
                                "nodes the run folder must be on a shared file system")
            tensors, meta = ckpt.load_checkpoint(last)
            state.from_checkpoint(tensors, meta, last)
            start = int(meta["step"])
    if d.main:
        if on_start is not None:
            on_start()
        ckpt.remove_stale(root)
    log = CsvLog(out_dir / LOG_FILE, start) if d.main else None
    bar = tqdm(total=total_steps, initial=start, desc=desc, disable=not (progress and d.main),
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
            stats = distributed.mean_over_ranks(stats)
            elapsed = time.perf_counter() - t0
            # evaluation runs on every rank (its work is split over them)
            evals = eval_fn(done) if eval_fn and eval_every and done % eval_every == 0 else {}
            if log is not None:
                row = {"step": done, **{k: f"{v:.6g}" for k, v in stats.items()},
                       "time_s": f"{elapsed:.2f}", **{k: f"{v:.6g}" for k, v in evals.items()}}
                log.write(row)
            bar.set_postfix({k: f"{v:.4g}" for k, v in stats.items()}, refresh=False)
        if done % ckpt_every == 0 or done == total_steps:
            saved = state.to_checkpoint()
            if saved is not None:
                ckpt.save_checkpoint(root, done, saved[0], saved[1], keep)
        bar.update(1)
    bar.close()
    return max(start, total_steps)


def _batches(data: torch.Tensor, batch: int, rng: torch.Generator, d: Dist | None = None
             ) -> Iterator[torch.Tensor]:
    """Global batches of ``batch`` indices drawn with replacement; each rank keeps its slice."""
    d = d or Dist()
    local = batch // d.world
    while True:
        idx = torch.randint(0, data.shape[0], (batch,), generator=rng)
        idx = idx[d.rank * local:(d.rank + 1) * local]
        yield data[idx.to(data.device)]


def _sharded(rng: torch.Generator, d: Dist, local_batch: int) -> Any:
    """Per-sample noise of the global batch, sliced to this rank (no-op in one process)."""
    return distributed.ShardedDraws(rng, d, local_batch) if d.active else nullcontext()


def _setup_dist(cfg: TeacherConfig | DistillConfig) -> tuple[Dist, torch.device]:
    """Join the torchrun job (if any) and pick this rank's device; the global batch must split
    evenly over the ranks."""
    d = distributed.setup(cfg.device)
    if cfg.batch_size % d.world:
        raise RdmdError(f"batch_size {cfg.batch_size} (the global batch) does not split over "
                        f"{d.world} processes; use a multiple of {d.world}")
    return d, resolve_device(distributed.local_device(cfg.device, d))


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
    cfg = config_from_saved(TeacherConfig, run["config"], out / CONFIG_FILE)
    dom = load_domain(run["target"], cfg.n_train, cfg.n_test, cfg.seed, cfg.image_size,
                      cfg.image_channels)
    cfg = fill_kind_defaults(cfg, dom.kind)
    backbone = backbone_spec(cfg.backbone, dom, cfg.encoder)
    run["config"] = to_dict(cfg)
    check_classifier(cfg.classifier, dom.shape, None)
    d, device = _setup_dist(cfg)
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
    ema = EMA(net, cfg.ema_decay)
    opt = adam(net.parameters(), cfg.lr)
    rng = torch.Generator().manual_seed(cfg.seed)
    loss_fn = EDMLoss(LogNormalSigma(cfg.p_mean, cfg.p_std))
    batches = _batches(data, cfg.batch_size, rng, d)
    net_p = distributed.wrap(net, d, device)  # gradients averaged over ranks

    def step_fn(step: int) -> dict[str, float]:
        for g in opt.param_groups:
            g["lr"] = cfg.lr * _lr_factor(step, cfg.steps, cfg.warmup_steps, cfg.lr_schedule)
        with autocast(device, cfg.precision), _sharded(rng, d, cfg.batch_size // d.world):
            loss = loss_fn(net_p, next(batches), generator=rng)
        finite = bool(torch.isfinite(loss))
        if distributed.any_rank(not finite):  # every rank stops together
            raise NonFiniteLossError(f"DSM loss is {loss.item()}" if not finite else
                                     "DSM loss is non-finite on another rank")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.grad_clip:
            nn.utils.clip_grad_norm_(net.parameters(), cfg.grad_clip)
        opt.step()
        ema.update(net)
        return {"loss": loss.item(), "lr": opt.param_groups[0]["lr"]}

    state = RunState({"net": net, "ema": ema.model}, {"opt": opt}, rng, d,
                     {"job": "teacher", "backbone": backbone, "data_shape": list(dom.shape)})
    run_loop(out, state, cfg.steps, step_fn, cfg.log_every, cfg.ckpt_every,
             cfg.keep_checkpoints, resume, progress, "teacher",
             on_start=lambda: start_run(out, run))
    if d.main:
        save_model(out, ema.model, {
            "role": "teacher", "backbone": backbone, "sigma_data": sigma_data,
            "normalizer": norm.to_dict(), "data_shape": list(dom.shape), "kind": dom.kind,
            "target": run["target"], "target_info": dom.info, "steps": cfg.steps})
    distributed.barrier()  # the model is written before any rank reads it
    from rdmd.evaluation import evaluate_teacher

    # every rank samples its share; rank 0 writes the metrics and plots
    evaluate_teacher(out, dom, n_steps=cfg.sample_steps, classifier=cfg.classifier,
                     device=device)
    distributed.barrier()  # and every rank returns with the report written
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
    cfg = config_from_saved(DistillConfig, run["config"], out / CONFIG_FILE)
    teacher_model = load_model(run["teacher"])
    if teacher_model.role != "teacher":
        raise RdmdError(f"{run['teacher']} holds a {teacher_model.role}, not a teacher")
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
            raise RdmdError(f"{name} {dom.name!r} has {what} of shape {_fmt_shape(dom.shape)} "
                            f"but the teacher in {run['teacher']} was trained on "
                            f"{_fmt_shape(shape)}")
    cfg = fill_kind_defaults(cfg, src.kind)
    run["config"] = to_dict(cfg)
    cost = get_cost(cfg.cost)
    _probe_cost(cost, cfg.cost, src)
    check_classifier(cfg.classifier, shape, cfg.target_class)
    d, device = _setup_dist(cfg)
    distributed.barrier()  # every rank has checked the run folder before rank 0 creates it
    torch.manual_seed(cfg.seed)
    norm = teacher_model.normalizer
    x_train = norm.encode(src.train).to(device)
    teacher = teacher_model.denoiser.to(device)
    method = RDMD.from_teacher(
        teacher, cfg.lam, cfg.sigma_g, cost=cost,
        dm_sigma=LogUniformSigma(cfg.dm_sigma_min, cfg.dm_sigma_max),
        fake_loss=EDMLoss(fake_sigma_dist(cfg)), normalize=cfg.normalize,
        share_sigma=cfg.fake_sigma == "shared")
    if cfg.teacher_dtype == "bf16":
        hold_in_bf16(method.teacher)
    generator, fake = method.generator, method.fake  # the bare modules
    betas = (cfg.beta1, cfg.beta2)
    opt_g = adam(generator.parameters(), cfg.lr_generator, betas)
    opt_f = adam(fake.parameters(), cfg.lr_fake, betas)
    rng = torch.Generator().manual_seed(cfg.seed)
    batches = _batches(x_train, cfg.batch_size, rng, d)
    # The generator's EMA (if on) is what is evaluated and saved; the raw one trains. It
    # follows the bare module: every rank holds the same weights after each update.
    ema = EMA(generator, cfg.ema_decay) if cfg.ema_decay else None
    final = ema.model if ema else generator
    # Under DDP the method sees the wrapped networks (gradients averaged over ranks); the
    # frozen teacher is not wrapped: it has no gradients to synchronise.
    method.generator = distributed.wrap(generator, d, device)  # type: ignore[assignment]
    method.fake = distributed.wrap(fake, d, device)  # type: ignore[assignment]

    def step_fn(step: int) -> dict[str, float]:
        with autocast(device, cfg.precision), _sharded(rng, d, cfg.batch_size // d.world):
            st = method.train_step(next(batches), opt_g, opt_f, cfg.fake_steps, rng,
                                   cfg.grad_clip or None)
        if ema:
            ema.update(generator, warmup_decay(ema.decay, step))
        return st.as_dict()

    meta = {"role": "generator", "backbone": teacher_model.meta["backbone"],
            "sigma_data": teacher_model.meta["sigma_data"], "sigma_g": cfg.sigma_g,
            "normalizer": norm.to_dict(), "data_shape": list(shape),
            "kind": teacher_model.meta["kind"], "source": run["source"],
            "target": run["target"], "teacher": run["teacher"], "lam": cfg.lam,
            "cost": cfg.cost, "steps": cfg.steps, "ema_decay": cfg.ema_decay}
    from rdmd.evaluation import evaluate_translation

    def eval_fn(step: int) -> dict[str, float]:  # on every rank: outputs are gathered
        was = final.training
        m = evaluate_translation(distributed.gathered(final), norm, src, tgt, cfg,
                                 floor=False)
        final.train(was)
        return {k: v for k, v in m.items() if isinstance(v, float)}

    modules = {"generator": generator, "fake": fake}
    if ema:
        modules["generator_ema"] = ema.model
    state = RunState(modules, {"generator": opt_g, "fake": opt_f}, rng, d,
                     {"job": "distill", "backbone": teacher_model.meta["backbone"],
                      "data_shape": list(shape)})
    run_loop(out, state, cfg.steps, step_fn, cfg.log_every, cfg.ckpt_every,
             cfg.keep_checkpoints, resume, progress, f"rdmd lam={cfg.lam:g}",
             eval_fn, cfg.eval_every, on_start=lambda: start_run(out, run))
    if d.main:
        save_model(out, final, meta)
    from rdmd.evaluation import write_translation_report

    # every rank translates its share of the held-out set; rank 0 writes the report
    write_translation_report(out, distributed.gathered(final), norm, src, tgt, cfg)
    distributed.barrier()  # every rank returns with the model and report written
    return out


FAKE_SIGMAS = ("lognormal", "loguniform", "shared")


def fake_sigma_dist(cfg: DistillConfig) -> LogNormalSigma | LogUniformSigma:
    if cfg.fake_sigma not in FAKE_SIGMAS:
        raise RdmdError(f"fake_sigma must be one of {', '.join(FAKE_SIGMAS)}, "
                        f"got {cfg.fake_sigma!r}")
    if cfg.fake_sigma == "lognormal":
        return LogNormalSigma()
    return LogUniformSigma(cfg.dm_sigma_min, cfg.dm_sigma_max)


class _LowPrecisionBackbone(nn.Module):
    """A frozen backbone whose weights are stored in bf16 (half the memory); it runs under bf16
    autocast and returns float32, so the preconditioning around it stays in float32."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner
        self.config = getattr(inner, "config", {})
        for p in inner.parameters():  # parameters only: buffers (frequencies) stay float32
            p.data = p.data.to(torch.bfloat16)

    def forward(self, x: torch.Tensor, c_noise: torch.Tensor) -> torch.Tensor:
        with torch.autocast(x.device.type, dtype=torch.bfloat16):
            return self.inner(x, c_noise).float()


def hold_in_bf16(teacher: nn.Module) -> None:
    """Keep the frozen teacher's weights in bf16 (``teacher_dtype = "bf16"``)."""
    teacher.backbone = _LowPrecisionBackbone(teacher.backbone)
    teacher.requires_grad_(False)

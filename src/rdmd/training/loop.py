"""The run loop every training job shares: resume, step, schedule, average, log, checkpoint.

It knows nothing of what it trains: a :class:`rdmd.methods.base.Method` declares its modules
and optimisers and does one step; the loop wraps the trained modules for DDP, sets their
learning rates, keeps the EMA the config asks for, checkpoints every module, optimiser and
generator state, and resumes from the latest checkpoint exactly.

Everything random in a run (batch indices, noise levels, noise) comes from one CPU
``torch.Generator`` whose state is checkpointed, so ``--resume`` continues bit-for-bit on CPU.
Under ``torchrun`` every rank draws the same global batch and noise and keeps its slice, DDP
averages the gradients, and rank 0 alone writes checkpoints and logs.
"""

from __future__ import annotations

import csv
import io
import math
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from rdmd import checkpoint as ckpt
from rdmd import distributed
from rdmd.distributed import Dist
from rdmd.ema import EMA, warmup_decay
from rdmd.errors import RdmdError, RunInterrupted
from rdmd.methods.base import Method, NonFiniteLossError
from rdmd.training.rundir import CHECKPOINTS, LOG_FILE
from rdmd.training.runtime import autocast, sharded
from rdmd.training.state import RunState
from rdmd.training.stop import StopSignals


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


def lr_factor(step: int, total: int, warmup: int, schedule: str, decay: int = 0) -> float:
    """Linear warm-up, then constant or cosine decay to 0 at ``total``. A constant rate
    with ``decay`` steps falls linearly over the last ``decay`` of them (warm-up, stable,
    decay): a run trained at a constant rate can be extended by a decay, which a cosine run
    cannot."""
    if warmup and step < warmup:
        return (step + 1) / warmup
    if schedule == "cosine":
        return 0.5 * (1 + math.cos(math.pi * min(step, total) / max(total, 1)))
    if decay and step >= total - decay:
        return max(total - step, 0) / decay
    return 1.0


def check_resumed_rate(optimizers: dict[str, torch.optim.Optimizer],
                       base_lr: dict[str, list[float]], start: int, cfg: Any) -> None:
    """A resumed run whose ``steps`` or ``decay_steps`` changed must go on at the rate it
    stopped with: a decay that should have begun before the checkpoint would make the rate
    jump under the trained model."""
    if start == 0:
        return
    factor = lr_factor(start - 1, cfg.steps, cfg.warmup_steps, cfg.lr_schedule,
                       cfg.decay_steps)
    for name, opt in optimizers.items():
        for g, lr in zip(opt.param_groups, base_lr[name], strict=True):
            if not math.isclose(g["lr"], lr * factor, rel_tol=1e-6, abs_tol=1e-12):
                begin = cfg.steps - cfg.decay_steps
                raise RdmdError(
                    f"the checkpoint at step {start} trained at rate {g['lr']:.3g}, but "
                    f"these settings give {lr * factor:.3g} there (decay from step {begin} "
                    f"of {cfg.steps}); choose steps - decay_steps >= {start}")


def run_loop(out_dir: Path, method: Method, batches: Iterator[torch.Tensor],
             rng: torch.Generator, cfg: Any, *, dist: Dist, device: torch.device,
             signature: dict[str, Any], ema_name: str | None, ema_warmup: bool, resume: bool,
             progress: bool, desc: str, eval_fn: Callable[[int], dict] | None = None,
             on_start: Callable[[], None] | None = None,
             stop: StopSignals | None = None,
             keep: dict[str, torch.nn.Module] | None = None) -> None:
    """Train ``method`` for ``cfg.steps`` steps; the EMA it keeps is ``method.ema``.

    ``cfg`` supplies the schedule and bookkeeping keys (``steps``, ``lr_schedule``,
    ``warmup_steps``, ``ema_decay``, ``precision``, ``log_every``, ``ckpt_every``,
    ``keep_checkpoints``, ``eval_every``). ``on_start`` (writing the run's config) runs once
    the checkpoint to resume from has loaded: a checkpoint that cannot be resumed leaves every
    file as it was. Under DDP every rank steps and evaluates (``eval_fn`` splits its work over
    the ranks); rank 0 alone logs, shows progress and writes checkpoints, and all ranks resume
    from the checkpoint rank 0 picked. ``stop`` (the run's SIGINT/SIGTERM handlers) is polled
    after every step: on a signal the loop writes a checkpoint at that step and raises
    :class:`~rdmd.errors.RunInterrupted` (all ranks agree on the step). ``keep`` are modules
    that are not trained but checkpointed and restored with the run (the best weights of
    ``select = "best_val"``, :mod:`rdmd.training.select`).
    """
    d = dist
    total = cfg.steps
    base_lr = {n: [g["lr"] for g in o.param_groups] for n, o in method.optimizers.items()}
    ema = None
    if ema_name and cfg.ema_decay:
        ema = EMA(method.modules[method.ema_of], cfg.ema_decay)
    method.ema = ema
    modules = dict(method.modules)
    if ema is not None:
        modules[ema_name] = ema.model
    modules.update(keep or {})
    state = RunState(modules, method.optimizers, rng, d, signature)
    root = out_dir / CHECKPOINTS
    start = _resume(state, root, d) if resume else 0
    if resume:
        check_resumed_rate(method.optimizers, base_lr, start, cfg)
    if d.main:
        if resume:
            print(f"resuming {out_dir} at step {start} of {total}"
                  + ("" if start else " (it has no checkpoint yet)"), flush=True)
        if on_start is not None:
            on_start()
        ckpt.remove_stale(root)
    # Under DDP the method calls the wrapped networks (gradients averaged over ranks).
    method.wrap(lambda m: distributed.wrap(m, d, device))
    log = CsvLog(out_dir / LOG_FILE, start) if d.main else None
    bar = tqdm(total=total, initial=start, desc=desc, disable=not (progress and d.main),
               dynamic_ncols=True, mininterval=1.0)
    show_lr = (len(base_lr) == 1 or cfg.lr_schedule != "constant" or cfg.warmup_steps
               or cfg.decay_steps)
    eval_every = getattr(cfg, "eval_every", 0)
    t0 = time.perf_counter()
    if stop is not None:  # from here a signal stops the run after a step, with a checkpoint
        stop.__enter__()  # (restored below, or by claim_run if the loop raises)
    for step in range(start, total):
        factor = lr_factor(step, total, cfg.warmup_steps, cfg.lr_schedule, cfg.decay_steps)
        for name, opt in method.optimizers.items():
            for g, lr in zip(opt.param_groups, base_lr[name], strict=True):
                g["lr"] = lr * factor
        method.begin_step(step, total)
        try:
            with autocast(device, cfg.precision), sharded(rng, d, cfg.batch_size // d.world):
                stats = method.train_step(next(batches), rng)
        except NonFiniteLossError as e:
            bar.close()
            last = ckpt.latest_checkpoint(root)
            where = (f"the last good checkpoint is {last}" if last is not None
                     else "no checkpoint was written yet")
            raise RdmdError(f"non-finite loss at step {step + 1}: {e}; {where}") from None
        if ema is not None:
            ema.update(method.modules[method.ema_of],
                       warmup_decay(ema.decay, step) if ema_warmup else None)
        if show_lr:
            for name, opt in method.optimizers.items():
                key = "lr" if len(base_lr) == 1 else f"lr_{name}"
                stats[key] = opt.param_groups[0]["lr"]
        done = step + 1
        # an evaluation step writes a row of its own: eval_every need not be a multiple of
        # log_every (it once was silently, evaluating at their common multiples only)
        evaluating = bool(eval_fn and eval_every and done % eval_every == 0)
        if done % cfg.log_every == 0 or done == total or evaluating:
            stats = distributed.mean_over_ranks(stats)
            elapsed = time.perf_counter() - t0
            # evaluation runs on every rank (its work is split over them)
            evals = eval_fn(done) if evaluating and eval_fn else {}
            if log is not None:
                row = {"step": done, **{k: f"{v:.6g}" for k, v in stats.items()},
                       "time_s": f"{elapsed:.2f}", **{k: f"{v:.6g}" for k, v in evals.items()}}
                log.write(row)
            bar.set_postfix({k: f"{v:.4g}" for k, v in stats.items()}, refresh=False)
        stopping = stop is not None and stop.signum is not None
        if d.active:  # every rank stops at the same step (the checkpoint is a collective)
            stopping = distributed.any_rank(stopping)
        if done % cfg.ckpt_every == 0 or done == total or stopping:
            saved = state.to_checkpoint()
            if saved is not None:
                ckpt.save_checkpoint(root, done, saved[0], saved[1], cfg.keep_checkpoints)
        bar.update(1)
        if stopping:
            bar.close()
            signum = stop.signum if stop is not None and stop.signum else 15  # 15: SIGTERM
            name = signal.Signals(signum).name
            raise RunInterrupted(signum, f"{name}: stopped after step {done} of {total}")
    bar.close()
    if stop is not None:
        stop.__exit__()


def _resume(state: RunState, root: Path, d: Dist) -> int:
    """Load the latest checkpoint (rank 0 picks it); the step it holds, 0 if none."""
    last = ckpt.latest_checkpoint(root) if d.main else None
    last = distributed.broadcast_object(str(last) if last is not None else None)
    if last is None:
        return 0
    last = Path(last)
    if not (last / ckpt.STATE).is_file():
        raise RdmdError(f"rank {d.rank} cannot see checkpoint {last}: under several "
                        "nodes the run folder must be on a shared file system")
    tensors, meta = ckpt.load_checkpoint(last)
    state.from_checkpoint(tensors, meta, last)
    return int(meta["step"])

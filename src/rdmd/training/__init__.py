"""Training runs: the run machinery and the two recipes built on it.

Machinery: :mod:`~rdmd.training.rundir` (a run's folder and its config, resolved once),
:mod:`~rdmd.training.loop` (the generic loop: schedule, EMA, log, checkpoints, resume),
:mod:`~rdmd.training.state` (what a checkpoint holds), :mod:`~rdmd.training.runtime`
(processes, devices, precision, batches), :mod:`~rdmd.training.checks` (input checks).
Recipes: :mod:`~rdmd.training.teacher` (DSM on the target) and
:mod:`~rdmd.training.distill` (a distillation method from :mod:`rdmd.methods`).
"""

from rdmd.training.distill import distill
from rdmd.training.rundir import CONFIG_FILE, LOG_FILE, METRICS_FILE
from rdmd.training.teacher import train_teacher

__all__ = ["CONFIG_FILE", "LOG_FILE", "METRICS_FILE", "distill", "train_teacher"]

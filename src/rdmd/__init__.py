"""rdmd: one-step unpaired translation by Regularized Distribution Matching Distillation."""

from rdmd.api import (
    DistillConfig,
    Model,
    TeacherConfig,
    distill,
    load_model,
    make_translator,
    train_teacher,
    translate,
    translate_folder,
)
from rdmd.errors import RdmdError
from rdmd.sweep import run_sweep

__version__ = "0.1.0"

__all__ = ["DistillConfig", "Model", "RdmdError", "TeacherConfig", "distill", "load_model",
           "make_translator", "run_sweep", "train_teacher", "translate", "translate_folder"]

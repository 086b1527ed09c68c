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

__all__ = ["DistillConfig", "Model", "RDMDPipeline", "RdmdError", "TeacherConfig", "distill",
           "load_model", "make_translator", "run_sweep", "train_teacher", "translate",
           "translate_folder"]


def __getattr__(name: str) -> object:
    """``rdmd.RDMDPipeline`` on first use: diffusers' pipeline machinery is slow to import and
    only the exported-generator path needs it."""
    if name == "RDMDPipeline":
        from rdmd.interop.pipeline import RDMDPipeline

        return RDMDPipeline
    raise AttributeError(f"module 'rdmd' has no attribute {name!r}")

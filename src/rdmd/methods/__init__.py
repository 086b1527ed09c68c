"""Training methods behind one interface (:class:`rdmd.methods.base.Method`).

``METHODS`` lists the distillation methods a ``distill`` run can use (config key
``method``); each builds itself from the teacher and its config with ``from_config``.
A new method is a module here plus one entry below.
"""

from rdmd.methods.base import Method, NonFiniteLossError
from rdmd.methods.dsm import DSM
from rdmd.methods.rdmd import RDMD, OneStepGenerator
from rdmd.methods.rdmd_gan import RDMDGAN, RDMDLamGAN
from rdmd.methods.rdmd_lam import RDMDLam

METHODS: dict[str, type[Method]] = {"rdmd": RDMD, "rdmd_lam": RDMDLam, "rdmd_gan": RDMDGAN,
                                    "rdmd_lam_gan": RDMDLamGAN}

__all__ = ["DSM", "METHODS", "RDMD", "RDMDGAN", "Method", "NonFiniteLossError",
           "OneStepGenerator", "RDMDLam", "RDMDLamGAN"]

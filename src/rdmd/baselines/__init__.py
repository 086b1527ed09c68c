"""The multi-step diffusion baselines of the paper (SDEdit, ILVR, EGSDE), peers of RDMD's
one-step generator behind :class:`rdmd.baselines.common.Translator`; all use the same
teacher and the shared Heun sampler (:mod:`rdmd.sampler`). Build one by name with
:func:`rdmd.translators.make_translator`."""

from rdmd.baselines.common import Translator, low_pass
from rdmd.baselines.egsde import EGSDE
from rdmd.baselines.ilvr import ILVR
from rdmd.baselines.sdedit import SDEdit

__all__ = ["EGSDE", "ILVR", "SDEdit", "Translator", "low_pass"]

"""Every data set behind one interface: :class:`Domain` from :func:`load_domain`."""

from rdmd.data.domain import Domain
from rdmd.data.normalizer import Normalizer
from rdmd.data.registry import load_domain
from rdmd.data.vectors import BUILTIN_VECTORS

__all__ = ["BUILTIN_VECTORS", "Domain", "Normalizer", "load_domain"]

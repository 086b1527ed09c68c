"""Checks of a run's inputs made before its folder exists: a mistake found here costs nothing."""

from __future__ import annotations

from rdmd.errors import RdmdError
from rdmd.training.state import fmt_shape


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
                        f"images, the data are {fmt_shape(shape)}")
    if target_class is not None and not 0 <= target_class < net.n_classes:
        raise RdmdError(f"target_class {target_class} is not a class of {path} "
                        f"(0..{net.n_classes - 1})")

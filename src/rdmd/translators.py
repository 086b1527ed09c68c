"""Every way rdmd can translate, by name: ``rdmd`` (the one-step generator) and the baselines
``sdedit``, ``ilvr``, ``egsde`` (multi-step, on the generator's teacher).

:data:`REGISTRY` is the one list of methods: the CLI's choices, the API and the sweep's
grids are derived from it, and every translator is built here, so a method is the same
object wherever it is used."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from rdmd.baselines import EGSDE, ILVR, SDEdit, Translator
from rdmd.config import CHOICES
from rdmd.edm import SIGMA_MAX
from rdmd.errors import RdmdError
from rdmd.models import Model, load_model


class OneStep(Translator):
    """RDMD's generator: one network evaluation, no noise.

    ``lam``: the ``lambda`` to translate at. Required for a lambda-conditioned generator
    (inside its trained range); for a fixed one, accepted only if equal to its ``lambda``.
    """

    method = "rdmd"

    def __init__(self, model: Model, lam: float | None = None) -> None:
        super().__init__(model.normalizer, next(model.net.parameters()).device,
                         tuple(model.meta["data_shape"]))
        self.model = model
        self.net: torch.nn.Module = model.net
        self.lam = model.lam
        if model.lam_range is not None:
            from rdmd.methods.rdmd_lam import AtLambda, LamCode

            self.net = AtLambda(model.net, LamCode.from_meta(model.meta), lam)
            self.lam = self.net.lam
        elif lam is not None and (self.lam is None or float(lam) != self.lam):
            raise RdmdError(f"this generator was trained at the fixed lambda "
                            f"{self.lam if self.lam is not None else 'unknown'}; lam {lam:g} "
                            "needs a lambda-conditioned generator (distill --lam-range)")

    @property
    def nfe(self) -> int:
        return 1

    @property
    def params(self) -> dict[str, Any]:
        out: dict[str, Any] = {"lam": float(self.lam if self.lam is not None else float("nan"))}
        if self.model.lam_range is not None:
            out["lam_range"] = list(self.model.lam_range)
        return out

    def _map(self, z: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        with torch.no_grad():
            return self.net(z)


def _shape(m: Model) -> tuple[int, ...]:
    return tuple(int(s) for s in m.meta["data_shape"])


def _rdmd(m: Model, params: dict[str, Any]) -> Translator:
    return OneStep(m, params.get("lam"))


def _score(m: Model, params: dict[str, Any]) -> torch.nn.Module:
    """The teacher as the baselines sample it: guided by its guide at its own weight, as its
    own evaluation and RDMD's real score use it (``guidance=1``: the plain network)."""
    g = params.pop("guidance", None)
    return m.score(None if g is None else float(g))


def _sdedit(m: Model, params: dict[str, Any]) -> Translator:
    return SDEdit(_score(m, params), m.normalizer, _shape(m), **params)


def _ilvr(m: Model, params: dict[str, Any]) -> Translator:
    # a diffusers teacher's scheduler may end below EDM's sigma_max: start from its top level
    top = m.meta.get("sigma_range", [None, SIGMA_MAX])[1]
    return ILVR(_score(m, params), m.normalizer, _shape(m), sigma_max=min(SIGMA_MAX, top),
                **params)


def _egsde(m: Model, params: dict[str, Any]) -> Translator:
    clf = params.pop("domain_classifier", None)
    if clf is None:
        raise RdmdError("egsde needs a domain classifier: train one with `rdmd "
                        "train-domain-classifier` and pass its directory")
    if isinstance(clf, str | Path):
        from rdmd.baselines.domain_classifier import load_domain_classifier

        clf, _ = load_domain_classifier(clf)
    return EGSDE(_score(m, params), m.normalizer, _shape(m), clf, **params)


@dataclass(frozen=True)
class MethodSpec:
    """One method: how it is built, the keyword parameters it takes, and the role of the
    model it runs on (``generator``: a distilled run; ``teacher``: a train-teacher run)."""

    build: Callable[[Model, dict[str, Any]], Translator]
    params: tuple[str, ...]
    role: str


REGISTRY: dict[str, MethodSpec] = {
    "rdmd": MethodSpec(_rdmd, ("lam",), "generator"),
    "sdedit": MethodSpec(_sdedit, ("sigma_start", "n_steps", "guidance"), "teacher"),
    "ilvr": MethodSpec(_ilvr, ("down", "n_steps", "guidance"), "teacher"),
    "egsde": MethodSpec(_egsde, ("sigma_start", "down", "lam_s", "lam_i", "n_steps",
                                 "domain_classifier", "guidance"), "teacher"),
}
METHODS = tuple(REGISTRY)
# parameters every method takes: the networks' precision (Translator.precision)
COMMON_PARAMS = ("precision",)
PRECISIONS = CHOICES["precision"]  # the same choices as the training key
PARAMS = {name: spec.params + COMMON_PARAMS for name, spec in REGISTRY.items()}
BASELINES = tuple(name for name, spec in REGISTRY.items() if spec.role == "teacher")


def _as_model(model: str | Path | Model) -> Model:
    return model if isinstance(model, Model) else load_model(model)


def make_translator(method: str, model: str | Path | Model, **params: Any) -> Translator:
    """``method`` on ``model``: a distilled run for ``rdmd``, a teacher run for the baselines
    (EGSDE also needs ``domain_classifier``, a directory or a loaded network). Unknown or
    missing parameters are errors, not silently ignored."""
    spec = REGISTRY.get(method)
    if spec is None:
        raise RdmdError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
    unknown = sorted(set(params) - set(PARAMS[method]))
    if unknown:
        raise RdmdError(f"{method} has no parameter(s) {', '.join(unknown)}; it takes "
                        f"{', '.join(PARAMS[method])}")
    precision = params.pop("precision", None)
    if precision is not None and precision not in PRECISIONS:
        raise RdmdError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    m = _as_model(model)
    if m.role != spec.role:
        hint = ("pass a distilled run" if spec.role == "generator"
                else "pass the teacher run (train-teacher's --out)")
        raise RdmdError(f"{method} needs a {spec.role} model, got a {m.role}: {hint}")
    tr = spec.build(m, dict(params))
    tr.meta, tr.precision = m.meta, precision
    return tr

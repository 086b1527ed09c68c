"""Every way rdmd can translate, by name: ``rdmd`` (the one-step generator) and the baselines
``sdedit``, ``ilvr``, ``egsde`` (multi-step, on the generator's teacher). The CLI, the API and
the sweep build translators here, so a method is the same object wherever it is used."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from rdmd.baselines import EGSDE, ILVR, SDEdit, Translator
from rdmd.errors import RdmdError
from rdmd.models import Model, load_model

METHODS = ("rdmd", "sdedit", "ilvr", "egsde")
PARAMS = {
    "rdmd": (),
    "sdedit": ("sigma_start", "n_steps"),
    "ilvr": ("down", "n_steps"),
    "egsde": ("sigma_start", "down", "lam_s", "lam_i", "n_steps", "domain_classifier"),
}


class OneStep(Translator):
    """RDMD's generator: one network evaluation, no noise."""

    method = "rdmd"

    def __init__(self, model: Model) -> None:
        super().__init__(model.normalizer, next(model.net.parameters()).device)
        self.model = model

    @property
    def nfe(self) -> int:
        return 1

    @property
    def params(self) -> dict[str, Any]:
        return {"lam": float(self.model.meta.get("lam", float("nan")))}

    def _map(self, z: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        with torch.no_grad():
            return self.model.net(z)


def _as_model(model: str | Path | Model) -> Model:
    return model if isinstance(model, Model) else load_model(model)


def make_translator(method: str, model: str | Path | Model, **params: Any) -> Translator:
    """``method`` on ``model``: a distilled run for ``rdmd``, a teacher run for the baselines
    (EGSDE also needs ``domain_classifier``, a directory or a loaded network). Unknown or
    missing parameters are errors, not silently ignored."""
    if method not in METHODS:
        raise RdmdError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
    unknown = sorted(set(params) - set(PARAMS[method]))
    if unknown:
        raise RdmdError(f"{method} has no parameter(s) {', '.join(unknown)}; it takes "
                        f"{', '.join(PARAMS[method]) or 'none'}")
    m = _as_model(model)
    tr = _build(method, m, dict(params))
    tr.meta = m.meta
    return tr


def _build(method: str, m: Model, params: dict[str, Any]) -> Translator:
    want = "generator" if method == "rdmd" else "teacher"
    if m.role != want:
        hint = ("pass a distilled run" if want == "generator"
                else "pass the teacher run (train-teacher's --out)")
        raise RdmdError(f"{method} needs a {want} model, got a {m.role}: {hint}")
    if method == "rdmd":
        return OneStep(m)
    den, norm = m.denoiser, m.normalizer
    shape = tuple(m.meta["data_shape"])
    if method == "sdedit":
        return SDEdit(den, norm, **params)
    if method == "ilvr":
        return ILVR(den, norm, shape, **params)
    clf = params.pop("domain_classifier", None)
    if clf is None:
        raise RdmdError("egsde needs a domain classifier: train one with `rdmd "
                        "train-domain-classifier` and pass its directory")
    if isinstance(clf, str | Path):
        from rdmd.baselines.domain_classifier import load_domain_classifier

        clf, _ = load_domain_classifier(clf)
    return EGSDE(den, norm, shape, clf, **params)

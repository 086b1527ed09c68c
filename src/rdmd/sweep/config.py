"""The sweep config: what to compare, on which data, and the plan of entries it expands to.

The methods and their parameters come from :mod:`rdmd.translators`; the sweep adds only its
own keys (``classifier_steps``, the training budget of EGSDE's domain classifier when the
configured directory holds none).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rdmd.errors import RdmdError
from rdmd.translators import BASELINES, METHODS, REGISTRY

METHOD_ORDER = METHODS  # the table's order: RDMD first, then the baselines
TOP_KEYS = {"source", "target", "teacher", "classifier", "target_class", "n_eval", "seed",
            "chunk", "recommended_lam", "fig5_images", "rdmd", *BASELINES}
# "model": one lambda-conditioned generator (distill --lam-range) that serves every lambda
RDMD_KEYS = {"lams", "config", "runs", "steps", "model"}
# methods that take EGSDE's domain classifier, and the sweep's keys that are not grid axes
NEEDS_DOMAIN_CLASSIFIER = tuple(m for m in BASELINES
                                if "domain_classifier" in REGISTRY[m].params)
GRID_FIXED = {"domain_classifier", "classifier_steps"}
GRID_KEYS = {m: set(REGISTRY[m].params) | ({"classifier_steps"}
                                           if m in NEEDS_DOMAIN_CLASSIFIER else set())
             for m in BASELINES}


@dataclass
class SweepConfig:
    """What to compare, and on which data; paths are relative to the config file's folder."""

    source: str
    target: str
    teacher: str
    classifier: str | None = None
    target_class: int | None = None
    n_eval: int = 0  # held-out sources scored (0 = all)
    seed: int = 0
    chunk: int = 100  # batch size for translation and for the images/s figure
    recommended_lam: float | None = None  # RDMD's configuration the Fig. 5 grid matches
    fig5_images: int = 8
    rdmd: dict[str, Any] = field(default_factory=dict)
    grids: dict[str, dict[str, Any]] = field(default_factory=dict)


def _resolve(base: Path, p: Any) -> Any:
    """Paths in a config are relative to the config's folder; built-in names stay as given."""
    if not isinstance(p, str) or not p:
        return p
    cand = base / p
    return str(cand) if cand.exists() or "/" in p else p


def load_sweep_config(path: str | Path) -> SweepConfig:
    from rdmd.config import read_config_file

    path = Path(path)
    raw = read_config_file(path)
    unknown = sorted(set(raw) - TOP_KEYS)
    if unknown:
        raise RdmdError(f"{path}: unknown sweep key(s) {', '.join(unknown)}; known: "
                        f"{', '.join(sorted(TOP_KEYS))}")
    for k in ("source", "target", "teacher"):
        if k not in raw:
            raise RdmdError(f"{path}: missing required key {k!r}")
    base = path.parent
    rd = dict(raw.get("rdmd", {}))
    bad = sorted(set(rd) - RDMD_KEYS)
    if bad:
        raise RdmdError(f"{path}: unknown key(s) in [rdmd]: {', '.join(bad)}")
    rd["lams"] = [float(v) for v in rd.get("lams", [])]
    rd["runs"] = {float(k): _resolve(base, v) for k, v in rd.get("runs", {}).items()}
    if "config" in rd:
        rd["config"] = _resolve(base, rd["config"])
    if "model" in rd:
        both = sorted(set(raw.get("rdmd", {})) & {"runs", "config", "steps"})
        if both:
            raise RdmdError(f"{path}: [rdmd] model (one conditioned generator for every "
                            f"lambda) excludes {', '.join(both)}")
        rd["model"] = _resolve(base, rd["model"])
    grids: dict[str, dict[str, Any]] = {}
    for m in BASELINES:
        if m not in raw:
            continue
        g = dict(raw[m])
        bad = sorted(set(g) - GRID_KEYS[m])
        if bad:
            raise RdmdError(f"{path}: unknown key(s) in [{m}]: {', '.join(bad)}; known: "
                            f"{', '.join(sorted(GRID_KEYS[m]))}")
        for k, v in g.items():
            if k not in GRID_FIXED and not isinstance(v, list):
                g[k] = [v]
        if "domain_classifier" in g:
            g["domain_classifier"] = _resolve(base, g["domain_classifier"])
        grids[m] = g
    tc = raw.get("target_class")
    return SweepConfig(
        source=_resolve(base, raw["source"]), target=_resolve(base, raw["target"]),
        teacher=_resolve(base, raw["teacher"]), classifier=_resolve(base, raw.get("classifier")),
        target_class=None if tc is None else int(tc), n_eval=int(raw.get("n_eval", 0)),
        seed=int(raw.get("seed", 0)), chunk=int(raw.get("chunk", 100)),
        recommended_lam=(None if raw.get("recommended_lam") is None
                         else float(raw["recommended_lam"])),
        fig5_images=int(raw.get("fig5_images", 8)), rdmd=rd, grids=grids)


def config_dict(cfg: SweepConfig) -> dict[str, Any]:
    """``cfg`` as JSON-ready values (``sweep_config.json``)."""
    d = dict(cfg.__dict__)
    d["rdmd"] = {**cfg.rdmd, "runs": {str(k): v for k, v in cfg.rdmd.get("runs", {}).items()}}
    return d


# -- the plan -----------------------------------------------------------------------------

@dataclass
class Entry:
    """One configuration of one method; ``key`` names its files."""

    method: str
    params: dict[str, Any]

    @property
    def key(self) -> str:
        parts = [f"{k}{v:g}" if isinstance(v, float) else f"{k}{v}"
                 for k, v in sorted(self.params.items())]
        return "_".join([self.method, *parts]).replace("/", "-")


def plan(cfg: SweepConfig) -> list[Entry]:
    """All entries of the sweep, RDMD first, each baseline's grid as a product of its lists."""
    entries = [Entry("rdmd", {"lam": lam}) for lam in cfg.rdmd.get("lams", [])]
    for m in BASELINES:
        g = cfg.grids.get(m)
        if not g:
            continue
        axes = {k: v for k, v in g.items() if k not in GRID_FIXED}
        for values in itertools.product(*axes.values()):
            entries.append(Entry(m, dict(zip(axes, values, strict=True))))
    if not entries:
        raise RdmdError("the sweep has no configurations: give [rdmd] lams and/or a baseline "
                        "grid")
    return entries

"""``rdmd sweep``: RDMD over a ``lambda`` grid and each baseline over its grid, scored on the
same held-out sources with the same metrics, in one table (paper Fig. 4-5, App. C.3).

Every configuration becomes one *entry*: a JSON file of its metrics (and a small safetensors
of its first outputs, for the Fig. 5 grid) under ``<out>/entries/``, written atomically when
it is complete. A sweep that is interrupted and started again skips finished entries, and
RDMD runs that were half-trained resume from their checkpoints. The table
(``table.csv``/``table.json``/``table.md``), the front analysis (``summary.json``) and the
plots are rebuilt from the entries at the end of every run.

The config is a TOML/JSON file; unknown keys are errors. See ``configs/cmnist_sweep.toml``.
"""

from __future__ import annotations

import csv
import io
import itertools
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from rdmd.checkpoint import (
    atomic_save_tensors,
    atomic_write_json,
    atomic_write_text,
    load_tensors,
    read_json,
)
from rdmd.errors import RdmdError

BASELINES = ("sdedit", "ilvr", "egsde")
METHOD_ORDER = ("rdmd", *BASELINES)
TOP_KEYS = {"source", "target", "teacher", "classifier", "target_class", "n_eval", "seed",
            "chunk", "recommended_lam", "fig5_images", "rdmd", *BASELINES}
RDMD_KEYS = {"lams", "config", "runs", "steps"}
GRID_KEYS = {
    "sdedit": {"sigma_start", "n_steps"},
    "ilvr": {"down", "n_steps"},
    "egsde": {"sigma_start", "down", "lam_s", "lam_i", "n_steps", "domain_classifier",
              "classifier_steps"},
}
GRID_FIXED = {"domain_classifier", "classifier_steps"}  # egsde keys that are not grid axes


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


# -- running ------------------------------------------------------------------------------

def _rdmd_run(cfg: SweepConfig, out: Path, lam: float, progress: bool) -> Path:
    """The run directory of RDMD at ``lam``: a given one, else trained (or resumed) here."""
    given = cfg.rdmd.get("runs", {}).get(lam)
    if given:
        if not (Path(given) / "model.json").is_file():
            raise RdmdError(f"[rdmd] runs: {given} holds no finished model (model.json)")
        return Path(given)
    run = out / "rdmd" / f"lam{lam:g}"
    if (run / "model.json").is_file():
        return run
    from rdmd.config import DistillConfig, build_config, read_config_file
    from rdmd.training import distill

    layers: list[dict[str, Any]] = []
    if cfg.rdmd.get("config"):
        layers.append(read_config_file(cfg.rdmd["config"]))
    extra = {"lam": lam, "classifier": cfg.classifier, "target_class": cfg.target_class,
             "steps": cfg.rdmd.get("steps")}
    layers.append({k: v for k, v in extra.items() if v is not None})
    resume = (run / "checkpoints").is_dir() and any((run / "checkpoints").iterdir())
    dcfg = None if resume else build_config(DistillConfig, *layers)
    print(f"sweep: {'resuming' if resume else 'training'} RDMD lambda={lam:g} in {run}")
    return distill(cfg.source, cfg.teacher, run, dcfg, target=cfg.target, resume=resume,
                   progress=progress)


def _domain_classifier(cfg: SweepConfig, out: Path, src: Any, tgt: Any,
                       progress: bool) -> str:
    """EGSDE's classifier: the configured directory if it holds one, else trained there (or
    in ``<out>/domain_classifier``) on the sweep's own source and target training images."""
    from rdmd.baselines.domain_classifier import META, fit_and_save

    g = cfg.grids["egsde"]
    d = Path(g.get("domain_classifier") or out / "domain_classifier")
    if not (d / META).is_file():
        steps = int(g.get("classifier_steps", 1500))
        print(f"sweep: training EGSDE's domain classifier ({steps} steps) in {d}")
        fit_and_save(src, tgt, d, steps, progress=progress)
    return str(d)


def _throughput(tr: Any, x: torch.Tensor, seed: int, chunk: int) -> tuple[torch.Tensor, float]:
    """Outputs for ``x`` and images per second of that call, after a one-batch warm-up."""
    tr.translate(x[:min(len(x), 4)], seed, chunk)
    t0 = time.perf_counter()
    y = tr.translate(x, seed, chunk)
    return y, len(x) / max(time.perf_counter() - t0, 1e-9)


def run_sweep(config: str | Path | SweepConfig, out_dir: str | Path,
              only: list[str] | None = None, progress: bool = True) -> dict[str, Any]:
    """Run (or finish) the sweep; returns the summary. See the module docstring."""
    from rdmd.data import load_domain
    from rdmd.evaluation import image_translation_metrics
    from rdmd.translators import make_translator

    cfg = config if isinstance(config, SweepConfig) else load_sweep_config(config)
    out = Path(out_dir)
    entries = plan(cfg)
    if only:
        bad = sorted(set(only) - set(METHOD_ORDER))
        if bad:
            raise RdmdError(f"--only: unknown method(s) {', '.join(bad)}")
        entries = [e for e in entries if e.method in only]
    src, tgt = load_domain(cfg.source), load_domain(cfg.target)
    if src.kind != "image":
        raise RdmdError("rdmd sweep compares image translators (the baselines filter pixels)")
    # checked before anything is written: a refused sweep leaves no folder behind
    (out / "entries").mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / "sweep_config.json", _config_dict(cfg))
    x = src.test[:cfg.n_eval] if cfg.n_eval > 0 else src.test
    todo = [e for e in entries if not (out / "entries" / f"{e.key}.json").is_file()]
    print(f"sweep: {len(entries)} configurations, {len(entries) - len(todo)} done, "
          f"{len(todo)} to run, on {len(x)} held-out {cfg.source} images")
    domain_clf = _domain_classifier(cfg, out, src, tgt, progress) if any(
        e.method == "egsde" for e in todo) else None
    for i, e in enumerate(todo, 1):
        if e.method == "rdmd":
            run = _rdmd_run(cfg, out, e.params["lam"], progress)
            tr = make_translator("rdmd", run)
        else:
            extra = {"domain_classifier": domain_clf} if e.method == "egsde" else {}
            tr = make_translator(e.method, cfg.teacher, **e.params, **extra)
        t0 = time.perf_counter()
        y, ips = _throughput(tr, x, cfg.seed, cfg.chunk)
        y = y.clamp(-1, 1)
        res = image_translation_metrics(x, y, tgt, cfg.classifier, cfg.target_class)
        row = {"method": e.method, "key": e.key, **{f"p_{k}": v for k, v in e.params.items()},
               "nfe": tr.nfe, "aux_evals": tr.aux_evals, "images_per_s": ips,
               "threads": torch.get_num_threads(), "device": str(tr.device),
               "seconds": time.perf_counter() - t0, **res}
        if e.method == "rdmd":
            row["run"] = str(run)
        atomic_save_tensors(out / "entries" / f"{e.key}.safetensors",
                            {"outputs": y[:cfg.fig5_images].contiguous()})
        atomic_write_json(out / "entries" / f"{e.key}.json", row)  # marks the entry done
        print(f"sweep: [{i}/{len(todo)}] {tr.describe()}: l2 {row['l2']:.3f}, "
              + (f"{_fd_name(row)} {row[_fd_name(row)]:.2f}, " if _fd_name(row) else "")
              + f"{ips:.1f} img/s")
    return write_outputs(cfg, out, x)


def _config_dict(cfg: SweepConfig) -> dict[str, Any]:
    d = dict(cfg.__dict__)
    d["rdmd"] = {**cfg.rdmd, "runs": {str(k): v for k, v in cfg.rdmd.get("runs", {}).items()}}
    return d


def _fd_name(row: dict[str, Any]) -> str | None:
    return next((k for k in row if k.startswith("fd_") and not k.endswith("_floor")
                 and k != "fd_n"), None)


# -- table, fronts, plots ----------------------------------------------------------------

def read_entries(out: Path) -> list[dict[str, Any]]:
    rows = [read_json(p) for p in sorted((out / "entries").glob("*.json"))]
    rows.sort(key=lambda r: (METHOD_ORDER.index(r["method"]), r["l2"]))
    return rows


def pareto_front(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """The (L2, FD) points no other point beats in both (lower is better in each)."""
    front: list[tuple[float, float]] = []
    for p in sorted(points):
        if not front or p[1] < front[-1][1]:
            front.append(p)
    return front


def best_fd_within(front: list[tuple[float, float]], l2: float) -> float:
    """The lowest FD a method reaches at transport cost at most ``l2`` (inf if none)."""
    return min((f for c, f in front if c <= l2), default=math.inf)


def dominance(rows: list[dict[str, Any]], fd_key: str) -> dict[str, Any]:
    """Where RDMD's front lies below each baseline's, as L2 intervals.

    A front is a staircase: at an L2 budget ``l``, the best FD among a method's configurations
    with L2 <= ``l``. RDMD is below a baseline at ``l`` when its best FD there is strictly
    lower. Budgets run over every L2 value in the table, so each interval starts and ends at
    measured configurations.
    """
    fronts = {m: pareto_front([(r["l2"], r[fd_key]) for r in rows if r["method"] == m])
              for m in METHOD_ORDER}
    fronts = {m: f for m, f in fronts.items() if f}
    if "rdmd" not in fronts:
        return {}
    budgets = sorted({r["l2"] for r in rows})
    out: dict[str, Any] = {"fronts": {m: [list(p) for p in f] for m, f in fronts.items()}}
    others = [m for m in fronts if m != "rdmd"]
    for name, group in [*[(m, [m]) for m in others], ("all_baselines", others)]:
        if not group:
            continue
        below = [b for b in budgets if best_fd_within(fronts["rdmd"], b)
                 < min(best_fd_within(fronts[m], b) for m in group)]
        out[f"rdmd_below_{name}"] = _intervals(below, budgets)
    return out


def _intervals(hits: list[float], grid: list[float]) -> list[list[float]]:
    """Runs of consecutive grid values that are all in ``hits``, as [first, last] pairs."""
    runs: list[list[float]] = []
    s, inside = set(hits), False
    for v in grid:
        if v in s:
            if inside:
                runs[-1][1] = v
            else:
                runs.append([v, v])
            inside = True
        else:
            inside = False
    return runs


def _format(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return "" if v is None else str(v)


TABLE_COLUMNS = ["method", "params", "l2", "psnr", "ssim", "FD", "FD_floor",
                 "target_accuracy", "nfe", "aux_evals", "images_per_s"]


def table_rows(rows: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], str | None]:
    fd_key = _fd_name(rows[0]) if rows else None
    out = []
    for r in rows:
        params = " ".join(f"{k[2:]}={_format(v)}" for k, v in r.items() if k.startswith("p_"))
        out.append({"method": r["method"], "params": params, "l2": r["l2"], "psnr": r["psnr"],
                    "ssim": r["ssim"], "FD": r.get(fd_key) if fd_key else None,
                    "FD_floor": r.get(f"{fd_key}_floor") if fd_key else None,
                    "target_accuracy": r.get("target_accuracy"), "nfe": r["nfe"],
                    "aux_evals": r["aux_evals"], "images_per_s": r["images_per_s"]})
    return out, fd_key


def write_outputs(cfg: SweepConfig, out: Path, sources: torch.Tensor | None = None
                  ) -> dict[str, Any]:
    """table.csv/json/md, summary.json and the Fig. 4/5 plots, from the finished entries;
    ``sources`` are the scored inputs (loaded from ``cfg.source`` when not given)."""
    rows = read_entries(out)
    if not rows:
        raise RdmdError(f"{out}: no finished entries yet")
    table, fd_key = table_rows(rows)
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=TABLE_COLUMNS, lineterminator="\n")
    w.writeheader()
    w.writerows({k: _format(v) for k, v in t.items()} for t in table)
    atomic_write_text(out / "table.csv", buf.getvalue())
    atomic_write_json(out / "table.json", {"fd_metric": fd_key, "rows": rows})
    fd_label = fd_key or "FD"
    md = [f"| {' | '.join(c if c != 'FD' else fd_label for c in TABLE_COLUMNS)} |",
          "|" + "---|" * len(TABLE_COLUMNS)]
    md += ["| " + " | ".join(_format(t[c]) for c in TABLE_COLUMNS) + " |" for t in table]
    atomic_write_text(out / "table.md", "\n".join(md) + "\n")
    summary: dict[str, Any] = {"n_entries": len(rows), "fd_metric": fd_key}
    if fd_key:
        summary.update(dominance(rows, fd_key))
        from rdmd.plots import plot_tradeoff

        plot_tradeoff(out / "fig4_tradeoff.png", rows, fd_key)
        fig5 = fig5_selection(rows, fd_key, cfg.recommended_lam)
        if fig5:
            summary["fig5"] = [{"method": r["method"], "key": r["key"], "l2": r["l2"],
                                fd_key: r[fd_key]} for r in fig5]
            _plot_fig5(cfg, out, fig5, fd_key, sources)
    atomic_write_json(out / "summary.json", summary)
    return summary


def fig5_selection(rows: list[dict[str, Any]], fd_key: str, lam: float | None
                   ) -> list[dict[str, Any]]:
    """RDMD at ``lam`` (or its lowest-FD entry), then each baseline's entry closest in FD."""
    ours = [r for r in rows if r["method"] == "rdmd"]
    if not ours:
        return []
    pick = next((r for r in ours if lam is not None and math.isclose(r["p_lam"], lam)), None)
    pick = pick or min(ours, key=lambda r: r[fd_key])
    sel = [pick]
    for m in BASELINES:
        cand = [r for r in rows if r["method"] == m]
        if cand:
            sel.append(min(cand, key=lambda r: abs(r[fd_key] - pick[fd_key])))
    return sel


def _plot_fig5(cfg: SweepConfig, out: Path, sel: list[dict[str, Any]], fd_key: str,
               sources: torch.Tensor | None) -> None:
    from rdmd.plots import plot_method_grid

    if sources is None:
        from rdmd.data import load_domain

        sources = load_domain(cfg.source).test
    x = sources[:cfg.fig5_images]
    outputs = [load_tensors(out / "entries" / f"{r['key']}.safetensors")["outputs"]
               for r in sel]
    labels = [f"{r['method']}\n" + " ".join(f"{k[2:]}={_format(v)}" for k, v in r.items()
                                           if k.startswith("p_") and k != "p_n_steps")
              + f"\nL2 {r['l2']:.2f}, FD {r[fd_key]:.1f}" for r in sel]
    plot_method_grid(out / "fig5_grid.png", x, outputs, labels)

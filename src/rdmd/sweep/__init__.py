"""``rdmd sweep``: RDMD over a ``lambda`` grid and each baseline over its grid, scored on the
same held-out sources with the same metrics, in one table (paper Fig. 4-5, App. C.3).

Every configuration becomes one *entry*: a JSON file of its metrics (and a small safetensors
of its first outputs, for the Fig. 5 grid) under ``<out>/entries/``, written atomically when
it is complete. A sweep that is interrupted and started again skips finished entries, and
RDMD runs that were half-trained resume from their checkpoints. The table
(``table.csv``/``table.json``/``table.md``), the front analysis (``summary.json``) and the
plots are rebuilt from the entries at the end of every run.

The config is a TOML/JSON file; unknown keys are errors. See ``configs/cmnist_sweep.toml``.

The package: :mod:`~rdmd.sweep.config` (the config and its plan), :mod:`~rdmd.sweep.run`
(running it), :mod:`~rdmd.sweep.fronts` (front analysis), :mod:`~rdmd.sweep.report`
(tables, summary, Fig. 5 selection; drawing is in :mod:`rdmd.plots`).
"""

from rdmd.sweep.config import (
    BASELINES,
    METHOD_ORDER,
    Entry,
    SweepConfig,
    load_sweep_config,
    plan,
)
from rdmd.sweep.fronts import best_fd_within, dominance, pareto_front
from rdmd.sweep.report import fig5_selection, read_entries, table_rows, write_outputs
from rdmd.sweep.run import load_data, run_sweep

__all__ = ["BASELINES", "METHOD_ORDER", "Entry", "SweepConfig", "best_fd_within", "dominance",
           "fig5_selection", "load_data", "load_sweep_config", "pareto_front", "plan",
           "read_entries", "run_sweep", "table_rows", "write_outputs"]

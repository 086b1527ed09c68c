"""Metrics: optimal transport for vectors (``ot``), faithfulness and quality for images
(``image``, imported on demand because it pulls in torchmetrics)."""

from rdmd.metrics.density import (
    curve_distance,
    known_measures,
    known_measures_with_truth,
)
from rdmd.metrics.ot import (
    barycentric_ot_map,
    crossing_fraction,
    floor_pairs_from_pool,
    gaussian_ot_map,
    mixture_modes,
    mode_outlier_share,
    mode_width,
    ot_gap,
    relative_gaussian_ot_gap,
    transport_cost,
    vector_metrics,
    w2_many,
    w2_noise_floor,
    w2_squared,
    w2_stable,
)

__all__ = [
    "barycentric_ot_map",
    "crossing_fraction",
    "floor_pairs_from_pool",
    "gaussian_ot_map",
    "mixture_modes",
    "mode_outlier_share",
    "mode_width",
    "ot_gap",
    "relative_gaussian_ot_gap",
    "transport_cost",
    "vector_metrics",
    "w2_noise_floor",
    "w2_many",
    "w2_squared",
    "w2_stable",
    "curve_distance",
    "known_measures",
    "known_measures_with_truth",
]

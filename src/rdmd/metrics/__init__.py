"""Metrics: optimal-transport quantities for vector data (images come later)."""

from rdmd.metrics.ot import (
    barycentric_ot_map,
    crossing_fraction,
    floor_pairs_from_pool,
    gaussian_ot_map,
    ot_gap,
    relative_gaussian_ot_gap,
    transport_cost,
    vector_metrics,
    w2_noise_floor,
    w2_squared,
)

__all__ = [
    "barycentric_ot_map",
    "crossing_fraction",
    "floor_pairs_from_pool",
    "gaussian_ot_map",
    "ot_gap",
    "relative_gaussian_ot_gap",
    "transport_cost",
    "vector_metrics",
    "w2_noise_floor",
    "w2_squared",
]

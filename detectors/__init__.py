"""Pure online drift detectors, calibration, window sketches and distribution distances.

Nothing here does I/O (a test enforces it): the shells in ``driftline.stream`` feed values in and
persist the states these objects declare with ``to_state()`` / ``to_bytes()``.
"""

from __future__ import annotations

from .adwin import ADWIN
from .base import DriftDetector
from .calibration import dependence_factor, long_run_variance, robust_center_scale
from .distances import (
    jensen_shannon_from_counts,
    ks_from_histograms,
    ks_from_kll,
    psi_from_counts,
    quantile_bin_edges,
    wasserstein_from_histograms,
    wasserstein_from_kll,
)
from .page_hinkley import PageHinkley
from .psi import PSI, population_stability_index
from .sketches import (
    CategoricalWindowState,
    NumericWindowState,
    categorical_add,
    categorical_initialize,
    categorical_merge,
    categorical_result,
    numeric_add,
    numeric_deterministic_result,
    numeric_initialize,
    numeric_merge,
    numeric_result,
)

__all__ = [
    "ADWIN",
    "PSI",
    "CategoricalWindowState",
    "DriftDetector",
    "NumericWindowState",
    "PageHinkley",
    "categorical_add",
    "categorical_initialize",
    "categorical_merge",
    "categorical_result",
    "dependence_factor",
    "jensen_shannon_from_counts",
    "ks_from_histograms",
    "ks_from_kll",
    "long_run_variance",
    "numeric_add",
    "numeric_deterministic_result",
    "numeric_initialize",
    "numeric_merge",
    "numeric_result",
    "population_stability_index",
    "psi_from_counts",
    "quantile_bin_edges",
    "robust_center_scale",
    "wasserstein_from_histograms",
    "wasserstein_from_kll",
]

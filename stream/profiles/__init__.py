"""Reference profiles from training data (Parquet) and where they are stored."""

from __future__ import annotations

from .training import columns_from_table, load_profile, profile_path, run_baseline

__all__ = ["columns_from_table", "load_profile", "profile_path", "run_baseline"]

"""Reference profiles: read from training data (Parquet), stored as files or in the database.

A profile is built by :func:`driftline.stream.monitor.build_reference_profile` (pure); this package
does its I/O: :func:`read_training_data` reads the training file, :class:`ProfileDirectory` keeps
profiles as JSON files (``driftline.sinks.SqlProfileStore`` keeps them in the database).
"""

from __future__ import annotations

from .directory import ProfileDirectory
from .training_data import TrainingData, columns_from_table, event_times_from_table, read_training_data

__all__ = ["ProfileDirectory", "TrainingData", "columns_from_table", "event_times_from_table", "read_training_data"]

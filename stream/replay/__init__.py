"""``driftline replay``: the one partition runner over a range of a model's topic, or an archive file.

A replay into the live run (``--run live``) starts from the live run's own kept state and computes
what it computed, so it changes nothing; a replay under a run label of its own writes beside the
live rows, for analysts to compare (README, "Replay and backfill").
"""

from __future__ import annotations

from .replay import LIVE_RUN, Bound, ReplayError, ReplayOutcome, ReplaySettings, run_replay

__all__ = ["LIVE_RUN", "Bound", "ReplayError", "ReplayOutcome", "ReplaySettings", "run_replay"]

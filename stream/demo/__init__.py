"""The embedded demo: a synthetic stream with known drift episodes, monitored in-process, and its HTML report."""

from __future__ import annotations

from .demo import DemoSummary, demo_episodes, run_demo
from .generator import Episode, SyntheticStream, records_from_columns
from .report import write_report

__all__ = ["DemoSummary", "Episode", "SyntheticStream", "demo_episodes", "records_from_columns", "run_demo", "write_report"]

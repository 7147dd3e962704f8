"""The shells that drive the monitor engine over encoded messages."""

from __future__ import annotations

from .embedded import EmbeddedRunner, RunTotals, format_alert
from .processor import InboundMessage, PartitionProcessor, ProcessorCounts

__all__ = ["EmbeddedRunner", "InboundMessage", "PartitionProcessor", "ProcessorCounts", "RunTotals", "format_alert"]

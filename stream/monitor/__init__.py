"""The monitor core: a batch of decoded events in; window aggregates, detector signals and alerts out.

Pure computation — no Kafka, no database, no clock, no files — so every shell drives it unchanged and
the same events in the same order always give the same results.
"""

from __future__ import annotations

from .alerts import AlertGate, make_alert
from .challenger import Challenger, ChallengerVerdict, compare_on_window, default_classifier
from .concept import ConceptDriftDetector
from .config import EngineConfig
from .engine import MonitorEngine
from .estimation import ConfidenceEstimator, EstimatedPerformance
from .label_join import JoinedLabels, LabelJoin
from .performance import PerformanceMetrics, PerformanceWindows
from .profile import FeatureProfile, ProfileError, ReferenceProfile, build_reference_profile
from .results import (
    Alert,
    BatchResult,
    Checkpoint,
    DetectorSignal,
    FeatureWindow,
    ModelWindow,
    SchemaChangeRecord,
    alert_identifier,
    describe_alert,
    iso_time,
    to_canonical_json,
)
from .windows import WindowAssignment, WindowClock

__all__ = [
    "Alert",
    "AlertGate",
    "BatchResult",
    "Challenger",
    "ChallengerVerdict",
    "Checkpoint",
    "ConceptDriftDetector",
    "ConfidenceEstimator",
    "DetectorSignal",
    "EngineConfig",
    "EstimatedPerformance",
    "FeatureProfile",
    "FeatureWindow",
    "JoinedLabels",
    "LabelJoin",
    "ModelWindow",
    "MonitorEngine",
    "PerformanceMetrics",
    "PerformanceWindows",
    "ProfileError",
    "ReferenceProfile",
    "SchemaChangeRecord",
    "WindowAssignment",
    "WindowClock",
    "alert_identifier",
    "build_reference_profile",
    "compare_on_window",
    "default_classifier",
    "describe_alert",
    "iso_time",
    "make_alert",
    "to_canonical_json",
]

"""Alert construction: ids derived from the natural key."""

from __future__ import annotations

from driftline.stream.monitor.alerts import make_alert
from driftline.stream.monitor.results import AlertKind


def test_alerts_that_differ_only_in_subject_have_different_ids() -> None:
    # Two writer schemas first seen in the same batch: the same model, kind and time, two alerts.
    common = dict(model="m", model_version="v1", kind=AlertKind.SCHEMA_CHANGE, feature=None, detector="schema_diff",
                  severity="critical", window_start_ms=None, event_time_ms=5, score=1.0, threshold=0.0, message="")
    first, second = make_alert(**common, subject="0x01"), make_alert(**common, subject="0x02")  # type: ignore[arg-type]
    assert first.alert_id != second.alert_id
    assert make_alert(**common, subject="0x01").alert_id == first.alert_id  # type: ignore[arg-type]

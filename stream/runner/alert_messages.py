"""The messages of the alerts topic: each incident's state changes, Avro (``schemas/alert.avsc``), keyed by alert id.

A runner publishes the alerts and resolutions of a checkpoint before it commits that checkpoint
(``CheckpointedRunner``), like the window partials: a message is never lost, and a runner restarted
from its checkpoint may publish one again — the same alert id and state, for consumers to recognise.
The key is the alert id, so an incident's firing and resolved messages land on one partition, in
that order.

Examples
--------
>>> from driftline.stream.monitor.results import AlertResolution, BatchResult
>>> from driftline.stream.monitor.alerts import make_alert
>>> from driftline.stream.monitor.results import AlertKind
>>> alert = make_alert(model="churn", model_version="v1", kind=AlertKind.MEAN_SHIFT, feature="age", detector="page_hinkley",
...                    severity="warning", window_start_ms=None, event_time_ms=60_000, score=9.5, threshold=5.0, message="age moved")
>>> messages = list(alert_messages(BatchResult(alerts=[alert], resolved_alerts=[AlertResolution(alert, 960_000, 60_000, 4)])))
>>> [decode_alert_message(value)["state"] for _, value in messages], messages[0][0] == alert.alert_id.encode()
(['firing', 'resolved'], True)
>>> decode_alert_message(messages[1][1])["signals"]
4
"""

from __future__ import annotations

import functools
import io
from collections.abc import Iterator
from typing import Any

import fastavro

from driftline.schemas import avro_types
from driftline.schemas.contract_catalog import Catalog
from driftline.schemas.wire import SINGLE_OBJECT_MARKER, encode_single_object
from driftline.stream.monitor.results import Alert, AlertResolution, BatchResult

__all__ = ["ALERT_SCHEMA", "alert_messages", "decode_alert_message"]

ALERT_SCHEMA = "driftline.events.Alert"


@functools.cache
def _schema() -> Any:
    return Catalog.load().event_schema(ALERT_SCHEMA)


def _record(alert: Alert, resolution: AlertResolution | None) -> dict[str, Any]:
    return {
        "alert_id": alert.alert_id, "model_name": alert.model, "model_version": alert.model_version, "kind": alert.kind,
        "feature": alert.feature, "detector": alert.detector, "severity": alert.severity, "window_start": alert.window_start_ms,
        "event_time": alert.event_time_ms, "score": alert.score, "threshold": alert.threshold, "message": alert.message,
        "state": "firing" if resolution is None else "resolved",
        "resolved_at": None if resolution is None else resolution.resolved_at_ms,
        "last_signal_at": None if resolution is None else resolution.last_signal_ms,
        "signals": None if resolution is None else resolution.signals,
    }


def alert_messages(result: BatchResult) -> Iterator[tuple[bytes, bytes]]:
    """(key, value) of each state change in ``result``: its alerts (firing), then its resolutions."""
    for alert in result.alerts:
        yield alert.alert_id.encode(), encode_single_object(_record(alert, None), _schema())
    for resolution in result.resolved_alerts:
        yield resolution.alert_id.encode(), encode_single_object(_record(resolution.alert, resolution), _schema())


def decode_alert_message(value: bytes) -> dict[str, Any]:
    """The record of one alerts-topic message (Avro single-object encoding of ``schemas/alert.avsc``).

    Raises
    ------
    ValueError
        Not a single-object-encoded alert of this schema.
    """
    if value[:10] != _header():
        raise ValueError("not an alert message of driftline.events.Alert (single-object encoding)")
    record = fastavro.schemaless_reader(io.BytesIO(value[10:]), _schema(), None)
    assert isinstance(record, dict)
    return record


@functools.cache
def _header() -> bytes:
    """The single-object header of the alert schema: the marker and the schema's fingerprint."""
    return SINGLE_OBJECT_MARKER + avro_types.fingerprint_bytes(avro_types.fingerprint(avro_types.canonical_form(_schema())))

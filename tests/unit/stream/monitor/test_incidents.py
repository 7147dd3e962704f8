"""Incidents: an alert when a problem starts, its resolution when it has been quiet long enough, one per (kind, field)."""

from __future__ import annotations

import json

import pytest

from driftline.schemas.codec import Codec, encode_single_object
from driftline.schemas.contract import Contract
from driftline.schemas.contract_catalog import Catalog
from driftline.stream.demo.generator import Episode, SyntheticStream
from driftline.stream.monitor.alerts import AlertGate, make_alert
from driftline.stream.monitor.engine import EngineConfig, MonitorEngine
from driftline.stream.monitor.profile import ReferenceProfile
from driftline.stream.monitor.results import Alert, AlertKind, BatchResult, to_canonical_json

MINUTE = 60_000


def _alert(name: str) -> Alert:
    """An alert whose message names it (its id comes from its natural key, the same for these)."""
    alert = make_alert(model="m", model_version="v1", kind=AlertKind.DISTRIBUTION_DRIFT, feature="annual_income", detector="psi",
                       severity="warning", window_start_ms=None, event_time_ms=0, score=float("inf"), threshold=0.1, message=name)
    return Alert(**{**alert.__dict__, "alert_id": name})


def test_a_flapping_signal_stays_one_incident_that_resolves_after_the_quiet_period() -> None:
    gate = AlertGate(quiet_ms=10 * MINUTE)
    key = ("annual_income", "distribution_drift")
    # Drifted windows every few minutes for half an hour (a score flapping around its threshold): one incident.
    opened = [gate.admit(key, t * MINUTE) for t in (0, 3, 7, 12, 20, 29)]
    assert opened == [True, False, False, False, False, False]
    gate.attach(key, _alert("a1"))
    gate.resolve_before({"windows": 38 * MINUTE})  # 9 minutes after the last signal: still open
    assert gate.take_resolutions() == [] and gate.open_alerts() == [("a1", "distribution_drift", "annual_income")]
    # A restart in the middle of the incident continues it.
    restored = AlertGate(quiet_ms=10 * MINUTE)
    restored.restore(json.loads(json.dumps(gate.to_state())))
    restored.resolve_before({"windows": 40 * MINUTE})
    [resolution] = restored.take_resolutions()
    assert (resolution.alert_id, resolution.resolved_at_ms, resolution.last_signal_ms, resolution.signals) == (
        "a1", 39 * MINUTE, 29 * MINUTE, 6)
    assert restored.open_alerts() == []
    # The next signal opens a new incident; one that comes after the quiet period resolves the old one by itself.
    assert restored.admit(key, 45 * MINUTE) is True
    restored.attach(key, _alert("a2"))
    assert restored.admit(key, 70 * MINUTE) is True
    assert [(r.alert_id, r.resolved_at_ms) for r in restored.take_resolutions()] == [("a2", 55 * MINUTE)]
    # Other fields and kinds are incidents of their own.
    assert restored.admit(("loan_amount", "distribution_drift"), 70 * MINUTE) is True
    assert restored.admit(("annual_income", "mean_shift"), 70 * MINUTE) is True
    with pytest.raises(ValueError, match="quiet_ms"):
        AlertGate(-1)


def test_an_alert_raised_after_its_incident_resolved_is_resolved_when_raised() -> None:
    # A score alert waits for its window to close before it is raised: its incident may be over by then.
    gate = AlertGate(quiet_ms=MINUTE)
    key = ("prediction_score", "score_change")
    assert gate.admit(key, 0) is True
    gate.resolve_before({"events": 5 * MINUTE})
    assert gate.take_resolutions() == []  # nothing to resolve yet: no alert
    gate.attach(key, _alert("late"))
    assert [(r.alert_id, r.resolved_at_ms) for r in gate.take_resolutions()] == [("late", MINUTE)]


def test_a_state_of_the_old_format_continues_its_episodes_without_resolving_them() -> None:
    gate = AlertGate(quiet_ms=MINUTE)
    gate.restore([["v1", "age", "mean_shift", 1_000]])  # format 1: (version, field, episode) -> last signal
    assert gate.admit(("age", "mean_shift"), 30_000) is False  # the same episode
    gate.resolve_before({"events": 10 * MINUTE})
    assert gate.take_resolutions() == []  # its alert's id was not kept: nothing to resolve in the table


def _payloads(contract: Contract, n: int, episodes: list[Episode]) -> list[bytes]:
    stream = SyntheticStream(contract, seed=5, events_per_second=20)
    columns = stream.columns(n)
    stream.apply_episodes(columns, episodes)
    return [encode_single_object(r, contract.schema_json) for r in stream.records(columns, stream.event_times(n))]


def test_a_drift_episode_opens_one_incident_per_kind_and_field_and_resolves_after_it_ends(
    contract: Contract, profile: ReferenceProfile, catalog: Catalog
) -> None:
    n = 36_000  # 20 events/s: half an hour; the income shifts from minute 10 to minute 20
    payloads = _payloads(contract, n, [Episode("mean_shift", n // 3, 2 * n // 3, "annual_income", size=2.0)])
    config = EngineConfig(window_length_ms=MINUTE, allowed_lateness_ms=10_000, alert_cooldown_ms=4 * MINUTE)

    def run(batch: int) -> BatchResult:
        engine = MonitorEngine(contract, profile, config)
        codec = Codec(catalog)
        total = BatchResult()
        for start in range(0, n, batch):
            total.extend(engine.process(codec.decode_batch(payloads[start:start + batch], model=contract.model)))
        return total

    total = run(1_000)
    income = [a for a in total.alerts if a.feature == "annual_income"]
    kinds = [a.kind for a in income]
    assert len(kinds) == len(set(kinds)) and {"mean_shift", "distribution_drift"} <= set(kinds), kinds  # one per kind
    resolved = {r.alert_id: r for r in total.resolved_alerts}
    first_ms = min(a.event_time_ms for a in total.alerts)
    episode_end_ms = first_ms + 20 * MINUTE  # (the stream starts within the first window)
    for alert in income:
        resolution = resolved[alert.alert_id]  # every incident of the episode resolved ...
        assert resolution.resolved_at_ms == resolution.last_signal_ms + 4 * MINUTE
        assert resolution.last_signal_ms <= episode_end_ms + 2 * MINUTE  # ... after its last signal near the episode's end
        assert resolution.signals >= 2
    assert total.open_alerts == []  # nothing open at the end: the stream was quiet for ten minutes
    # Whatever the batching, the same incidents open and resolve at the same event times (reported in
    # the batch the watermark passed them in, so possibly in another order).
    other = run(7_919)
    assert to_canonical_json(other.alerts) == to_canonical_json(total.alerts)
    in_order = [sorted(result.resolved_alerts, key=lambda r: r.alert_id) for result in (other, total)]
    assert to_canonical_json(in_order[0]) == to_canonical_json(in_order[1])

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

from driftline import schemas
from driftline.schemas.codec import Codec, encode_single_object
from driftline.schemas.contract import Contract
from driftline.schemas.contract_catalog import Catalog
from driftline.stream.demo.generator import Episode, SyntheticStream
from driftline.stream.monitor.budget import AlarmBudget
from driftline.stream.monitor.engine import EngineConfig, MonitorEngine
from driftline.stream.monitor.profile import ReferenceProfile
from driftline.stream.monitor.results import Alert, BatchResult, to_canonical_json

CONFIG = EngineConfig(window_length_ms=60_000, allowed_lateness_ms=60_000)


def _payloads(contract: Contract, n: int, episodes: list[Episode], seed: int = 5) -> list[bytes]:
    stream = SyntheticStream(contract, seed=seed)
    columns = stream.columns(n)
    stream.apply_episodes(columns, episodes)
    times = stream.event_times(n)
    records = stream.records(columns, times)
    return [encode_single_object(r, contract.schema_json) for r in records]


def _run(catalog: Catalog, contract: Contract, profile: ReferenceProfile, payloads: list[bytes], cuts: list[int]) -> BatchResult:
    codec = Codec(catalog)
    engine = MonitorEngine(contract, profile, CONFIG)
    total = BatchResult()
    for part in np.split(np.arange(len(payloads)), cuts):
        if len(part):
            total.extend(engine.process(codec.decode_batch([payloads[i] for i in part], model=contract.model)))
    total.extend(engine.flush())
    return total


def _in_time_order(alerts: list[Alert]) -> list[Alert]:
    return sorted(alerts, key=lambda alert: (alert.event_time_ms, alert.alert_id))


@pytest.fixture(scope="module")
def drifting_payloads(contract: Contract) -> list[bytes]:
    return _payloads(contract, 30_000, [Episode("mean_shift", 12_000, 30_000, "annual_income", size=1.0)])


def test_same_events_in_same_order_give_identical_results_whatever_the_batching(
    catalog: Catalog, contract: Contract, profile: ReferenceProfile, drifting_payloads: list[bytes]
) -> None:
    rng = np.random.default_rng(1)
    one = _run(catalog, contract, profile, drifting_payloads, [])
    other = _run(catalog, contract, profile, drifting_payloads, sorted(rng.choice(30_000, size=57, replace=False).tolist()))
    assert one.alerts, "the drifting stream must raise alerts for the comparison to mean anything"
    assert one.signals and one.feature_windows
    for part in ("feature_windows", "model_windows", "signals", "schema_changes"):
        assert to_canonical_json(getattr(one, part)) == to_canonical_json(getattr(other, part)), part
    # Alerts are emitted when the engine learns them: a detector's at its event, a window's when the
    # window closes, which depends on where a batch ends. So a window alert and a later signal's alert
    # may come out in either order; the alerts themselves (ids, times, contents) must be identical.
    assert to_canonical_json(_in_time_order(one.alerts)) == to_canonical_json(_in_time_order(other.alerts))
    assert (one.accepted, one.rejected_by_reason, one.late_events) == (other.accepted, other.rejected_by_reason, other.late_events)


def test_mean_shift_is_detected_after_it_starts_and_not_before(
    catalog: Catalog, contract: Contract, profile: ReferenceProfile, drifting_payloads: list[bytes]
) -> None:
    result = _run(catalog, contract, profile, drifting_payloads, [])
    start_ms = SyntheticStream(contract, seed=5).event_times(30_000)[12_000]
    income = [a for a in result.alerts if a.feature == "annual_income"]
    assert {a.kind for a in income} >= {"mean_shift", "distribution_drift"}
    assert all(a.event_time_ms >= start_ms - 60_000 for a in result.alerts), [a.message for a in result.alerts]


def test_counts_reconcile_and_every_window_is_accounted_for(
    catalog: Catalog, contract: Contract, profile: ReferenceProfile, drifting_payloads: list[bytes]
) -> None:
    garbage = [b"", b"\x00\x00\x00", b"\xc3\x01" + bytes(8) + b"x", b"not avro at all"]
    payloads = drifting_payloads[:5000] + garbage
    result = _run(catalog, contract, profile, payloads, [1000, 2500])
    assert result.accepted + result.rejected == len(payloads)
    assert result.rejected == len(garbage)
    assert sum(w.events for w in result.model_windows) + result.late_events == 5000
    assert len({w.window_start_ms for w in result.model_windows}) == len(result.model_windows)


def test_late_events_are_counted_not_lost(catalog: Catalog, contract: Contract, profile: ReferenceProfile) -> None:
    stream = SyntheticStream(contract, seed=8)
    n = 6000
    columns = stream.columns(n)
    times = stream.event_times(n)
    times[-10:] = times[0]  # ten events arriving ~10 minutes late: beyond the allowed lateness
    records = stream.records(columns, times)
    payloads = [encode_single_object(r, contract.schema_json) for r in records]
    result = _run(catalog, contract, profile, payloads, [3000])
    assert result.late_events == 10
    assert result.accepted == n
    assert sum(w.events for w in result.model_windows) == n - 10


def test_gap_in_the_stream_raises_a_no_data_alert(catalog: Catalog, contract: Contract, profile: ReferenceProfile) -> None:
    stream = SyntheticStream(contract, seed=9)
    n = 4000
    columns = stream.columns(n)
    times = stream.event_times(n)
    times[2000:] += 30 * 60_000  # the producer stops for half an hour
    payloads = [encode_single_object(r, contract.schema_json) for r in stream.records(columns, times)]
    result = _run(catalog, contract, profile, payloads, [])
    gaps = [a for a in result.alerts if a.kind == "no_data"]
    assert len(gaps) == 1
    assert gaps[0].score >= 29


def test_events_of_an_incompatible_writer_count_as_rejected_in_their_windows(
    catalog: Catalog, contract: Contract, profile: ReferenceProfile
) -> None:
    renamed = json.loads((Path(schemas.__file__).parent / "catalog" / "credit_risk_v2_renamed.avsc").read_text())
    stream = SyntheticStream(contract, seed=9)
    n = 4_000  # 10 events/s: a window is 600 events; events 720-2,799 are the renamed producer's
    payloads = []
    for position, record in enumerate(stream.records(stream.columns(n), stream.event_times(n))):
        if 650 <= position < 674:
            record["employment_type"] = None  # 24 of the second window's 120 readable events: 20 %, the budget is 5 %
        if 720 <= position < 2_800:
            record["dti_ratio"] = record.pop("debt_to_income")
            payloads.append(encode_single_object(record, renamed))
        else:
            payloads.append(encode_single_object(record, contract.schema_json))
    result = _run(catalog, contract, profile, payloads, [])
    assert to_canonical_json(_run(catalog, contract, profile, payloads, [7, 1_500, 2_799, 3_001])) == to_canonical_json(result)
    starts = sorted(w.window_start_ms for w in result.model_windows)
    assert starts == list(range(starts[0], starts[-1] + 60_000, 60_000))  # every minute has its window: no gap
    assert sum(w.events for w in result.model_windows) == n
    assert sum(dict(w.rejected_by_reason).get("missing_field", 0) for w in result.model_windows) == 2_080
    assert sum(w.accepted == 0 and w.rejected == w.events > 0 for w in result.model_windows) >= 2
    # One schema change, one incident of rejections, no window said to be empty — and the second window's
    # nulls are a share of its 120 events whose values were read (of all its 600 they would be on budget).
    alerts = sorted((a.kind, a.feature or "", a.detector) for a in result.alerts)
    assert alerts == [("data_quality", "", "rejections"), ("data_quality", "employment_type", "null_fraction"),
                      ("schema_change", "", "schema_diff")], alerts
    (nulls,) = [a for a in result.alerts if a.detector == "null_fraction"]
    assert 0.15 < nulls.score < 0.3  # about 24 of 120 (the events' jitter moves a few across the edges); of all 600: 0.04


def test_a_window_state_from_before_the_unread_status_restores(catalog: Catalog, contract: Contract, profile: ReferenceProfile) -> None:
    payloads = _payloads(contract, 2_000, [])
    codec = Codec(catalog)
    engine = MonitorEngine(contract, profile, CONFIG)
    engine.process(codec.decode_batch(payloads[:1_000], model=contract.model))
    state = json.loads(json.dumps(engine.to_state()))
    for window in state["open_windows"]:
        for field in window["features"].values():
            assert field["status_counts"][-1] == 0
            field["status_counts"] = field["status_counts"][:-1]  # as an engine without UNREAD wrote them
    restored = MonitorEngine.from_state(state, contract, profile, CONFIG)
    rest = codec.decode_batch(payloads[1_000:], model=contract.model)
    expected = BatchResult()
    expected.extend(engine.process(rest))
    expected.extend(engine.flush())
    continued = BatchResult()
    continued.extend(restored.process(rest))
    continued.extend(restored.flush())
    assert to_canonical_json(continued) == to_canonical_json(expected)


def test_engine_refuses_a_batch_of_another_model(catalog: Catalog, contract: Contract, profile: ReferenceProfile) -> None:
    engine = MonitorEngine(contract, profile, CONFIG)
    batch = Codec(catalog).decode_batch([], model=contract.model)
    batch = dataclasses.replace(batch, model="other_model")
    with pytest.raises(ValueError, match="batch"):
        engine.process(batch)


def test_engine_config_validates_its_parameters() -> None:
    with pytest.raises(ValueError, match="window_length_ms"):
        EngineConfig(window_length_ms=0)
    with pytest.raises(ValueError, match="max_unseen_fraction"):
        EngineConfig(max_unseen_fraction=1.5)


def test_checkpoint_and_restore_continue_exactly(
    catalog: Catalog, contract: Contract, profile: ReferenceProfile, drifting_payloads: list[bytes]
) -> None:
    import json

    uninterrupted = _run(catalog, contract, profile, drifting_payloads, [9_000, 17_000])
    codec = Codec(catalog)
    engine = MonitorEngine(contract, profile, CONFIG)
    resumed = BatchResult()
    resumed.extend(engine.process(codec.decode_batch(drifting_payloads[:9_000], model=contract.model)))
    resumed.extend(engine.process(codec.decode_batch(drifting_payloads[9_000:17_000], model=contract.model)))
    saved = json.loads(json.dumps(engine.to_state()))  # what a shell would store
    assert saved["open_windows"], "the checkpoint must carry open windows for the test to mean anything"
    restored = MonitorEngine.from_state(saved, contract, profile, CONFIG)
    resumed.extend(restored.process(codec.decode_batch(drifting_payloads[17_000:], model=contract.model)))
    resumed.extend(restored.flush())
    for part in ("feature_windows", "model_windows", "signals", "alerts"):
        assert to_canonical_json(getattr(resumed, part)) == to_canonical_json(getattr(uninterrupted, part)), part
    with pytest.raises(ValueError, match="state"):
        MonitorEngine.from_state({**saved, "format": 99}, contract, profile, CONFIG)


def test_a_flood_of_model_versions_keeps_the_state_and_the_metrics_bounded(catalog: Catalog, contract: Contract, profile: ReferenceProfile) -> None:
    """10,000 versions, 5 events each, arriving one after the other: the live detector tracks stay at the bound."""
    from prometheus_client import CollectorRegistry

    from driftline.sinks import DriftlineMetrics

    config = dataclasses.replace(CONFIG, max_live_versions=8)
    engine = MonitorEngine(contract, profile, config)
    registry = CollectorRegistry()
    metrics = DriftlineMetrics(registry, models={contract.model: [f.name for f in contract.fields]})
    decoded = Codec(catalog).decode_batch(_payloads(contract, 2_000, []), model=contract.model)
    span_ms = int(decoded.event_time_ms.max() - decoded.event_time_ms.min()) + 1
    state_sizes, series = [], []
    for round_ in range(25):  # 25 batches of 400 versions
        batch = dataclasses.replace(
            decoded,
            model_version=np.asarray([f"build-{round_ * 400 + i // 5}" for i in range(len(decoded.rows))], dtype=object),
            event_time_ms=decoded.event_time_ms + round_ * span_ms,
        )
        metrics.observe(engine.process(batch), now_s=0.0, model=contract.model)
        assert len(engine._tracks) <= 8
        state_sizes.append(len(to_canonical_json(engine.to_state())))
        series.append(sum(len(family.samples) for family in registry.collect()))
    assert engine._tracks.dropped == 10_000 - 8
    # No growth with the versions: the second half's largest state is no larger than the first half's
    # (what varies is the open windows: each version's windows close once the watermark passes them).
    assert max(state_sizes[13:]) <= 1.05 * max(state_sizes[:13]), state_sizes
    assert len(set(series[1:])) == 1  # no label per version: not one series more


def test_a_doubled_variance_raises_a_spread_change_before_any_mean_shift(catalog: Catalog, contract: Contract, profile: ReferenceProfile) -> None:
    n, start, feature = 30_000, 12_000, "credit_score"
    stream = SyntheticStream(contract, seed=5)
    columns = stream.columns(n)
    values = np.asarray(columns[feature], dtype=np.float64)
    mean = float(np.nanmean(values[:start]))
    values[start:] = mean + (values[start:] - mean) * np.sqrt(2.0)  # same mean, twice the variance
    columns[feature] = values
    times = stream.event_times(n)
    payloads = [encode_single_object(r, contract.schema_json) for r in stream.records(columns, times)]
    result = _run(catalog, contract, profile, payloads, [5_000, 17_000])
    spread = [a for a in result.alerts if a.kind == "spread_change"]
    assert spread, [a.message for a in result.alerts]
    assert {a.feature for a in spread} == {feature}, [a.message for a in spread]
    assert all(a.event_time_ms >= times[start] for a in spread)
    assert spread[0].event_time_ms <= times[start + 2_000], "found within 2,000 events of the change"
    # The wider distribution is cut by the contract's range and the detectors' Huber clip, so its
    # accepted mean may move a little later on; the spread test must be what sees it first.
    shifts = [a.event_time_ms for a in result.alerts if a.kind == "mean_shift" and a.feature == feature]
    assert all(t > spread[0].event_time_ms for t in shifts)


def test_a_flipped_correlation_raises_a_joint_drift_naming_the_feature_while_the_per_feature_tests_stay_quiet(
    catalog: Catalog, contract: Contract, profile: ReferenceProfile
) -> None:
    n, start, feature = 30_000, 12_000, "credit_score"
    assert feature in profile.joint_fields and profile.joint is not None
    stream = SyntheticStream(contract, seed=6)
    columns = stream.columns(n)
    values = np.asarray(columns[feature], dtype=np.float64)
    # credit_score = round(690 + 55 (0.7 z + 0.71 e)) shares z with income and the other features.
    # Mirrored about 690 its marginal is unchanged (a symmetric Gaussian), its correlations flip.
    values[start:] = 2 * 690 - values[start:]
    columns[feature] = values
    times = stream.event_times(n)
    payloads = [encode_single_object(r, contract.schema_json) for r in stream.records(columns, times)]
    result = _run(catalog, contract, profile, payloads, [7_000, 19_000])
    joint = [a for a in result.alerts if a.kind == "joint_drift"]
    assert joint, [a.message for a in result.alerts]
    assert joint[0].feature is None and times[start] <= joint[0].event_time_ms <= times[start + 1_000]
    assert f"most changed: {feature} (" in joint[0].message, joint[0].message
    # The marginals did not move: no per-feature alert on the mirrored field.
    assert not [a.message for a in result.alerts if a.feature == feature]
    # The budget counts the joint test: 61 tests for the example contract (37 streaming detectors, the
    # joint test, 23 window checks).
    assert AlarmBudget.for_fields(contract.monitored_fields, 1.0).tests == 61


def test_a_score_alert_names_the_inputs_that_moved_most_in_its_window_whatever_the_batching(
    catalog: Catalog, contract: Contract, profile: ReferenceProfile
) -> None:
    n, start = 30_000, 12_000
    stream = SyntheticStream(contract, seed=9)
    columns = stream.columns(n)
    columns["annual_income"][start:] *= 1.5  # the input that moved
    score = np.asarray(columns["prediction_score"], dtype=np.float64)
    score[start:] = np.clip(score[start:] + 0.05, 0.0, 1.0)  # and the score with it
    times = stream.event_times(n)
    payloads = [encode_single_object(r, contract.schema_json) for r in stream.records(columns, times)]
    one = _run(catalog, contract, profile, payloads, [])
    scored = [a for a in one.alerts if a.feature == "prediction_score"]
    assert scored, [a.message for a in one.alerts]
    streaming = [a for a in scored if a.detector in ("page_hinkley", "adwin", "scale_shift")]
    assert streaming, [a.message for a in scored]
    for alert in scored:
        assert "inputs that moved most in the window: annual_income (PSI" in alert.message, alert.message
    rng = np.random.default_rng(3)
    cuts = sorted(rng.choice(n, size=31, replace=False).tolist())
    other = _run(catalog, contract, profile, payloads, cuts)
    assert to_canonical_json(_in_time_order(other.alerts)) == to_canonical_json(_in_time_order(one.alerts))
    # Held alerts survive a checkpoint: restored at every cut, the engine raises the same alerts.
    codec, engine, restored = Codec(catalog), MonitorEngine(contract, profile, CONFIG), BatchResult()
    for part in np.split(np.arange(n), cuts):
        engine = MonitorEngine.from_state(json.loads(json.dumps(engine.to_state())), contract, profile, CONFIG)
        restored.extend(engine.process(codec.decode_batch([payloads[i] for i in part], model=contract.model)))
    restored.extend(engine.flush())
    assert to_canonical_json(_in_time_order(restored.alerts)) == to_canonical_json(_in_time_order(one.alerts))

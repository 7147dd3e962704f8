"""False-alarm budgets in time: the arithmetic, the event rate, and the engine re-targeting at the same events whatever the batching."""

from __future__ import annotations

import math

import numpy as np
import pytest

from driftline.schemas.codec import Codec, encode_single_object
from driftline.schemas.contract import Contract
from driftline.schemas.contract_catalog import Catalog
from driftline.stream.demo.generator import START_MS, Episode, SyntheticStream
from driftline.stream.monitor.budget import (
    FALLBACK_EVENTS_PER_SECOND,
    HOUR_MS,
    SECONDS_PER_MONTH,
    AlarmBudget,
    EventRate,
    reference_event_rate,
)
from driftline.stream.monitor.engine import EngineConfig, MonitorEngine
from driftline.stream.monitor.profile import ReferenceProfile, build_reference_profile
from driftline.stream.monitor.results import BatchResult, to_canonical_json


def test_the_budget_is_shared_by_every_detector_and_window_check(contract: Contract) -> None:
    budget = AlarmBudget.for_fields(contract.monitored_fields, 2.0)
    numeric = [f for f in contract.monitored_fields if f.kind != "categorical"]
    # PH + spread per numeric field, ADWIN on the score, the joint test, a window check per field.
    assert budget.tests == 2 * len(numeric) + 1 + 1 + len(contract.monitored_fields)
    # 10 events/s: each test may raise 2 / tests alerts in 30 days of 10 events/s.
    assert budget.per_event_rate(10.0) == pytest.approx(2.0 / budget.tests / (10.0 * SECONDS_PER_MONTH))
    # A hundred times the traffic: a hundred times smaller a rate per event, the same alerts per month.
    assert budget.per_event_rate(1000.0) == pytest.approx(budget.per_event_rate(10.0) / 100.0)
    # Windows: 43,200 one-minute windows in 30 days.
    assert budget.per_window_rate(60_000) == pytest.approx(2.0 / budget.tests / 43_200)


def test_bad_budgets_are_refused(contract: Contract) -> None:
    with pytest.raises(ValueError, match="false_alarms_per_month"):
        AlarmBudget(0.0, 10)
    with pytest.raises(ValueError, match="events_per_second"):
        AlarmBudget(1.0, 10).per_event_rate(0.0)
    with pytest.raises(ValueError, match="false_alarms_per_month"):
        EngineConfig(false_alarms_per_month=-1.0)
    with pytest.raises(ValueError, match="events_per_second"):
        EngineConfig(events_per_second=float("inf"))


def test_the_reference_rate_comes_from_its_timestamps_and_ignores_stray_ones(contract: Contract) -> None:
    times = SyntheticStream(contract, events_per_second=25.0).event_times(20_000)
    assert reference_event_rate(times) == pytest.approx(25.0, rel=0.01)
    times[:50] = 0  # a default 1970 date on a few rows
    times[-50:] += 10 * 365 * 86_400_000  # and a typo ten years ahead on a few others
    assert reference_event_rate(times) == pytest.approx(25.0, rel=0.03)
    assert reference_event_rate(None) is None
    assert reference_event_rate(np.full(1000, START_MS)) is None  # all at one instant: no rate


def _hours(counts: list[int], start_hour: int = 1000) -> np.ndarray:
    """Event times: ``counts[i]`` events spread evenly over hour ``start_hour + i``."""
    return np.concatenate([
        (start_hour + i) * HOUR_MS + np.linspace(0, HOUR_MS - 1, num=count).astype(np.int64) for i, count in enumerate(counts)
    ])


def test_the_rate_follows_a_busier_stream_at_the_first_event_of_the_next_hour() -> None:
    rate = EventRate(floor=1.0)
    times = _hours([36_000, 36_000, 10])  # 10 events/s for two hours, then a trickle
    changes = rate.advance(times)
    assert [c.position for c in changes] == [36_000]  # the first event of the second hour
    assert changes[0].events_per_second == pytest.approx(10.0)
    assert rate.events_per_second == pytest.approx(10.0)  # the quiet third hour does not lower it


def test_a_spike_tightens_for_a_day_and_a_quiet_stream_never_goes_below_the_floor() -> None:
    rate = EventRate(floor=2.0)
    quiet, spike = 3_600, 360_000  # 1 and 100 events/s
    times = _hours([quiet] * 3 + [spike] + [quiet] * 26)
    changes = rate.advance(times)
    assert [round(c.events_per_second) for c in changes] == [100, 2]
    assert changes[0].position == 3 * quiet + spike  # once the spike's hour is complete
    # 24 hours later it leaves the horizon: the rate falls back — to the floor, not to the quiet 1 event/s.
    assert changes[1].position == changes[0].position + 24 * quiet
    assert rate.events_per_second == 2.0


def test_a_partition_scales_the_rate_it_sees_to_the_models() -> None:
    rate = EventRate(floor=1.0, partitions=4)
    rate.advance(_hours([9_000, 9_000, 1]))  # 2.5 events/s on this partition
    assert rate.events_per_second == pytest.approx(10.0)


def test_any_batching_gives_the_same_rate_changes_and_the_state_round_trips() -> None:
    times = _hours([3_600, 36_000, 3_600, 72_000, 10])
    rng = np.random.default_rng(4)
    times = times + rng.integers(-120_000, 120_000, size=times.size)  # out-of-order events across hour edges
    whole = [(c.position, c.events_per_second) for c in EventRate(1.0).advance(times)]
    assert len(whole) >= 2
    for trial in range(5):
        cuts = np.sort(rng.choice(times.size, size=40, replace=False))
        rate, found, done = EventRate(1.0), [], 0
        for part in np.split(np.arange(times.size), cuts):
            if trial % 2:  # every other trial continues from a checkpoint at each cut
                restored = EventRate(1.0)
                restored.restore(rate.to_state())
                rate = restored
            found += [(done + c.position, c.events_per_second) for c in rate.advance(times[part])]
            done += part.size
        assert found == whole


# ---------------------------------------------------------------------------------------------- engine

EVENTS_PER_SECOND = 20.0
N = 160_000  # 8,000 s of event time: two hour edges


@pytest.fixture(scope="module")
def timed_profile(contract: Contract) -> ReferenceProfile:
    stream = SyntheticStream(contract, seed=3, events_per_second=2.0)  # the reference is a 1-in-10 sample
    return build_reference_profile(
        contract, stream.columns(30_000, seed_offset=1), model_version="v1", event_times_ms=stream.event_times(30_000)
    )


@pytest.fixture(scope="module")
def busy_payloads(contract: Contract) -> list[bytes]:
    stream = SyntheticStream(contract, seed=5, events_per_second=EVENTS_PER_SECOND)
    columns = stream.columns(N)
    stream.apply_episodes(columns, [Episode("mean_shift", 60_000, N, "annual_income", size=0.5)])
    return [encode_single_object(r, contract.schema_json) for r in stream.records(columns, stream.event_times(N))]


def _run(catalog: Catalog, contract: Contract, profile: ReferenceProfile, payloads: list[bytes], cuts: list[int],
         restart: bool = False) -> tuple[BatchResult, MonitorEngine]:
    codec = Codec(catalog)
    engine = MonitorEngine(contract, profile)
    total = BatchResult()
    for part in np.split(np.arange(len(payloads)), cuts):
        if restart:  # continue from a checkpoint at every cut
            engine = MonitorEngine.from_state(engine.to_state(), contract, profile)
        total.extend(engine.process(codec.decode_batch([payloads[i] for i in part], model=contract.model)))
    total.extend(engine.flush())
    return total, engine


def test_the_engine_starts_at_the_references_rate_and_tightens_when_the_stream_is_busier(
    catalog: Catalog, contract: Contract, timed_profile: ReferenceProfile, busy_payloads: list[bytes]
) -> None:
    assert timed_profile.events_per_second == pytest.approx(2.0, rel=0.01)
    engine = MonitorEngine(contract, timed_profile)
    budget = AlarmBudget.for_fields(contract.monitored_fields, EngineConfig().false_alarms_per_month)
    start = engine._tracks.false_alarm_rate
    assert start == pytest.approx(budget.per_event_rate(2.0))
    _, engine = _run(catalog, contract, timed_profile, busy_payloads, [])
    assert engine.events_per_second == pytest.approx(EVENTS_PER_SECOND, rel=0.02)
    assert engine._tracks.false_alarm_rate == pytest.approx(start / 10.0, rel=0.02)
    # The profile's detectors were re-targeted: the thresholds rose.
    track = engine._tracks.track("v1")
    fresh = MonitorEngine(contract, timed_profile)._tracks.track("v1")
    assert track.page_hinkley["annual_income"].threshold > fresh.page_hinkley["annual_income"].threshold


def test_rate_changes_land_on_the_same_events_whatever_the_batching_and_across_checkpoints(
    catalog: Catalog, contract: Contract, timed_profile: ReferenceProfile, busy_payloads: list[bytes]
) -> None:
    one, _ = _run(catalog, contract, timed_profile, busy_payloads, [])
    assert one.signals, "the drifting stream must raise signals for the comparison to mean anything"
    rng = np.random.default_rng(8)
    cuts = sorted(rng.choice(N, size=23, replace=False).tolist())
    for restart in (False, True):
        other, _ = _run(catalog, contract, timed_profile, busy_payloads, cuts, restart=restart)
        assert to_canonical_json(other.signals) == to_canonical_json(one.signals)
        key = lambda alert: (alert.event_time_ms, alert.alert_id)  # noqa: E731 - order of emission may differ (see test_engine)
        assert to_canonical_json(sorted(other.alerts, key=key)) == to_canonical_json(sorted(one.alerts, key=key))


def test_a_profile_without_timestamps_assumes_a_busy_model_and_an_explicit_rate_wins(
    contract: Contract, profile: ReferenceProfile
) -> None:
    assert profile.events_per_second is None
    assert MonitorEngine(contract, profile).events_per_second == FALLBACK_EVENTS_PER_SECOND
    assert MonitorEngine(contract, profile, EngineConfig(events_per_second=5.0)).events_per_second == 5.0


def test_a_checkpoint_of_the_per_event_era_is_read_and_its_detectors_restart_from_the_profile(
    catalog: Catalog, contract: Contract, timed_profile: ReferenceProfile, busy_payloads: list[bytes]
) -> None:
    engine = MonitorEngine(contract, timed_profile)
    engine.process(Codec(catalog).decode_batch(busy_payloads[:5_000], model=contract.model))
    state = engine.to_state()
    old = {key: value for key, value in state.items() if key != "rate"} | {"format": 3}
    restored = MonitorEngine.from_state(old, contract, timed_profile)
    assert restored.open_windows == engine.open_windows
    assert restored._tracks.to_state() == {}  # they start again, aimed at the budget, on the next event
    assert math.isclose(restored.events_per_second, 2.0, rel_tol=0.01)

"""A daily cycle in the reference: no alert storm on a clean stream, and a shift on top of the cycle found about as fast as without one."""

from __future__ import annotations

import numpy as np
import pytest

from driftline.schemas.contract import Contract
from driftline.stream.demo.generator import SyntheticStream
from driftline.stream.monitor.engine import EngineConfig, MonitorEngine
from driftline.stream.monitor.profile import ReferenceProfile, build_reference_profile
from driftline.stream.monitor.results import Alert

FIELD = "credit_score"
SIGMA = 55.0 * float(np.hypot(0.7, 0.71))  # the generator's credit_score: 690 + 55 (0.7 z + 0.71 e)
AMPLITUDE = 0.3 * SIGMA  # a daily cycle of ±0.3 sigma, as in the issue
CONFIG = EngineConfig(window_length_ms=300_000)  # 300 events per window at 1 event/s: the window checks run
RATE = 1.0


def _with_cycle(columns: dict[str, np.ndarray], times: np.ndarray, amplitude: float) -> dict[str, np.ndarray]:
    phase = 2 * np.pi * (times / 3_600_000.0) / 24.0
    columns[FIELD] = np.round(columns[FIELD] + amplitude * np.sin(phase))
    return columns


def _profile(contract: Contract, amplitude: float, seasonality: str = "auto") -> ReferenceProfile:
    stream = SyntheticStream(contract, seed=31, events_per_second=RATE)
    n = 3 * 86_400  # three days
    times = stream.event_times(n)
    columns = _with_cycle(stream.columns(n, seed_offset=1), times, amplitude)
    return build_reference_profile(contract, columns, model_version="v1", event_times_ms=times, seasonality=seasonality)


@pytest.fixture(scope="module")
def cyclic_profile(contract: Contract) -> ReferenceProfile:
    return _profile(contract, AMPLITUDE)


def _alerts(contract: Contract, profile: ReferenceProfile, n: int, *, seed: int, amplitude: float, shift_at: int | None = None,
            offset: int = 0) -> tuple[list[Alert], np.ndarray]:
    stream = SyntheticStream(contract, seed=seed, events_per_second=RATE)
    engine = MonitorEngine(contract, profile, CONFIG)
    alerts: list[Alert] = []
    all_times = []
    for start in range(0, n, 20_000):
        size = min(20_000, n - start)
        times = stream.event_times(size, offset=offset + start)
        columns = _with_cycle(stream.columns(size, offset=offset + start), times, amplitude)
        if shift_at is not None:
            shifted = np.arange(start, start + size) >= shift_at
            columns[FIELD] = columns[FIELD] + np.where(shifted, 0.5 * SIGMA, 0.0)
        alerts += engine.process(stream.decoded_batch(columns, times, offset=offset + start)).alerts
        all_times.append(times)
    alerts += engine.flush().alerts
    return alerts, np.concatenate(all_times)


def test_the_reference_cycle_is_found_on_the_field_that_has_one(cyclic_profile: ReferenceProfile) -> None:
    cycle = cyclic_profile.features[FIELD].seasonal_cycle
    assert cycle is not None and cycle.period == "daily"
    assert max(cycle.offsets) == pytest.approx(AMPLITUDE, rel=0.1)
    assert len(cyclic_profile.features[FIELD].seasonal_counts) == 24
    others = [name for name, f in cyclic_profile.features.items() if f.cycle is not None and name != FIELD]
    assert not others, others


def test_a_clean_stream_with_the_references_cycle_raises_no_storm(contract: Contract, cyclic_profile: ReferenceProfile) -> None:
    n = 2 * 86_400  # two days
    alerts, _ = _alerts(contract, cyclic_profile, n, seed=41, amplitude=AMPLITUDE)
    # Budget 1 a month: two days allow 0.07 false alerts for the whole model.
    assert not [a.message for a in alerts if a.feature == FIELD]
    assert len(alerts) <= 2, [a.message for a in alerts]
    # Without the cycle in the profile the same stream is a storm: the test above can fail.
    flat = _profile(contract, AMPLITUDE, seasonality="none")
    storm, _ = _alerts(contract, flat, n, seed=41, amplitude=AMPLITUDE)
    assert len([a for a in storm if a.feature == FIELD]) >= 5, len(storm)


def test_a_half_sigma_shift_on_top_of_the_cycle_is_found_about_as_fast_as_without_a_cycle(
    contract: Contract, cyclic_profile: ReferenceProfile
) -> None:
    plain = _profile(contract, 0.0)
    assert plain.features[FIELD].cycle is None
    delays: dict[str, list[float]] = {"cycle": [], "plain": []}
    for trial in range(12):
        offset = trial * 7_919  # shifts start at different hours of the day
        for name, profile, amplitude in (("cycle", cyclic_profile, AMPLITUDE), ("plain", plain, 0.0)):
            alerts, times = _alerts(contract, profile, 4_000, seed=50 + trial, amplitude=amplitude, shift_at=1_000, offset=offset)
            found = sorted(a.event_time_ms for a in alerts if a.feature == FIELD and a.kind == "mean_shift")
            assert found, f"trial {trial}: the shift was missed ({name})"
            delays[name].append((found[0] - times[1_000]) / 1000.0 * RATE)
    cycle, plain_median = float(np.median(delays["cycle"])), float(np.median(delays["plain"]))
    assert min(delays["cycle"]) >= 0, delays  # nothing before the shift
    assert cycle <= 2.0 * plain_median, delays

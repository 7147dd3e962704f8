"""Finding a daily or weekly cycle in a reference, and only where there is one."""

from __future__ import annotations

import numpy as np
import pytest

from driftline.detectors.seasonal import SeasonalCycle, find_cycle

HOUR = 3_600_000


def _times(days: float, per_hour: int) -> np.ndarray:
    return (np.arange(int(days * 24 * per_hour)) * (HOUR / per_hour)).astype(np.int64)


def _ar1(n: int, phi: float, rng: np.random.Generator) -> np.ndarray:
    noise = rng.normal(size=n) * np.sqrt(1 - phi * phi)
    out = np.empty(n)
    out[0] = noise[0]
    for i in range(1, n):
        out[i] = phi * out[i - 1] + noise[i]
    return out


def test_a_daily_cycle_is_found_and_removed() -> None:
    times = _times(4, 120)
    rng = np.random.default_rng(1)
    cycle_values = 0.3 * np.cos(2 * np.pi * (times / HOUR) / 24)
    cycle = find_cycle(cycle_values + rng.standard_t(4, size=times.size), times)
    assert cycle is not None and cycle.period == "daily"
    assert np.corrcoef(cycle.offsets, cycle_values[: 24 * 120 : 120])[0, 1] > 0.95
    # Shuffled rows are put back in time order first: the same cycle.
    order = rng.permutation(times.size)
    again = find_cycle((cycle_values + rng.standard_t(4, size=times.size))[order], times[order])
    assert again is not None and again.period == "daily"


@pytest.mark.parametrize("seed", range(6))
def test_no_cycle_is_found_in_iid_or_autocorrelated_noise(seed: int) -> None:
    """p < 1e-6 and an effect of 5 % of sigma: stationary noise, even persistent, never passes (6 of 6 seeds each)."""
    rng = np.random.default_rng(seed)
    times = _times(15, 60)
    assert find_cycle(rng.normal(size=times.size), times) is None
    assert find_cycle(_ar1(times.size, 0.9, rng), times) is None


def test_a_tiny_cycle_is_ignored_however_significant() -> None:
    times = _times(8, 600)  # plenty of data: a 0.02-sigma cycle is significant, and too small to matter
    rng = np.random.default_rng(3)
    values = 0.02 * np.sin(2 * np.pi * (times / HOUR) / 24) + rng.normal(size=times.size)
    assert find_cycle(values, times) is None
    assert find_cycle(values, times, "daily") is not None  # asked for, it is fitted anyway


def test_a_weekend_effect_is_a_weekly_cycle() -> None:
    times = _times(21, 30)
    rng = np.random.default_rng(4)
    weekend = ((times // (24 * HOUR)) % 7) >= 5
    cycle = find_cycle(0.4 * weekend + rng.normal(size=times.size), times)
    assert cycle is not None and cycle.period == "weekly"
    # A purely daily cycle over three weeks stays daily (the weekly bins explain nothing more).
    daily = find_cycle(0.4 * np.sin(2 * np.pi * (times / HOUR) / 24) + rng.normal(size=times.size), times)
    assert daily is not None and daily.period == "daily"


def test_short_references_and_bad_input() -> None:
    times = _times(1.5, 60)
    values = np.random.default_rng(5).normal(size=times.size)
    assert find_cycle(values, times) is None  # auto: too short to tell, so no cycle
    with pytest.raises(ValueError, match="spanning 2 whole periods"):
        find_cycle(values, times, "daily")
    with pytest.raises(ValueError, match="period"):
        find_cycle(values, times, "hourly")
    with pytest.raises(ValueError, match="one length"):
        find_cycle(values[:-1], times)
    with pytest.raises(ValueError, match="24 finite offsets"):
        SeasonalCycle("daily", (0.0,) * 23)


def test_a_cycle_round_trips_and_bins_by_utc_hour() -> None:
    cycle = SeasonalCycle("daily", tuple(float(h) for h in range(24)))
    assert SeasonalCycle.from_dict(cycle.to_dict()) == cycle
    times = np.array([0, HOUR - 1, HOUR, 23 * HOUR, 24 * HOUR + 5])
    assert cycle.bin_of(times).tolist() == [0, 0, 1, 23, 0]
    assert cycle.remove(np.full(5, 10.0), times).tolist() == [10.0, 10.0, 9.0, -13.0, 10.0]

from __future__ import annotations

import numpy as np
import pytest

from driftline.stream.monitor.windows import WindowClock


def test_events_are_assigned_to_tumbling_windows_with_floor_semantics() -> None:
    clock = WindowClock(window_length_ms=1000, allowed_lateness_ms=0)
    assignment = clock.assign(np.array([-1, 0, 999, 1000, 2500], dtype=np.int64))
    assert assignment.window_start_ms.tolist() == [-1000, 0, 0, 1000, 2000]


def test_late_is_decided_per_event_against_the_watermark_before_it() -> None:
    clock = WindowClock(window_length_ms=1000, allowed_lateness_ms=500)
    # 3600 moves the watermark to 3100: windows [0,1000), [1000,2000) and [2000,3000) are closed.
    assignment = clock.assign(np.array([100, 3600, 2999, 3000, 1500], dtype=np.int64))
    assert assignment.late.tolist() == [False, False, True, False, True]
    assert clock.watermark_ms == 3100
    assert clock.closable_before() == 3000


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_lateness_does_not_depend_on_batch_boundaries(seed: int) -> None:
    rng = np.random.default_rng(seed)
    times = (np.arange(5000) * 100 + rng.integers(-3000, 3000, size=5000)).astype(np.int64)
    whole = WindowClock(1000, 1500).assign(times).late
    clock = WindowClock(1000, 1500)
    cuts = np.sort(rng.choice(np.arange(1, 5000), size=40, replace=False))
    pieces = [clock.assign(part).late for part in np.split(times, cuts)]
    assert np.array_equal(np.concatenate(pieces), whole)
    assert whole.any() and not whole.all()


def test_window_clock_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="window_length_ms"):
        WindowClock(0, 10)
    with pytest.raises(ValueError, match="allowed_lateness_ms"):
        WindowClock(10, -1)


def test_clock_state_round_trip() -> None:
    clock = WindowClock(1000, 0)
    clock.assign(np.array([5000], dtype=np.int64))
    restored = WindowClock(1000, 0)
    restored.restore(clock.to_state())
    assert restored.watermark_ms == 5000
    assert restored.assign(np.array([3000], dtype=np.int64)).late.tolist() == [True]

"""False-alarm budgets in time: alerts per model per month, turned into per-event and per-window rates.

On-call counts pages per week, not per event. A per-event budget lets false alarms grow with traffic
(at 1,000 events/s a model with a 1e-6 budget per event would page about 86 times a day), so the
user states one figure — false alarms per model per month (``--false-alarms-per-month``, default 1;
a month is 30 days here) — and the engine turns it into what each test needs:

* every test of the model gets an equal share (Bonferroni): the streaming detectors (a Page–Hinkley
  and a spread test on every numeric field, an ADWIN on the score, the joint-drift test over the
  numeric features) and the window checks (one PSI test per monitored field per window) — ``tests``
  below;
* a streaming detector's share per *event* is ``share / (events per month)``, from the model's event
  rate (:class:`EventRate`);
* a window check's share per *window* is ``share / (windows per month)``, from the window length.

The data-quality checks (null, invalid, unseen and rejected fractions) are thresholds the contract
states, not statistical tests, and take no share of the budget.

Where the event rate comes from, and why a traffic spike cannot loosen the thresholds: the floor is
the reference's own rate (its timestamps, stored in the profile; or ``--events-per-second``), and
the live rate is the busiest complete event-time hour among the last 24 (:class:`EventRate`). The
rate used is the larger of the two, so:

* more traffic tightens the thresholds within the hour (a busier model gets a smaller rate per
  event, so its false alarms per month stay within budget);
* less traffic never loosens them below what the reference's rate says, and a spike's hour keeps
  them tight for the next 24 hours rather than letting them relax as soon as it ends;
* a stream with bogus future timestamps only ends up at the floor.
The cost of erring high is a slightly later detection: a CUSUM's threshold grows with the logarithm
of its run length, so a rate 10× too high lengthens a 0.5σ shift's delay by about a tenth.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from driftline.schemas.contract import FieldContract

__all__ = [
    "FALLBACK_EVENTS_PER_SECOND",
    "SECONDS_PER_MONTH",
    "AlarmBudget",
    "EventRate",
    "RateChange",
    "joint_field_names",
    "reference_event_rate",
]

#: A month of the budget: 30 days.
SECONDS_PER_MONTH = 30 * 86_400

#: Event rate assumed for a profile without timestamps and no ``--events-per-second``: high, so the
#: thresholds err on the side of fewer false alarms (see the module docstring for the cost).
FALLBACK_EVENTS_PER_SECOND = 1_000.0

#: The live rate is measured per event-time hour over this many complete hours.
HOUR_MS = 3_600_000
RATE_HORIZON_HOURS = 24

#: A new live rate replaces the current one only when it differs by more than this factor, so that
#: hourly noise does not re-target every detector every hour (thresholds move with the logarithm of
#: the rate: 10 % is ~0.5 % of a threshold).
RATE_HYSTERESIS = 1.1

#: The largest rate per event or per window a budget may give a test (a budget of thousands of
#: alerts a month on a quiet model): beyond it a detector would be close to firing on noise.
MAX_TEST_RATE = 1e-3


@dataclass(frozen=True)
class AlarmBudget:
    """A model's false-alarm budget, shared equally by its ``tests``.

    Parameters
    ----------
    false_alarms_per_month
        False alerts the whole model may raise per 30 days on a stream like its reference.
    tests
        Statistical tests sharing it: streaming detectors plus per-window checks.
    """

    false_alarms_per_month: float
    tests: int

    def __post_init__(self) -> None:
        if not (math.isfinite(self.false_alarms_per_month) and self.false_alarms_per_month > 0.0):
            raise ValueError(f"false_alarms_per_month must be a positive number, got {self.false_alarms_per_month!r}")
        if self.tests < 1:
            raise ValueError(f"tests must be at least 1, got {self.tests}")

    @classmethod
    def for_fields(cls, fields: Sequence[FieldContract], false_alarms_per_month: float) -> AlarmBudget:
        """The budget of a model monitoring ``fields``: 2 detectors per numeric field, 1 ADWIN per score,
        1 joint-drift test (with at least 2 numeric features), 1 window check per field."""
        numeric = [f for f in fields if f.kind != "categorical"]
        streaming = 2 * len(numeric) + sum(1 for f in numeric if f.role == "prediction_score")
        joint = 1 if len(joint_field_names(fields)) >= 2 else 0
        return cls(false_alarms_per_month, streaming + joint + len(fields))

    @property
    def share_per_month(self) -> float:
        """False alarms per month one test may raise."""
        return self.false_alarms_per_month / self.tests

    def per_event_rate(self, events_per_second: float) -> float:
        """A streaming detector's false-alarm rate per event at the model's event rate."""
        if not (math.isfinite(events_per_second) and events_per_second > 0.0):
            raise ValueError(f"events_per_second must be a positive number, got {events_per_second!r}")
        return min(self.share_per_month / (events_per_second * SECONDS_PER_MONTH), MAX_TEST_RATE)

    def per_window_rate(self, window_length_ms: int) -> float:
        """A window check's false-alarm rate per window of ``window_length_ms``."""
        windows_per_month = SECONDS_PER_MONTH * 1000.0 / window_length_ms
        return min(self.share_per_month / windows_per_month, MAX_TEST_RATE)


def joint_field_names(fields: Sequence[FieldContract]) -> tuple[str, ...]:
    """The fields the joint-drift test watches: the numeric features (not the model's outputs)."""
    return tuple(f.name for f in fields if f.kind != "categorical" and f.role == "feature")


def reference_event_rate(event_times_ms: np.ndarray | None) -> float | None:
    """Events per second of a reference sample, from its timestamps (None if they cannot tell).

    The span is taken between the 1st and 99th percentiles of the times, so a few stray timestamps
    (a default 1970 date, a far-future typo) do not stretch or squeeze it. A reference that is a
    sample of the traffic (training sets often are) gives a rate below the live one; the live rate
    then takes over (:class:`EventRate`).
    """
    if event_times_ms is None:
        return None
    times = np.asarray(event_times_ms, dtype=np.float64)
    times = times[np.isfinite(times)]
    if times.size < 100:
        return None
    low, high = np.quantile(times, [0.01, 0.99])
    span_s = (high - low) / 1000.0
    if not span_s > 0.0:
        return None
    return float(0.98 * times.size / span_s)


@dataclass(frozen=True)
class RateChange:
    """From ``position`` (an index into the accepted events of a batch) on, the model's rate is ``events_per_second``."""

    position: int
    events_per_second: float


class EventRate:
    """The event rate a model's thresholds are set for: ``max(floor, busiest of the last 24 complete hours)``.

    Fed the event times of a model's accepted events in arrival order. An hour of event time is
    complete once an event of a later hour has arrived (late events still count in their own hour
    while it lies within the horizon). The rate is re-evaluated at the first event of each new hour —
    a position fixed by the sequence of events, so any batching gives the same thresholds at the
    same events.

    Parameters
    ----------
    floor
        Events per second the thresholds never go below (the reference's rate).
    partitions
        This engine sees one of the model's ``partitions`` (keys spread evenly): the rate it
        measures is multiplied by this to give the model's.
    """

    def __init__(self, floor: float, partitions: int = 1) -> None:
        if not (math.isfinite(floor) and floor > 0.0):
            raise ValueError(f"floor must be a positive number, got {floor!r}")
        if partitions < 1:
            raise ValueError(f"partitions must be at least 1, got {partitions}")
        self.floor = float(floor)
        self.partitions = int(partitions)
        self.events_per_second = self.floor
        self._hour: int | None = None  # the latest event-time hour seen
        self._counts: dict[int, int] = {}  # accepted events per hour, within the horizon

    def advance(self, event_times_ms: np.ndarray) -> list[RateChange]:
        """Count accepted events (their times, in arrival order); return where the rate changes."""
        hours = np.asarray(event_times_ms, dtype=np.int64) // HOUR_MS
        if hours.size == 0:
            return []
        carried = np.iinfo(np.int64).min if self._hour is None else self._hour
        running = np.maximum.accumulate(np.concatenate(([carried], hours)))
        starts = np.flatnonzero(running[1:] > running[:-1])  # first event of each new latest hour
        changes: list[RateChange] = []
        counted = 0
        for start in starts.tolist():
            self._count(hours[counted:start])
            counted = start
            previous, self._hour = self._hour, int(running[start + 1])
            if previous is None:
                continue
            self._forget()
            rate = self._live_rate()
            if rate / self.events_per_second > RATE_HYSTERESIS or self.events_per_second / rate > RATE_HYSTERESIS:
                self.events_per_second = rate
                changes.append(RateChange(start, rate))
        self._count(hours[counted:])
        return changes

    def _count(self, hours: np.ndarray) -> None:
        if not hours.size:
            return
        assert self._hour is not None
        recent = hours[hours > self._hour - RATE_HORIZON_HOURS - 1]
        for hour, count in zip(*np.unique(recent, return_counts=True)):
            self._counts[int(hour)] = self._counts.get(int(hour), 0) + int(count)

    def _forget(self) -> None:
        assert self._hour is not None
        oldest = self._hour - RATE_HORIZON_HOURS
        for hour in [h for h in self._counts if h < oldest]:
            del self._counts[hour]

    def _live_rate(self) -> float:
        assert self._hour is not None
        complete = [count for hour, count in self._counts.items() if hour < self._hour]
        busiest = max(complete, default=0) * self.partitions / (HOUR_MS / 1000.0)
        return max(self.floor, busiest)

    def to_state(self) -> dict[str, Any]:
        return {
            "events_per_second": self.events_per_second,
            "hour": self._hour,
            "counts": [[hour, count] for hour, count in sorted(self._counts.items())],
        }

    def restore(self, state: dict[str, Any]) -> None:
        self._hour = None if state["hour"] is None else int(state["hour"])
        self._counts = {int(hour): int(count) for hour, count in state["counts"]}
        # A floor raised since the checkpoint (a new --events-per-second) applies at once.
        self.events_per_second = max(self.floor, float(state["events_per_second"]))

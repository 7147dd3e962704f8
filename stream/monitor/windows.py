"""Event-time tumbling windows with allowed lateness: pure timestamp arithmetic.

The watermark is the largest event time seen so far minus the allowed lateness. A window
``[start, start + length)`` closes once the watermark reaches its end. An event whose window had
already closed when the event arrived is *late beyond lateness*: it is counted, never silently
dropped, but it no longer changes the closed window.

Lateness is decided **per event**, against the watermark as it stood just before that event, so
the result does not depend on how a stream was cut into batches: a replay with other batch sizes
closes the same windows with the same contents as the live run.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["WindowAssignment", "WindowClock"]


@dataclass(frozen=True)
class WindowAssignment:
    """Where each event of a batch goes."""

    window_start_ms: np.ndarray  # int64, start of each event's window
    late: np.ndarray  # bool, the event's window had closed before the event arrived


class WindowClock:
    """Tracks the watermark of one stream and assigns events to tumbling windows.

    Parameters
    ----------
    window_length_ms
        Length of the tumbling windows, in milliseconds.
    allowed_lateness_ms
        How far behind the largest event time seen an event may arrive and still count in its window.

    Examples
    --------
    >>> import numpy as np
    >>> clock = WindowClock(window_length_ms=1000, allowed_lateness_ms=500)
    >>> a = clock.assign(np.array([100, 2400, 900, 1999], dtype=np.int64))
    >>> a.window_start_ms.tolist(), a.late.tolist()
    ([0, 2000, 0, 1000], [False, False, True, False])
    >>> clock.closable_before()
    1000
    """

    def __init__(self, window_length_ms: int, allowed_lateness_ms: int) -> None:
        if window_length_ms <= 0:
            raise ValueError(f"window_length_ms must be positive, got {window_length_ms}")
        if allowed_lateness_ms < 0:
            raise ValueError(f"allowed_lateness_ms must be >= 0, got {allowed_lateness_ms}")
        self.window_length_ms = int(window_length_ms)
        self.allowed_lateness_ms = int(allowed_lateness_ms)
        self._max_event_time_ms: int | None = None
        self._closed_before_ms: int | None = None  # windows starting before this were closed early (flushed)

    @property
    def watermark_ms(self) -> int | None:
        """Largest event time seen minus the allowed lateness (None before the first event)."""
        if self._max_event_time_ms is None:
            return None
        return self._max_event_time_ms - self.allowed_lateness_ms

    @property
    def max_event_time_ms(self) -> int | None:
        """Largest event time seen so far (None before the first event)."""
        return self._max_event_time_ms

    def window_start(self, event_time_ms: np.ndarray) -> np.ndarray:
        """Start of the tumbling window of each event time (floor division, also for negatives)."""
        return (event_time_ms // self.window_length_ms) * self.window_length_ms

    def assign(self, event_time_ms: np.ndarray) -> WindowAssignment:
        """Assign a batch of event times (in arrival order) and advance the watermark."""
        times = np.asarray(event_time_ms, dtype=np.int64)
        starts = self.window_start(times)
        if times.size == 0:
            return WindowAssignment(starts, np.zeros(0, dtype=bool))
        first = np.iinfo(np.int64).min if self._max_event_time_ms is None else self._max_event_time_ms
        running_max = np.maximum.accumulate(np.concatenate(([first], times)))
        max_before = running_max[:-1]
        # An event is late when its window's end is at or below the watermark that stood before it.
        seen_before = max_before != np.iinfo(np.int64).min
        late = seen_before & (starts + self.window_length_ms <= max_before - self.allowed_lateness_ms)
        if self._closed_before_ms is not None:
            late |= starts < self._closed_before_ms
        self._max_event_time_ms = int(running_max[-1])
        return WindowAssignment(starts, late)

    def closable_before(self) -> int | None:
        """Windows starting strictly before this time are closed (their end is <= watermark)."""
        watermark = self.watermark_ms
        if watermark is None:
            return None
        # window [s, s+L) is closed iff s + L <= watermark  <=>  s <= watermark - L
        return int(((watermark - self.window_length_ms) // self.window_length_ms + 1) * self.window_length_ms)

    def close_before(self, start_ms: int) -> None:
        """Close the windows starting before ``start_ms`` now, ahead of the watermark (end of input, an idle stream).

        Their events that arrive later are late, like those of a window the watermark closed.

        >>> clock = WindowClock(window_length_ms=1000, allowed_lateness_ms=5000)
        >>> _ = clock.assign(np.array([100], dtype=np.int64))
        >>> clock.close_before(1000)
        >>> clock.assign(np.array([900, 1500], dtype=np.int64)).late.tolist()
        [True, False]
        """
        if self._closed_before_ms is None or start_ms > self._closed_before_ms:
            self._closed_before_ms = int(start_ms)

    def to_state(self) -> dict[str, int | None]:
        return {"max_event_time_ms": self._max_event_time_ms, "closed_before_ms": self._closed_before_ms}

    def restore(self, state: dict[str, int | None]) -> None:
        value = state.get("max_event_time_ms")
        self._max_event_time_ms = None if value is None else int(value)
        closed = state.get("closed_before_ms")
        self._closed_before_ms = None if closed is None else int(closed)

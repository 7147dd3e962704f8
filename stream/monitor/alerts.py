"""Turns detector signals and window verdicts into alerts, one per episode.

A drifting feature keeps its detector firing (a calibrated Page–Hinkley re-signals every ~100 events
while a shift persists); on-call wants one alert per episode, not one per signal. A signal opens an
alert only when the same (model version, feature, kind) has been quiet for ``cooldown_ms`` of event
time; otherwise it extends the open episode. The decision depends only on the event times of the
signals, never on batch boundaries or wall-clock time, so replays produce the same alerts.
"""

from __future__ import annotations

from .results import Alert, AlertKind, alert_identifier

__all__ = ["AlertGate", "make_alert"]


class AlertGate:
    """Decides which signals become alerts (episode de-duplication by event time).

    Examples
    --------
    >>> gate = AlertGate(cooldown_ms=1000)
    >>> [gate.admit(("v1", "age", "mean_shift"), t) for t in (0, 500, 1400, 2600)]
    [True, False, False, True]
    """

    def __init__(self, cooldown_ms: int) -> None:
        if cooldown_ms < 0:
            raise ValueError(f"cooldown_ms must be >= 0, got {cooldown_ms}")
        self.cooldown_ms = int(cooldown_ms)
        self._last_signal_ms: dict[tuple[str, ...], int] = {}

    def admit(self, key: tuple[str, ...], event_time_ms: int) -> bool:
        """Record a signal; True when it opens a new episode (so an alert should be raised)."""
        last = self._last_signal_ms.get(key)
        # max() keeps the episode open on out-of-order signals instead of moving its end backwards.
        self._last_signal_ms[key] = event_time_ms if last is None else max(last, event_time_ms)
        return last is None or event_time_ms - last > self.cooldown_ms

    def to_state(self) -> list[list[object]]:
        return [[*key, value] for key, value in sorted(self._last_signal_ms.items())]

    def restore(self, state: list[list[object]]) -> None:
        self._last_signal_ms = {tuple(str(p) for p in row[:-1]): int(row[-1]) for row in state}  # type: ignore[call-overload]


def make_alert(
    *,
    model: str,
    model_version: str,
    kind: AlertKind,
    feature: str | None,
    detector: str,
    severity: str,
    window_start_ms: int | None,
    event_time_ms: int,
    score: float,
    threshold: float,
    message: str,
    subject: str | None = None,
) -> Alert:
    """Build an :class:`Alert` whose id is derived from its natural key.

    ``subject`` tells apart alerts that share every other part of the key — two writer schemas
    first seen in the same batch raise two schema-change alerts, not one.
    """
    parts: tuple[object, ...] = (model, model_version, kind, feature, detector, window_start_ms, event_time_ms)
    alert_id = alert_identifier(*parts) if subject is None else alert_identifier(*parts, subject)
    return Alert(
        alert_id=alert_id,
        model=model,
        model_version=model_version,
        kind=kind.value,
        feature=feature,
        detector=detector,
        severity=severity,
        window_start_ms=window_start_ms,
        event_time_ms=int(event_time_ms),
        score=float(score),
        threshold=float(threshold),
        message=message,
    )

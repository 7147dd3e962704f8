"""The join of late ground-truth labels to the predictions they belong to, in event time.

A label names its prediction by id (``schemas/label.avsc``) and arrives minutes to weeks later, on
its own topic. :class:`LabelJoin` keeps the predictions that may still get a label, joins each label
that arrives within the *horizon* (``0 <= label_time - prediction_time <= horizon_ms``), and counts
every label it cannot join by reason — nothing is dropped silently:

``duplicate``
    A further label for a prediction already labelled (labels waiting for the same prediction are
    taken in arrival order when it comes).
``after_horizon``
    The label came more than ``horizon_ms`` after its prediction.
``before_prediction``
    The label's time is earlier than its prediction's (a clock error upstream).
``unknown_prediction``
    No prediction with that id arrived — decided once the predictions' event time has passed the
    label's by ``grace_ms``: a prediction precedes its label, so it is not coming.
``evicted``
    The join state was full (``capacity`` entries) and this waiting label was the oldest.

A label whose prediction has not arrived yet waits, and is settled by the same rules when the
prediction comes (counted as ``early`` too, which is not a loss) — unless the labels' event time had
already passed that prediction by two horizons when the label arrived, in which case it would not
have found the prediction held had the prediction come first, and it is given up likewise. Predictions are counted too: ``joined``,
``unlabelled`` (no label by ``horizon_ms`` after them, once the labels' event time has passed twice
the horizon), ``duplicate_prediction`` (an id seen before) and ``evicted``.

What each label becomes depends only on the events, not on how the two topics' messages interleave
or are cut into batches, provided the predictions arrive in event-time order up to ``grace_ms``
(tested): a prediction that passed its horizon still joins an in-horizon label that arrives out of
order, and the expiries are decided by event-time watermarks (the largest prediction time and the
largest label time seen), checked at each event. The one exception is a full state: which entries
are evicted then depends on arrival order (still counted).

Memory: one entry per prediction younger than twice the horizon in label time, plus waiting labels,
at most ``capacity`` (about 200 bytes each in memory; size it as events/s × 2 × horizon). Pure
Python and the standard library: the state is a dict and three heaps (expiry orders).
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

# Why a label was not joined, and what became of a prediction: result vocabulary, defined with the
# other result types (the sinks read them from there).
from .results import LABEL_REASONS, PREDICTION_OUTCOMES

__all__ = ["LABEL_REASONS", "PREDICTION_OUTCOMES", "JoinedLabels", "LabelJoin", "ObservationOrder"]

_STATE_FORMAT = 1

# Status of a prediction entry.
_WAITING = 0  # no label yet
_JOINED = 1  # labelled: a further label is a duplicate


@dataclass
class JoinedLabels:
    """Labels joined to their predictions, in the order they were joined (columns of equal length)."""

    prediction_ids: list[str] = field(default_factory=list)
    prediction_times_ms: list[int] = field(default_factory=list)
    scores: list[float] = field(default_factory=list)
    classes: list[int | None] = field(default_factory=list)
    labels: list[float] = field(default_factory=list)
    label_times_ms: list[int] = field(default_factory=list)
    #: The labels' event-time watermark when each label arrived (how far out of order it came).
    label_watermarks_ms: list[int] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.prediction_ids)

    def _append(self, prediction_id: str, prediction: tuple[int, float, int | None], label_time: int, label: float,
                watermark: int) -> None:
        self.prediction_ids.append(prediction_id)
        self.prediction_times_ms.append(prediction[0])
        self.scores.append(prediction[1])
        self.classes.append(prediction[2])
        self.labels.append(label)
        self.label_times_ms.append(label_time)
        self.label_watermarks_ms.append(watermark)

    def rows(self) -> list[tuple[str, int, float, int | None, float, int]]:
        """One tuple per joined label: (prediction id, prediction time, score, class, label, label time)."""
        return list(zip(self.prediction_ids, self.prediction_times_ms, self.scores, self.classes, self.labels,
                        self.label_times_ms, strict=True))


def _positive_ms(value: int, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
        raise ValueError(f"{name} must be a whole number of milliseconds >= 0, got {value!r}")
    return int(value)


class LabelJoin:
    """Joins labels to predictions within a horizon of event time; see the module docstring.

    Parameters
    ----------
    horizon_ms
        Longest time from a prediction to its label that is still joined.
    grace_ms
        How far out of event-time order predictions may arrive: a waiting label is given up as
        ``unknown_prediction`` once a prediction later than its own time by more than this arrived.
    capacity
        Most entries (predictions and waiting labels) held; beyond it the oldest are evicted and counted.

    Examples
    --------
    >>> join = LabelJoin(horizon_ms=86_400_000)
    >>> join.add_predictions(["a", "b"], [1_000, 2_000], [0.9, 0.2], [1, 0])
    >>> joined = join.add_labels(["b", "a", "a", "zz"], [5_000, 6_000, 7_000, 8_000], [0.0, 1.0, 1.0, 1.0])
    >>> [(row[0], row[4]) for row in joined.rows()]
    [('b', 0.0), ('a', 1.0)]
    >>> join.label_counts["duplicate"], join.waiting_labels  # 'zz' waits for its prediction
    (1, 1)
    """

    def __init__(self, horizon_ms: int, *, grace_ms: int = 3_600_000, capacity: int = 2_000_000) -> None:
        self.horizon_ms = _positive_ms(horizon_ms, "horizon_ms")
        self.grace_ms = _positive_ms(grace_ms, "grace_ms")
        if isinstance(capacity, bool) or not isinstance(capacity, (int, np.integer)) or capacity < 1:
            raise ValueError(f"capacity must be a whole number >= 1, got {capacity!r}")
        self.capacity = int(capacity)
        self.prediction_watermark = -math.inf  # largest prediction time seen (ms)
        self.label_watermark = -math.inf  # largest label time seen (ms)
        # prediction id -> [time, score, class, status]
        self._predictions: dict[str, list[Any]] = {}
        # prediction id -> labels waiting for it: [label time, label, label watermark on arrival, sequence]
        self._waiting: dict[str, list[list[Any]]] = {}
        self._waiting_count = 0
        self._sequence = 0  # numbers the waiting labels (their heap entries name them)
        self._prediction_heap: list[tuple[int, str]] = []  # (prediction time, id), lazily cleaned
        self._waiting_heap: list[tuple[int, int, str]] = []  # (label time, sequence, id)
        # Predictions let go while a redelivered copy may still come (within ``grace_ms`` of the
        # predictions' watermark): id -> time, so a copy is a duplicate however far the labels ran ahead.
        self._released: dict[str, int] = {}
        self._released_heap: list[tuple[int, str]] = []
        self.label_counts: dict[str, int] = dict.fromkeys(("joined", "early", *LABEL_REASONS), 0)
        self.prediction_counts: dict[str, int] = dict.fromkeys(PREDICTION_OUTCOMES, 0)
        self.labels_seen = 0
        self.predictions_seen = 0

    # -- sizes ---------------------------------------------------------------------------------------

    @property
    def waiting_labels(self) -> int:
        """Labels held until their prediction arrives (or is given up)."""
        return self._waiting_count

    @property
    def held_predictions(self) -> int:
        """Predictions held: waiting for a label, or labelled and kept to recognise duplicates."""
        return len(self._predictions)

    # -- events --------------------------------------------------------------------------------------

    def add_predictions(
        self,
        prediction_ids: Sequence[str],
        times_ms: Sequence[int] | np.ndarray,
        scores: Sequence[float] | np.ndarray,
        classes: Sequence[float | None] | np.ndarray | None = None,
        joined: JoinedLabels | None = None,
    ) -> JoinedLabels | None:
        """Hold predictions for their labels; returns labels that were waiting for them (``None`` if none).

        ``classes``: each prediction's decided class, ``None`` or NaN where it has none (a decoded
        column can be passed as it is). ``joined``, if given, receives the joined labels instead (and
        is returned).
        """
        n = len(prediction_ids)
        if not (len(times_ms) == len(scores) == n and (classes is None or len(classes) == n)):
            raise ValueError("prediction_ids, times_ms, scores (and classes) must have equal lengths")
        out = joined
        times = [int(t) for t in times_ms]
        score_list = [float(s) for s in scores]
        class_list: list[int | None] = (
            [None] * n if classes is None else [None if c is None or c != c else int(c) for c in classes]  # c != c: NaN
        )
        for prediction_id, time_ms, score, klass in zip(prediction_ids, times, score_list, class_list, strict=True):
            self.predictions_seen += 1
            # Labels given up by the predictions that came *before* this one stay given up (the
            # watermark is raised after the check); _expire_waiting counts them.
            waiting = [w for w in self._waiting.get(prediction_id, ()) if not self._given_up(w[0])]
            if time_ms > self.prediction_watermark:
                self.prediction_watermark = time_ms
            self._forget_released()
            if prediction_id in self._predictions or prediction_id in self._released:
                self.prediction_counts["duplicate_prediction"] += 1
                self._expire_waiting()
                continue
            entry = [time_ms, score, klass, _WAITING]
            self._predictions[prediction_id] = entry
            heapq.heappush(self._prediction_heap, (time_ms, prediction_id))
            for label in sorted(waiting, key=lambda w: w[3]):  # in arrival order
                # A label that arrived when the labels' watermark had passed this prediction by two
                # horizons would not have found it held had it come first: it stays (and is given up).
                if time_ms >= label[2] - 2 * self.horizon_ms:
                    self._remove_waiting(prediction_id, label[3])
                    self.label_counts["early"] += 1
                    out = self._settle(prediction_id, entry, label[0], label[1], out, label[2])
            self._expire_waiting()
            self._expire_predictions()  # one that comes after the labels moved two horizons past it
            self._enforce_capacity()
        return out

    def add_labels(
        self, prediction_ids: Sequence[str], label_times_ms: Sequence[int] | np.ndarray, labels: Sequence[float] | np.ndarray
    ) -> JoinedLabels:
        """Join labels to their predictions; returns the labels joined now, in order."""
        n = len(prediction_ids)
        if not (len(label_times_ms) == len(labels) == n):
            raise ValueError("prediction_ids, label_times_ms and labels must have equal lengths")
        out = JoinedLabels()
        for prediction_id, time_ms, label in zip(prediction_ids, [int(t) for t in label_times_ms],
                                                 [float(v) for v in labels], strict=True):
            self.labels_seen += 1
            if time_ms > self.label_watermark:
                self.label_watermark = time_ms
            self._expire_predictions()
            entry = self._predictions.get(prediction_id)
            if entry is not None:
                self._settle(prediction_id, entry, time_ms, label, out, int(self.label_watermark))
            else:
                self._sequence += 1
                self._waiting.setdefault(prediction_id, []).append([time_ms, label, int(self.label_watermark), self._sequence])
                self._waiting_count += 1
                heapq.heappush(self._waiting_heap, (time_ms, self._sequence, prediction_id))
                self._expire_waiting()
                self._enforce_capacity()
        return out

    # -- the rules -----------------------------------------------------------------------------------

    def _settle(
        self, prediction_id: str, entry: list[Any], label_time: int, label: float, out: JoinedLabels | None, watermark: int
    ) -> JoinedLabels | None:
        if entry[3] == _JOINED:
            self.label_counts["duplicate"] += 1
            return out
        delay = label_time - entry[0]
        if delay < 0:
            self.label_counts["before_prediction"] += 1
        elif delay > self.horizon_ms:
            self.label_counts["after_horizon"] += 1
        else:
            entry[3] = _JOINED
            self.label_counts["joined"] += 1
            self.prediction_counts["joined"] += 1
            out = JoinedLabels() if out is None else out
            out._append(prediction_id, (entry[0], entry[1], entry[2]), label_time, label, watermark)
        return out

    def _given_up(self, label_time: int) -> bool:
        return self.prediction_watermark > label_time + self.grace_ms

    def _remove_waiting(self, prediction_id: str, sequence: int) -> bool:
        labels = self._waiting.get(prediction_id)
        if labels is None:
            return False
        kept = [w for w in labels if w[3] != sequence]
        if len(kept) == len(labels):
            return False
        if kept:
            self._waiting[prediction_id] = kept
        else:
            del self._waiting[prediction_id]
        self._waiting_count -= 1
        return True

    def _expire_waiting(self) -> None:
        heap = self._waiting_heap
        while heap and self._given_up(heap[0][0]):
            _, sequence, prediction_id = heapq.heappop(heap)
            if self._remove_waiting(prediction_id, sequence):
                self.label_counts["unknown_prediction"] += 1

    def _release(self, prediction_id: str, time_ms: int) -> None:
        del self._predictions[prediction_id]
        if time_ms + self.grace_ms >= self.prediction_watermark:
            self._released[prediction_id] = time_ms
            heapq.heappush(self._released_heap, (time_ms, prediction_id))

    def _forget_released(self) -> None:
        heap, limit = self._released_heap, self.prediction_watermark - self.grace_ms
        while heap and heap[0][0] < limit:
            time_ms, prediction_id = heapq.heappop(heap)
            if self._released.get(prediction_id) == time_ms:
                del self._released[prediction_id]

    @property
    def settled_before(self) -> float:
        """No label joins a prediction made before this time any more (``-inf``: not yet known).

        A held prediction joins labels until the labels' watermark is two horizons past it (then it
        expires); a prediction still to come joins only the labels waiting for it that are within its
        horizon and not given up — none once the predictions' watermark is a horizon and the grace
        past it. Both must hold: the labels may run far ahead of the predictions (a catch-up).
        """
        return min(self.label_watermark - 2 * self.horizon_ms, self.prediction_watermark - self.horizon_ms - self.grace_ms)

    def _expire_predictions(self) -> None:
        # A prediction is kept until the labels' event time is two horizons past it: long enough for
        # an in-horizon label that arrives out of order, and for duplicates of a joined one.
        heap, limit = self._prediction_heap, self.label_watermark - 2 * self.horizon_ms
        while heap and heap[0][0] < limit:
            time_ms, prediction_id = heapq.heappop(heap)
            entry = self._predictions.get(prediction_id)
            if entry is not None and entry[0] == time_ms:
                self._release(prediction_id, time_ms)
                if entry[3] == _WAITING:
                    self.prediction_counts["unlabelled"] += 1

    def _enforce_capacity(self) -> None:
        while len(self._predictions) + self._waiting_count > self.capacity:
            # The oldest prediction goes first (labelled ones carry nothing but duplicate detection);
            # waiting labels only when no prediction is left.
            if self._prediction_heap:
                time_ms, prediction_id = heapq.heappop(self._prediction_heap)
                entry = self._predictions.get(prediction_id)
                if entry is not None and entry[0] == time_ms:
                    self._release(prediction_id, time_ms)
                    if entry[3] == _WAITING:
                        self.prediction_counts["evicted"] += 1
            else:
                _, sequence, prediction_id = heapq.heappop(self._waiting_heap)
                if self._remove_waiting(prediction_id, sequence):
                    self.label_counts["evicted"] += 1

    # -- state ---------------------------------------------------------------------------------------

    def to_state(self) -> dict[str, Any]:
        """Strict-JSON state: restoring it continues exactly (entries in their expiry order)."""
        predictions, waiting = [], []
        for time_ms, pid in sorted(self._prediction_heap):
            entry = self._predictions.get(pid)
            if entry is not None and entry[0] == time_ms:  # not a stale heap entry
                predictions.append([pid, *entry])
        live = {w[3]: (pid, w) for pid, labels in self._waiting.items() for w in labels}
        for _, sequence, pid in sorted(self._waiting_heap):
            if sequence in live:
                waiting.append([pid, *live.pop(sequence)[1]])
        return {
            "format": _STATE_FORMAT,
            "horizon_ms": self.horizon_ms,
            "grace_ms": self.grace_ms,
            "capacity": self.capacity,
            "prediction_watermark": None if math.isinf(self.prediction_watermark) else int(self.prediction_watermark),
            "label_watermark": None if math.isinf(self.label_watermark) else int(self.label_watermark),
            "predictions": list({row[0]: row for row in predictions}.values()),
            "waiting": waiting,
            "sequence": self._sequence,
            "released": [[pid, t] for t, pid in sorted(self._released_heap) if self._released.get(pid) == t],
            "label_counts": dict(self.label_counts),
            "prediction_counts": dict(self.prediction_counts),
            "labels_seen": self.labels_seen,
            "predictions_seen": self.predictions_seen,
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> LabelJoin:
        """Restore a join from :meth:`to_state`."""
        if state.get("format") != _STATE_FORMAT:
            raise ValueError(f"label-join state format {state.get('format')!r} is not {_STATE_FORMAT}")
        join = cls(state["horizon_ms"], grace_ms=state["grace_ms"], capacity=state["capacity"])
        if state["prediction_watermark"] is not None:
            join.prediction_watermark = int(state["prediction_watermark"])
        if state["label_watermark"] is not None:
            join.label_watermark = int(state["label_watermark"])
        for pid, time_ms, score, klass, status in state["predictions"]:
            join._predictions[pid] = [int(time_ms), float(score), None if klass is None else int(klass), int(status)]
            join._prediction_heap.append((int(time_ms), pid))
        for pid, time_ms, label, watermark, sequence in state["waiting"]:
            join._waiting.setdefault(pid, []).append([int(time_ms), float(label), int(watermark), int(sequence)])
            join._waiting_heap.append((int(time_ms), int(sequence), pid))
            join._waiting_count += 1
        join._sequence = int(state["sequence"])
        for pid, time_ms in state["released"]:
            join._released[pid] = int(time_ms)
            join._released_heap.append((int(time_ms), pid))
        heapq.heapify(join._released_heap)
        # Sorted lists are heaps already; heapify states the invariant.
        heapq.heapify(join._prediction_heap)
        heapq.heapify(join._waiting_heap)
        join.label_counts.update({k: int(v) for k, v in state["label_counts"].items()})
        join.prediction_counts.update({k: int(v) for k, v in state["prediction_counts"].items()})
        join.labels_seen = int(state["labels_seen"])
        join.predictions_seen = int(state["predictions_seen"])
        return join


class ObservationOrder:
    """Joined labels released in the order they were observed, the same whatever the two topics' interleaving.

    The join emits a label when it meets its prediction — at once, or, for a label that came before
    its prediction, when the prediction comes: an order that depends on how the prediction and label
    topics' reads interleave (a live run, a restart after ``kill -9`` and a replay all differ). A
    sequential test on the labels (the concept-drift test) must see them in an order fixed by the
    events, so this releases them by (label time, arrival) once both watermarks less ``lateness_ms``
    have passed them: every label observed before then that is not later than that has been joined
    by then — its prediction, made before it, is no later than the predictions' watermark allows
    (``lateness_ms`` is the join's ``grace_ms``). A label that arrived more than ``lateness_ms``
    behind the labels' watermark is not released (counted in :attr:`late`); it is still in the
    realised metrics.
    """

    def __init__(self, lateness_ms: int) -> None:
        self.lateness_ms = _positive_ms(lateness_ms, "lateness_ms")
        # (label time, prediction id, seq, prediction time, score, class, label). Ties go by the id: the
        # order labels are joined (so queued) in depends on the interleaving.
        self._queue: list[tuple[int, str, int, int, float, int | None, float]] = []
        self._sequence = 0
        self._released_before = -math.inf
        self.late = 0

    def add(self, joined: JoinedLabels | None) -> None:
        """Queue newly joined labels (in any order)."""
        if joined is None:
            return
        for row in zip(joined.prediction_ids, joined.prediction_times_ms, joined.scores, joined.classes, joined.labels,
                       joined.label_times_ms, joined.label_watermarks_ms, strict=True):
            prediction_id, time_ms, score, klass, label, label_time, watermark = row
            if label_time < watermark - self.lateness_ms:
                self.late += 1
                continue
            self._sequence += 1
            heapq.heappush(self._queue, (label_time, prediction_id, self._sequence, time_ms, score, klass, label))

    def release(self, prediction_watermark: float, label_watermark: float) -> JoinedLabels:
        """The queued labels observed before both watermarks less the lateness, in observation order."""
        return self._release_until(min(prediction_watermark, label_watermark) - self.lateness_ms)

    def finish(self) -> JoinedLabels:
        """End of input: every queued label, in observation order."""
        return self._release_until(math.inf)

    def _release_until(self, until: float) -> JoinedLabels:
        out = JoinedLabels()
        if until <= self._released_before:
            return out
        while self._queue and self._queue[0][0] < until:
            label_time, prediction_id, _, time_ms, score, klass, label = heapq.heappop(self._queue)
            out._append(prediction_id, (time_ms, score, klass), label_time, label, label_time)
        self._released_before = until
        return out

    @property
    def released_before(self) -> float:
        """Every label observed before this time that will ever be released has been (``-inf``: none yet)."""
        return self._released_before

    def to_state(self) -> dict[str, Any]:
        return {"format": _STATE_FORMAT, "queue": [list(item) for item in sorted(self._queue)], "sequence": self._sequence,
                "released_before": None if math.isinf(self._released_before) else self._released_before, "late": self.late}

    @classmethod
    def from_state(cls, state: dict[str, Any], lateness_ms: int) -> ObservationOrder:
        if state.get("format") != _STATE_FORMAT:
            raise ValueError(f"observation-order state format {state.get('format')!r} is not {_STATE_FORMAT}")
        order = cls(lateness_ms)
        order._queue = [(int(t), pid, int(seq), int(pt), float(score), None if k is None else int(k), float(label))
                        for t, pid, seq, pt, score, k, label in state["queue"]]
        heapq.heapify(order._queue)
        order._sequence = int(state["sequence"])
        released = state["released_before"]
        order._released_before = -math.inf if released is None else float(released)
        order.late = int(state["late"])
        return order

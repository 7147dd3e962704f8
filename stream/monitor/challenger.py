"""The challenger: an online River model that learns from labelled events, compared with the production model.

The production model (the *champion*) is frozen between deployments; the world is not. A challenger
learns from every labelled event as it is joined — *test-then-train*: it scores each prediction event
when the event arrives, and only learns from the event once its label comes, so every comparison is
on events it had not learned from. Champion and challenger are compared on the same labelled events
per window with McNemar's exact test: of the events where exactly one of them was right, the
challenger should win more than half by more than chance. When it does, driftline *recommends* it
(an alert); it never changes production.

The default model for a binary classification contract is a River pipeline: numeric features
standardised online, categorical ones one-hot encoded, into a logistic regression
(:func:`default_classifier`). Missing values (null, NaN) are left out of an event's features, which
the scaled logistic regression treats as the running mean. Any River classifier with
``learn_one``/``predict_proba_one`` can replace it.

State: the River model is pickled (River's documented way to persist a model) into the checkpoint,
so a restored challenger continues exactly. A pickle is code: load only states this deployment
wrote, from its own database.

In the engine (:class:`ChallengerRun`) the challenger runs in *event time*, so that what it does
depends only on the events — not on how the prediction and label topics' reads interleave, which
differs between a live run, a restart after ``kill -9`` and a replay:

* it scores a prediction made at time t with the model that has learned exactly the labels observed
  before t (``label_time < t``) — what a challenger deployed beside the champion would have known
  when it decided; scoring at the label's arrival instead would let it use labels observed after the
  champion's decision;
* it learns labels in the order they were observed, as the engine's
  :class:`~driftline.stream.monitor.label_join.ObservationOrder` releases them (the concept-drift
  test's input too), a label observed at t after the predictions made up to t;
* both happen once every event before that time has arrived: the predictions' and the labels'
  event-time watermarks, less ``lateness_ms`` each (the join's ``grace_ms``). A prediction more than
  that out of order is counted (``late_predictions``) and not scored, by the predictions' watermark
  when it arrived, which does not depend on the interleaving either (a label so late is left out by
  the observation order, which counts it).
"""

from __future__ import annotations

import base64
import hashlib
import heapq
import importlib
import math
import numbers
import pickle
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy.stats import binomtest

from .label_join import JoinedLabels

__all__ = [
    "Challenger",
    "ChallengerCounts",
    "ChallengerRun",
    "ChallengerVerdict",
    "compare_on_window",
    "default_classifier",
    "load_classifier",
    "mcnemar_p_value",
]

_STATE_FORMAT = 1

Row = Mapping[str, Any]


def default_classifier(*, learning_rate: float = 0.05) -> Any:
    """Numeric features standardised online and text ones one-hot encoded, into an online logistic regression.

    Features are told apart by type (``compose.SelectType``), so an event that lacks some of them
    (nulls are left out) is still scored.
    """
    if not (math.isfinite(learning_rate) and learning_rate > 0.0):
        raise ValueError(f"learning_rate must be > 0, got {learning_rate!r}")
    # Imported here, not with the module: importing River loads SQLAlchemy and scikit-learn when they
    # are installed (its SQL stream reader and compatibility layer), which every import of the monitor
    # core — and `driftline --help` — would otherwise pay for.
    from river import compose, linear_model, optim, preprocessing
    features = compose.TransformerUnion(
        compose.SelectType(numbers.Number) | preprocessing.StandardScaler(),
        compose.SelectType(str) | preprocessing.OneHotEncoder(),
    )
    return features | linear_model.LogisticRegression(optimizer=optim.SGD(learning_rate))


def load_classifier(spec: str) -> Any:
    """The River classifier ``spec`` names: ``"default"`` (:func:`default_classifier`) or ``"module:factory"``.

    ``factory`` is called without arguments and must return a River classifier.

    Raises
    ------
    ValueError
        ``spec`` names nothing importable, or the factory's result is not a River classifier.
    """
    if spec == "default":
        return default_classifier()
    module_name, _, factory_name = spec.partition(":")
    if not module_name or not factory_name:
        raise ValueError(f"challenger {spec!r}: expected 'default' or 'module:factory'")
    try:
        factory = getattr(importlib.import_module(module_name), factory_name)
    except (ImportError, AttributeError) as exc:
        raise ValueError(f"challenger {spec!r}: cannot import it ({exc})") from exc
    model = factory()
    if not (hasattr(model, "learn_one") and hasattr(model, "predict_proba_one")):
        raise ValueError(f"challenger {spec!r}: the factory returned {type(model).__name__}, not a River classifier")
    return model


def _features(row: Row) -> dict[str, Any]:
    """An event's features for River: nulls and NaN left out."""
    out: dict[str, Any] = {}
    for name, value in row.items():
        if value is None or (isinstance(value, float) and math.isnan(value)):
            continue
        out[name] = value
    return out


class Challenger:
    """A River classifier scoring events before their labels and learning from them after.

    Parameters
    ----------
    model
        A River classifier (``learn_one``, ``predict_proba_one``).
    threshold
        Probability at or above which the challenger's decision is positive.

    Examples
    --------
    >>> challenger = Challenger(default_classifier())
    >>> rows = [{"x": float(v)} for v in (-2, -1, 1, 2)] * 50
    >>> challenger.learn(rows, [0, 0, 1, 1] * 50)
    >>> [round(p, 2) > 0.5 for p in challenger.score([{"x": -1.5}, {"x": 1.5}])]
    [False, True]
    """

    def __init__(self, model: Any, *, threshold: float = 0.5) -> None:
        if not (hasattr(model, "learn_one") and hasattr(model, "predict_proba_one")):
            raise ValueError("model must be a River classifier (learn_one, predict_proba_one)")
        if not (math.isfinite(threshold) and 0.0 < threshold < 1.0):
            raise ValueError(f"threshold must be in (0, 1), got {threshold!r}")
        self.model = model
        self.threshold = float(threshold)
        self.learned = 0

    def score(self, rows: Sequence[Row]) -> list[float]:
        """The challenger's probability of a positive label for each event (before learning from it)."""
        return [float(self.model.predict_proba_one(_features(row)).get(True, 0.0)) for row in rows]

    def learn(self, rows: Sequence[Row], labels: Sequence[float] | npt.NDArray[Any]) -> None:
        """Learn from labelled events, in order (labels 0/1)."""
        if len(rows) != len(labels):
            raise ValueError("rows and labels must have equal lengths")
        for row, label in zip(rows, labels, strict=True):
            if label not in (0, 1):
                raise ValueError(f"labels must be 0 or 1, got {label!r}")
            self.model.learn_one(_features(row), bool(label))
            self.learned += 1

    def to_state(self) -> dict[str, Any]:
        """JSON-able state: the pickled River model (see the module docstring)."""
        return {"format": _STATE_FORMAT, "threshold": self.threshold, "learned": self.learned,
                "model": base64.b64encode(pickle.dumps(self.model, protocol=5)).decode("ascii")}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> Challenger:
        """Restore from :meth:`to_state` (a state this deployment wrote: it is unpickled)."""
        if state.get("format") != _STATE_FORMAT:
            raise ValueError(f"challenger state format {state.get('format')!r} is not {_STATE_FORMAT}")
        challenger = cls(pickle.loads(base64.b64decode(state["model"])), threshold=state["threshold"])
        challenger.learned = int(state["learned"])
        return challenger


@dataclass(frozen=True)
class ChallengerVerdict:
    """McNemar's comparison on one window's labelled events."""

    count: int  # labelled events compared
    champion_accuracy: float | None
    challenger_accuracy: float | None
    champion_only: int  # events only the champion got right
    challenger_only: int  # events only the challenger got right
    p_value: float  # one-sided: the challenger wins the discordant events by chance
    challenger_better: bool


def compare_on_window(
    labels: npt.ArrayLike, champion_decisions: npt.ArrayLike, challenger_decisions: npt.ArrayLike, *, alpha: float
) -> ChallengerVerdict:
    """McNemar's exact test of "the challenger is right more often" on the same labelled events.

    Of the events where exactly one model was right, the challenger's share is Binomial(n, 1/2) if
    both are equally good; ``p_value`` is the chance of it winning at least as many as it did.
    """
    if not (0.0 < alpha < 1.0):
        raise ValueError(f"alpha must be in (0, 1), got {alpha!r}")
    y = np.asarray(labels) == 1
    champion = np.asarray(champion_decisions) == 1
    challenger = np.asarray(challenger_decisions) == 1
    if not (y.shape == champion.shape == challenger.shape):
        raise ValueError("labels and both models' decisions must have equal lengths")
    champion_right, challenger_right = champion == y, challenger == y
    b = int(np.count_nonzero(champion_right & ~challenger_right))
    c = int(np.count_nonzero(challenger_right & ~champion_right))
    p_value = mcnemar_p_value(b, c)
    n = int(y.size)
    return ChallengerVerdict(
        count=n,
        champion_accuracy=float(champion_right.mean()) if n else None,
        challenger_accuracy=float(challenger_right.mean()) if n else None,
        champion_only=b,
        challenger_only=c,
        p_value=p_value,
        challenger_better=p_value < alpha,
    )


#: Format of :meth:`ChallengerRun.to_state` (2: labels come from the engine's observation order).
_RUN_STATE_FORMAT = 2


@dataclass
class ChallengerCounts:
    """What the run did with the events it saw (cumulative)."""

    scored: int = 0  # predictions scored
    learned: int = 0  # labels learned
    compared: int = 0  # labelled predictions both models decided, in the per-window comparisons
    late_predictions: int = 0  # more than lateness_ms out of order: not scored
    evicted: int = 0  # held predictions dropped at capacity (their labels, if any, are not learned)


@dataclass
class ChallengerRun:
    """The challenger in event time beside the label join (see the module docstring).

    Parameters
    ----------
    challenger
        The model and its decision threshold.
    feature_names
        The contract's input features, in the order of the rows given to :meth:`add_predictions`.
    window_length_ms, horizon_ms, lateness_ms
        The comparison's windows (of prediction time), the label horizon (a window is compared once
        no label for it can come: its end plus the horizon is behind the run) and how far out of
        event-time order predictions and labels may arrive.
    capacity
        Most predictions held (features waiting for their label); beyond it the oldest are dropped
        and counted.
    sample
        Share of predictions the challenger takes (by a hash of the id: the same ones in every run);
        1.0 takes every one.
    """

    challenger: Challenger
    feature_names: list[str]
    window_length_ms: int
    horizon_ms: int
    lateness_ms: int
    capacity: int = 200_000
    sample: float = 1.0
    counts: ChallengerCounts = field(default_factory=ChallengerCounts)

    def __post_init__(self) -> None:
        if not 0.0 < self.sample <= 1.0:
            raise ValueError(f"sample must be in (0, 1], got {self.sample!r}")
        self._held: dict[str, list[Any]] = {}  # id -> [time, features, champion decision, challenger decision]
        # (time, id, sequence): the predictions to score, in event-time order (ties by id, as the labels').
        self._queue: list[tuple[int, str, int]] = []
        self._sequence = 0
        self._held_order: list[tuple[int, str]] = []  # (time, id): expiry and eviction order, lazily cleaned
        self._windows: dict[int, list[int]] = {}  # window start -> [compared, champion right, challenger right, b, c]
        self._prediction_watermark = -math.inf  # of the predictions this run saw, in arrival order
        self._done_before = -math.inf  # every event time before this has been run

    def takes(self, prediction_id: str) -> bool:
        """Whether the challenger samples this prediction (the same answer in every run)."""
        if self.sample >= 1.0:
            return True
        digest = hashlib.blake2b(prediction_id.encode(), digest_size=8).digest()
        return int.from_bytes(digest, "big") < self.sample * 2**64

    def add_predictions(
        self, ids: Sequence[str], times_ms: Sequence[int], rows: Sequence[Sequence[Any]], champion: Sequence[int]
    ) -> None:
        """Hold sampled predictions (their features and the champion's decision) and queue their scoring."""
        for prediction_id, time_ms, row, decision in zip(ids, times_ms, rows, champion, strict=True):
            late = time_ms < self._prediction_watermark - self.lateness_ms
            self._prediction_watermark = max(self._prediction_watermark, time_ms)
            if prediction_id in self._held or not self.takes(prediction_id):
                continue
            self._held[prediction_id] = [int(time_ms), list(row), int(decision), None]
            heapq.heappush(self._held_order, (int(time_ms), prediction_id))
            if late:
                self.counts.late_predictions += 1
            else:
                self._sequence += 1
                heapq.heappush(self._queue, (int(time_ms), prediction_id, self._sequence))

    def advance(
        self, prediction_watermark_ms: float, label_watermark_ms: float, observed: JoinedLabels
    ) -> list[tuple[int, list[int]]]:
        """Score the predictions and learn the ``observed`` labels before both watermarks less the lateness.

        The watermarks are the label join's, and ``observed`` what the engine's observation order
        released for them (every joined label observed before that time, in order). Returns the windows
        now complete: ``(start, [compared, champion right, challenger right, only the champion right,
        only the challenger right])``, in time order.
        """
        return self._run_until(min(prediction_watermark_ms, label_watermark_ms) - self.lateness_ms, observed)

    def finish(self, observed: JoinedLabels) -> list[tuple[int, list[int]]]:
        """End of input: every queued prediction and the last ``observed`` labels, and every window completed."""
        return self._run_until(math.inf, observed)

    def _score_until(self, time_ms: float, *, inclusive: bool) -> None:
        """Score the queued predictions made before ``time_ms`` (or at it, ``inclusive``)."""
        queue = self._queue
        while queue and (queue[0][0] <= time_ms if inclusive else queue[0][0] < time_ms):
            _, prediction_id, _ = heapq.heappop(queue)
            entry = self._held.get(prediction_id)
            if entry is not None:  # (else dropped at capacity)
                entry[3] = int(self.challenger.score([self._row(entry)])[0] >= self.challenger.threshold)
                self.counts.scored += 1

    def _run_until(self, until: float, observed: JoinedLabels) -> list[tuple[int, list[int]]]:
        if until <= self._done_before:
            return []
        for prediction_id, label_time, label in zip(observed.prediction_ids, observed.label_times_ms, observed.labels,
                                                    strict=True):
            self._score_until(label_time, inclusive=True)  # a prediction made at t is scored before a label observed at t
            entry = self._held.get(prediction_id)
            if entry is None or label not in (0.0, 1.0):
                continue  # not sampled (or dropped), or not a 0/1 label (counted by the realised metrics)
            if entry[3] is not None:
                self._compare(entry, int(label))
            self.challenger.learn([self._row(entry)], [label])
            self.counts.learned += 1
            del self._held[prediction_id]
        self._score_until(until, inclusive=False)
        self._done_before = until
        # A held prediction whose horizon is behind the run gets no label now.
        while self._held_order and self._held_order[0][0] + self.horizon_ms < until:
            time_ms, prediction_id = heapq.heappop(self._held_order)
            entry = self._held.get(prediction_id)
            if entry is not None and entry[0] == time_ms:
                del self._held[prediction_id]
        self._enforce_capacity()
        reach = until - self.horizon_ms - self.window_length_ms
        complete = sorted((start, counts) for start, counts in self._windows.items() if start < reach)
        for start, _ in complete:
            del self._windows[start]
        return complete

    def _row(self, entry: list[Any]) -> dict[str, Any]:
        return dict(zip(self.feature_names, entry[1], strict=True))

    def _compare(self, entry: list[Any], label: int) -> None:
        start = entry[0] - entry[0] % self.window_length_ms
        counts = self._windows.setdefault(start, [0, 0, 0, 0, 0])
        champion_right, challenger_right = entry[2] == label, entry[3] == label
        counts[0] += 1
        counts[1] += champion_right
        counts[2] += challenger_right
        counts[3] += champion_right and not challenger_right
        counts[4] += challenger_right and not champion_right
        self.counts.compared += 1

    def _enforce_capacity(self) -> None:
        while len(self._held) > self.capacity and self._held_order:
            time_ms, prediction_id = heapq.heappop(self._held_order)
            entry = self._held.get(prediction_id)
            if entry is not None and entry[0] == time_ms:
                del self._held[prediction_id]
                self.counts.evicted += 1

    @property
    def compared_before(self) -> float:
        """Windows starting before this were compared (``-inf``: none yet); the next one starts at or after it."""
        return self._done_before - self.horizon_ms - self.window_length_ms

    @property
    def held(self) -> int:
        """Predictions held (features waiting for their label)."""
        return len(self._held)

    def to_state(self) -> dict[str, Any]:
        """Strict-JSON state (the River model pickled, see the module docstring); restoring it continues exactly."""
        return {
            "format": _RUN_STATE_FORMAT,
            "challenger": self.challenger.to_state(),
            "held": [[pid, *entry] for pid, entry in self._held.items()],
            "held_order": [[t, pid] for t, pid in sorted(self._held_order) if self._held.get(pid, [None])[0] == t],
            "queue": [list(item) for item in sorted(self._queue)],
            "sequence": self._sequence,
            "windows": [[start, *counts] for start, counts in sorted(self._windows.items())],
            "prediction_watermark": None if math.isinf(self._prediction_watermark) else int(self._prediction_watermark),
            "done_before": None if math.isinf(self._done_before) else self._done_before,
            "counts": dict(vars(self.counts)),
        }

    def restore(self, state: dict[str, Any]) -> None:
        """Continue from :meth:`to_state` (same features, windows, horizon and lateness)."""
        if state.get("format") != _RUN_STATE_FORMAT:
            raise ValueError(f"challenger-run state format {state.get('format')!r} is not {_RUN_STATE_FORMAT}")
        self.challenger = Challenger.from_state(state["challenger"])
        self._held = {pid: [int(t), list(row), int(champion), None if mine is None else int(mine)]
                      for pid, t, row, champion, mine in state["held"]}
        self._held_order = [(int(t), pid) for t, pid in state["held_order"]]
        self._queue = [(int(time_ms), prediction_id, int(sequence)) for time_ms, prediction_id, sequence in state["queue"]]
        heapq.heapify(self._held_order)
        heapq.heapify(self._queue)
        self._sequence = int(state["sequence"])
        self._windows = {int(start): [int(v) for v in counts] for start, *counts in state["windows"]}
        watermark = state["prediction_watermark"]
        self._prediction_watermark = -math.inf if watermark is None else int(watermark)
        done = state["done_before"]
        self._done_before = -math.inf if done is None else float(done)
        self.counts = ChallengerCounts(**{k: int(v) for k, v in state["counts"].items()})


def mcnemar_p_value(champion_only: int, challenger_only: int) -> float:
    """One-sided exact McNemar: the chance the challenger wins at least ``challenger_only`` of the discordant events."""
    n = champion_only + challenger_only
    return float(binomtest(challenger_only, n, 0.5, alternative="greater").pvalue) if n else 1.0

"""LabelJoin: every rule counted, nothing lost, independent of interleaving and batching, restorable."""

from __future__ import annotations

import doctest
import json
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import driftline.stream.monitor.label_join as label_join_module
from driftline.stream.monitor.label_join import LABEL_REASONS, LabelJoin

HOUR = 3_600_000
DAY = 24 * HOUR


def _accounted_labels(join: LabelJoin) -> int:
    """Every label seen is joined, counted under a reason, or still waiting for its prediction."""
    return join.label_counts["joined"] + sum(join.label_counts[r] for r in LABEL_REASONS) + join.waiting_labels


def _accounted_predictions(join: LabelJoin) -> int:
    waiting = sum(1 for row in join.to_state()["predictions"] if row[4] == 0)
    counts = join.prediction_counts
    return counts["joined"] + counts["unlabelled"] + counts["duplicate_prediction"] + counts["evicted"] + waiting


def test_each_rule_is_counted_by_its_reason() -> None:
    join = LabelJoin(horizon_ms=DAY, grace_ms=HOUR)
    join.add_predictions(["p1", "p2", "p3", "p1"], [0, 10, 20, 30], [0.9, 0.1, 0.5, 0.7], [1, 0, 1, 1])
    assert join.prediction_counts["duplicate_prediction"] == 1
    joined = join.add_labels(
        ["p1", "p1", "p2", "p3", "early"],
        [HOUR, 2 * HOUR, DAY + 11, 5, 3 * HOUR],  # p2 one ms past the horizon; p3 labelled before it was predicted
        [1.0, 1.0, 0.0, 1.0, 0.0],
    )
    assert joined.rows() == [("p1", 0, 0.9, 1, 1.0, HOUR)]
    counts = join.label_counts
    assert (counts["duplicate"], counts["after_horizon"], counts["before_prediction"]) == (1, 1, 1)
    assert join.waiting_labels == 1  # 'early' waits for its prediction
    late_prediction = join.add_predictions(["early"], [2 * HOUR], [0.3], [0])
    assert late_prediction is not None and late_prediction.rows() == [("early", 2 * HOUR, 0.3, 0, 0.0, 3 * HOUR)]
    assert counts["early"] == 1 and counts["joined"] == 2
    join.add_labels(["nobody"], [4 * HOUR], [1.0])
    assert join.waiting_labels == 1 and counts["unknown_prediction"] == 0
    join.add_predictions(["later"], [5 * HOUR + 1], [0.5])  # predictions passed 4 h + grace: 'nobody' is not coming
    assert join.waiting_labels == 0 and counts["unknown_prediction"] == 1
    assert _accounted_labels(join) == join.labels_seen == 6
    assert _accounted_predictions(join) == join.predictions_seen == 6


def test_predictions_without_a_label_are_counted_once_the_labels_pass_two_horizons() -> None:
    join = LabelJoin(horizon_ms=HOUR)
    join.add_predictions(["a", "b"], [0, 0], [0.5, 0.5])
    join.add_labels(["a"], [HOUR], [1.0])
    assert join.prediction_counts["unlabelled"] == 0 and join.held_predictions == 2
    join.add_labels(["x"], [2 * HOUR + 1], [1.0])
    assert join.prediction_counts == {"joined": 1, "unlabelled": 1, "duplicate_prediction": 0, "evicted": 0}
    assert join.held_predictions == 0
    # An out-of-order label still within a's horizon, now that a was let go: it waits, and is given up.
    join.add_labels(["a"], [HOUR - 1], [1.0])
    join.add_predictions(["c"], [3 * HOUR + HOUR], [0.5])
    assert join.label_counts["unknown_prediction"] == 2
    assert _accounted_labels(join) == join.labels_seen


def test_a_full_state_evicts_the_oldest_and_counts_it() -> None:
    join = LabelJoin(horizon_ms=DAY, capacity=3)
    join.add_predictions(["a", "b", "c", "d"], [1, 2, 3, 4], [0.1] * 4)
    assert join.prediction_counts["evicted"] == 1 and join.held_predictions == 3
    join.add_labels(["a"], [10], [1.0])  # a was evicted: its label waits, pushing out b
    assert join.prediction_counts["evicted"] == 2 and join.waiting_labels == 1
    assert _accounted_predictions(join) == join.predictions_seen
    assert _accounted_labels(join) == join.labels_seen


def test_bad_arguments_are_rejected_with_the_parameter_named() -> None:
    with pytest.raises(ValueError, match="horizon_ms"):
        LabelJoin(horizon_ms=-1)
    with pytest.raises(ValueError, match="capacity"):
        LabelJoin(horizon_ms=1, capacity=0)
    with pytest.raises(ValueError, match="equal lengths"):
        LabelJoin(horizon_ms=1).add_labels(["a"], [1, 2], [1.0])
    with pytest.raises(ValueError, match="format"):
        LabelJoin.from_state({"format": 99})


def _scenario(seed: int, n: int) -> tuple[list[tuple[str, int, float, int]], list[tuple[str, int, float]]]:
    """Predictions in time order; labels for most of them (some late, early, twice, unknown), out of order by < a horizon."""
    rng = random.Random(seed)
    horizon = HOUR
    predictions, labels = [], []
    time_ms = 0
    for i in range(n):
        time_ms += rng.randrange(0, 120_000)
        predictions.append((f"p{i}", time_ms, rng.random(), rng.randrange(2)))
        roll = rng.random()
        if roll < 0.6:
            labels.append((f"p{i}", time_ms + rng.randrange(0, horizon), float(rng.randrange(2))))
        elif roll < 0.7:
            labels.append((f"p{i}", time_ms + horizon + rng.randrange(1, horizon), 1.0))  # after the horizon
        elif roll < 0.75:
            delay = rng.randrange(0, horizon)
            labels += [(f"p{i}", time_ms + delay, 1.0), (f"p{i}", time_ms + delay + 1, 1.0)]  # twice
        elif roll < 0.8:
            labels.append((f"nobody{i}", time_ms + rng.randrange(0, horizon), 0.0))
    if rng.random() < 0.5 and n > 3:
        predictions.insert(2, predictions[1])  # a duplicate prediction, redelivered soon after the first
    # Labels in time order, then locally shuffled: disorder well below one horizon.
    labels.sort(key=lambda row: row[1])
    for start in range(0, len(labels), 5):
        block = labels[start:start + 5]
        rng.shuffle(block)
        labels[start:start + 5] = block
    return predictions, labels


def _run(predictions: list[tuple[str, int, float, int]], labels: list[tuple[str, int, float]], seed: int,
         restore_every: int = 0) -> tuple[list[tuple[object, ...]], dict[str, int], dict[str, int]]:
    """Feed both streams in a random interleaving and random batches; optionally restore from state now and then."""
    rng = random.Random(seed)
    join = LabelJoin(horizon_ms=HOUR, grace_ms=0)
    rows: list[tuple[object, ...]] = []
    i = j = steps = 0
    while i < len(predictions) or j < len(labels):
        if j >= len(labels) or (i < len(predictions) and rng.random() < 0.5):
            k = rng.randrange(1, 8)
            batch, i = predictions[i:i + k], i + k
            joined = join.add_predictions([b[0] for b in batch], [b[1] for b in batch], [b[2] for b in batch], [b[3] for b in batch])
        else:
            k = rng.randrange(1, 8)
            batch_labels, j = labels[j:j + k], j + k
            joined = join.add_labels([b[0] for b in batch_labels], [b[1] for b in batch_labels], [b[2] for b in batch_labels])
        if joined is not None:
            rows += joined.rows()
        steps += 1
        if restore_every and steps % restore_every == 0:
            join = LabelJoin.from_state(json.loads(json.dumps(join.to_state(), allow_nan=False)))
    assert _accounted_labels(join) == join.labels_seen == len(labels)
    assert _accounted_predictions(join) == join.predictions_seen == len(predictions)
    # 'early' (the label came before its prediction) is about arrival order itself: left out.
    return sorted(rows, key=repr), {k: v for k, v in join.label_counts.items() if k != "early"}, join.prediction_counts


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 10**6), n=st.integers(0, 120), order_a=st.integers(0, 10**6), order_b=st.integers(0, 10**6))
def test_what_each_label_becomes_does_not_depend_on_interleaving_batching_or_restarts(
    seed: int, n: int, order_a: int, order_b: int
) -> None:
    predictions, labels = _scenario(seed, n)
    first = _run(predictions, labels, order_a)
    assert _run(predictions, labels, order_b, restore_every=3) == first


def test_a_realistic_stream_joins_every_in_horizon_label() -> None:
    predictions, labels = _scenario(7, 3_000)
    rows, label_counts, _ = _run(predictions, labels, 8)
    in_horizon = {(pid, t) for pid, t, _ in labels if pid.startswith("p")}
    assert label_counts["joined"] == len(rows) > 1_500
    assert all((row[0], row[5]) in in_horizon and 0 <= row[5] - row[1] <= HOUR for row in rows)  # type: ignore[operator]
    assert label_counts["after_horizon"] > 0 and label_counts["duplicate"] > 0 and label_counts["unknown_prediction"] > 0


def test_docstring_examples_run() -> None:
    result = doctest.testmod(label_join_module)
    assert result.attempted > 0 and result.failed == 0

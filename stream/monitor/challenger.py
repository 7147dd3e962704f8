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
"""

from __future__ import annotations

import base64
import math
import numbers
import pickle
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy.stats import binomtest

__all__ = ["Challenger", "ChallengerVerdict", "compare_on_window", "default_classifier"]

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
    p_value = float(binomtest(c, b + c, 0.5, alternative="greater").pvalue) if b + c else 1.0
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

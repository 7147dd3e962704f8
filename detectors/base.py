"""The contract every streaming drift detector of driftline follows.

A detector consumes one numeric stream in arrival order.  ``update_many`` is the real kernel;
``update`` runs it on a length-1 array, so the two are equivalent by construction and stay so
under any split of a stream into batches.  State is declared (``to_state`` / ``from_state``) as a
plain JSON-compatible dict that the imperative shell persists; detectors never do I/O.
"""

from __future__ import annotations

import abc
import math
from typing import Any, ClassVar, TypeVar

import numpy as np
import numpy.typing as npt

__all__ = ["DriftDetector", "as_finite_array", "decode_float", "encode_float"]

_Detector = TypeVar("_Detector", bound="DriftDetector")

#: Version of the ``to_state`` layout; bump when a detector's state keys change meaning.
STATE_VERSION = 1


def as_finite_array(values: npt.ArrayLike, name: str = "values") -> np.ndarray:
    """Return ``values`` as a one-dimensional float64 array, rejecting NaN and infinities.

    Parameters
    ----------
    values
        Anything numpy converts to a 1-D float array.
    name
        How the argument is called in error messages.

    Raises
    ------
    ValueError
        If the array is not one-dimensional or an element is not finite; the message names the
        first offending index so a caller can find the bad event.
    """
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {array.shape}")
    finite = np.isfinite(array)
    if not finite.all():
        index = int(np.argmin(finite))
        raise ValueError(f"{name}[{index}] is not finite ({array[index]!r}); filter NaN/inf before the detector")
    return array


def check_standardisation(center: float | None, scale: float, offset: float, clip: float | None) -> None:
    """Validate the reference standardisation shared by the calibrated detectors.

    Raises
    ------
    ValueError
        Naming the offending parameter.
    """
    if center is None:
        if scale != 1.0 or offset != 0.0 or clip is not None:
            raise ValueError("center is required when scale, offset or clip is given")
    elif not math.isfinite(center):
        raise ValueError(f"center must be finite, got {center!r}")
    if not (math.isfinite(scale) and scale > 0.0):
        raise ValueError(f"scale must be a finite number > 0, got {scale!r}")
    if not math.isfinite(offset):
        raise ValueError(f"offset must be finite, got {offset!r}")
    if clip is not None and not (math.isfinite(clip) and clip > 0.0):
        raise ValueError(f"clip must be None or a finite number > 0, got {clip!r}")


def encode_float(value: float) -> float | str:
    """Encode a float for strict JSON: infinities become the strings ``"inf"`` / ``"-inf"``."""
    value = float(value)
    if math.isfinite(value):
        return value
    if math.isnan(value):
        return "nan"
    return "inf" if value > 0 else "-inf"


def decode_float(value: float | str) -> float:
    """Inverse of :func:`encode_float`."""
    return float(value)


class DriftDetector(abc.ABC):
    """Abstract streaming drift detector.

    Subclasses implement ``_process(values) -> indices`` on an already validated, non-empty
    float64 array, plus ``_params`` / ``_get_state`` / ``_set_state`` for checkpointing.

    Attributes
    ----------
    drift_detected
        True iff the most recent value processed caused a drift signal (read-only).
    n_seen
        Number of values processed since construction (read-only).
    """

    #: Name written into ``to_state()["type"]``; checked by ``from_state``.
    state_type: ClassVar[str] = "DriftDetector"

    def __init__(self) -> None:
        self._drift_detected = False
        self._n_seen = 0
        self._signal_statistics: list[float] = []
        self._signal_thresholds: list[float] = []

    @property
    def drift_detected(self) -> bool:
        """True iff the most recent value processed caused a drift signal."""
        return self._drift_detected

    @property
    def signal_statistics(self) -> list[float]:
        """Test statistic at each signal of the last ``update``/``update_many`` call, in order."""
        return list(self._signal_statistics)

    @property
    def signal_thresholds(self) -> list[float]:
        """Threshold each of :attr:`signal_statistics` was compared with, in order."""
        return list(self._signal_thresholds)

    def _record_signal(self, statistic: float, threshold: float) -> None:
        self._signal_statistics.append(float(statistic))
        self._signal_thresholds.append(float(threshold))

    @property
    def n_seen(self) -> int:
        """Number of values processed since construction."""
        return self._n_seen

    def update(self: _Detector, x: float) -> _Detector:
        """Process one value; afterwards ``drift_detected`` tells whether it caused a signal.

        Raises
        ------
        ValueError
            If ``x`` is NaN or infinite.
        """
        value = float(x)
        if not math.isfinite(value):
            raise ValueError(f"x is not finite ({value!r}); filter NaN/inf before the detector")
        self._consume(np.array([value]))
        return self

    def update_many(self, values: npt.ArrayLike) -> np.ndarray:
        """Process values in order; exactly equivalent to calling ``update`` on each in turn.

        Parameters
        ----------
        values
            One-dimensional sequence of finite numbers.

        Returns
        -------
        numpy.ndarray
            int64 indices into ``values`` of the values at which drift was signalled.

        Raises
        ------
        ValueError
            If ``values`` is not 1-D or holds a NaN/inf (the message names the index); the
            detector's state is unchanged in that case.
        """
        array = as_finite_array(values)
        if array.size == 0:
            self._signal_statistics, self._signal_thresholds = [], []
            return np.empty(0, dtype=np.int64)
        return self._consume(array)

    def _consume(self, array: np.ndarray) -> np.ndarray:
        self._signal_statistics, self._signal_thresholds = [], []
        indices = np.asarray(self._process(array), dtype=np.int64)
        self._n_seen += int(array.size)
        self._drift_detected = bool(indices.size) and int(indices[-1]) == array.size - 1
        return indices

    @abc.abstractmethod
    def _process(self, values: np.ndarray) -> np.ndarray:
        """Consume a validated, non-empty float64 array; return signal indices (ascending)."""

    @abc.abstractmethod
    def _params(self) -> dict[str, Any]:
        """Constructor keyword arguments, JSON-compatible, such that ``cls(**params)`` rebuilds it."""

    @classmethod
    def _decode_params(cls, params: dict[str, Any]) -> dict[str, Any]:
        """Turn stored params back into constructor arguments (override for encoded values)."""
        return dict(params)

    @abc.abstractmethod
    def _get_state(self) -> dict[str, Any]:
        """Mutable internal state, JSON-compatible."""

    @abc.abstractmethod
    def _set_state(self, state: dict[str, Any]) -> None:
        """Restore what ``_get_state`` returned."""

    def to_state(self) -> dict[str, Any]:
        """Checkpointable state: a plain dict of floats, ints, strings and lists.

        ``type(self).from_state(self.to_state())`` continues exactly where this detector is.
        """
        return {
            "type": self.state_type,
            "version": STATE_VERSION,
            # None means "constructor default"; leaving it out keeps the dict free of nulls.
            "params": {key: value for key, value in self._params().items() if value is not None},
            "n_seen": self._n_seen,
            "drift_detected": int(self._drift_detected),
            "state": self._get_state(),
        }

    @classmethod
    def from_state(cls: type[_Detector], state: dict[str, Any]) -> _Detector:
        """Rebuild a detector from :meth:`to_state` output.

        Raises
        ------
        ValueError
            If the state belongs to another detector type or layout version.
        """
        if state.get("type") != cls.state_type:
            raise ValueError(f"state: type is {state.get('type')!r}, expected {cls.state_type!r}")
        if state.get("version") != STATE_VERSION:
            raise ValueError(f"state: version is {state.get('version')!r}, expected {STATE_VERSION}")
        detector = cls(**cls._decode_params(state["params"]))
        detector._n_seen = int(state["n_seen"])
        detector._drift_detected = bool(state["drift_detected"])
        detector._set_state(state["state"])
        return detector

    def __repr__(self) -> str:
        args = ", ".join(f"{key}={value!r}" for key, value in self._params().items())
        return f"{type(self).__name__}({args})"

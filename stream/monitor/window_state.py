"""One field's state inside one open window — a class per field kind — and its summary when the window closes.

The sketches (``driftline.detectors.sketches``) summarise accepted values; on top of them each field
window counts the status of *every* decoded event (accepted or rejected) so that nulls, NaN/inf,
out-of-range values and unseen categories are visible even when the contract sent those events to
the dead-letter topic.
"""

from __future__ import annotations

import base64
import math
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any

import numpy as np

from driftline.detectors import distances, sketch_encoding, sketches
from driftline.detectors.sketches import CategoricalWindowState, NumericWindowState
from driftline.schemas.results import FieldStatus

from .profile import FeatureProfile
from .results import FeatureWindow

__all__ = ["CategoricalFieldWindow", "FieldWindow", "NumericFieldWindow", "WindowPlace", "field_window_from_state", "new_field_window"]

_STATUS_CODES = max(int(s) for s in FieldStatus) + 1

# Numeric values reach the sketch in chunks of this many values of the window's own sequence.
# Welford/Chan moments depend (in the last bits) on how values are grouped; fixing the grouping to
# the window's sequence, not to the caller's batches, makes mean and variance bit-identical however
# the stream was batched — a replay equals the live run.
SKETCH_CHUNK = 4096


@dataclass(frozen=True, slots=True)
class WindowPlace:
    """Where a closing window sits: its model, version, start and length (the summary's identity)."""

    model: str
    model_version: str
    window_start_ms: int
    window_length_ms: int


class FieldWindow(ABC):
    """Status counts of all decoded events of one field in one window, and the sketch of its accepted values."""

    kind: str

    def __init__(self) -> None:
        self.status_counts = np.zeros(_STATUS_CODES, dtype=np.int64)

    def add(self, accepted_values: np.ndarray, accepted_status: np.ndarray, all_status: np.ndarray) -> None:
        """Add one window's slice of a batch: the accepted events' values and statuses, every event's status."""
        if all_status.size:
            self.status_counts += np.bincount(all_status.astype(np.int64), minlength=_STATUS_CODES)
        self._add_values(accepted_values, accepted_status)

    def count(self, status: FieldStatus) -> int:
        return int(self.status_counts[int(status)])

    def close(self, profile: FeatureProfile, place: WindowPlace, *, false_alarm_rate: float, min_psi: float) -> FeatureWindow:
        """Summarise the closed window and compare it with the reference profile.

        The PSI threshold is the reference's calibrated one (``FeatureProfile.psi_threshold``) at
        ``false_alarm_rate`` per window, never below ``min_psi``.
        """
        summary = self._summarise(profile)
        count = int(summary["count"])
        return FeatureWindow(
            model=place.model,
            model_version=place.model_version,
            feature=profile.name,
            kind=self.kind,
            window_start_ms=place.window_start_ms,
            window_length_ms=place.window_length_ms,
            count=count,
            nulls=self.count(FieldStatus.NULL) + self.count(FieldStatus.NULL_NOT_ALLOWED),
            non_finite=self.count(FieldStatus.NOT_FINITE),
            out_of_range=self.count(FieldStatus.OUT_OF_RANGE),
            unseen=self.count(FieldStatus.UNSEEN_CATEGORY),
            psi_threshold=max(profile.psi_threshold(count, false_alarm_rate), min_psi) if count else None,
            **summary["fields"],
        )

    def to_state(self) -> dict[str, object]:
        """Plain, JSON-serialisable state (sketch bytes base64-encoded)."""
        return {"kind": self.kind, "status_counts": self.status_counts.tolist(), **self._state()}

    def merge(self, other: FieldWindow) -> None:
        """Add ``other``'s window of the same field (another partition's) into this one.

        Raises
        ------
        ValueError
            ``other`` is of another kind, or binned differently.
        """
        if other.kind != self.kind:
            raise ValueError(f"other: a {other.kind} window cannot be merged into a {self.kind} one")
        self.status_counts = self.status_counts + other.status_counts
        self._merge_sketch(other)

    @abstractmethod
    def _merge_sketch(self, other: FieldWindow) -> None: ...

    @abstractmethod
    def _add_values(self, accepted_values: np.ndarray, accepted_status: np.ndarray) -> None: ...

    @abstractmethod
    def _summarise(self, profile: FeatureProfile) -> dict[str, Any]: ...

    @abstractmethod
    def _state(self) -> dict[str, object]: ...


class NumericFieldWindow(FieldWindow):
    """A numeric field: histogram on the reference's bins, moments, KLL quantiles of its usable values."""

    kind = "numeric"

    def __init__(self, sketch: NumericWindowState) -> None:
        super().__init__()
        self.sketch = sketch
        self._pending: list[np.ndarray] = []
        self._pending_count = 0

    def _add_values(self, accepted_values: np.ndarray, accepted_status: np.ndarray) -> None:
        usable = accepted_values[accepted_status == FieldStatus.OK]
        if usable.size:
            self._pending.append(usable)
            self._pending_count += usable.size
            if self._pending_count >= SKETCH_CHUNK:
                self._drain(whole_chunks_only=True)

    def _drain(self, *, whole_chunks_only: bool) -> None:
        if not self._pending_count:
            return
        values = np.concatenate(self._pending) if len(self._pending) > 1 else self._pending[0]
        take = (values.size // SKETCH_CHUNK) * SKETCH_CHUNK if whole_chunks_only else values.size
        for start in range(0, take, SKETCH_CHUNK):
            self.sketch = sketches.numeric_add(self.sketch, values[start : min(take, start + SKETCH_CHUNK)])
        rest = values[take:]
        self._pending = [rest] if rest.size else []
        self._pending_count = int(rest.size)

    def _summarise(self, profile: FeatureProfile) -> dict[str, Any]:
        self._drain(whole_chunks_only=False)
        result = sketches.numeric_result(self.sketch)
        scores = distances.histogram_distances(profile.counts_array, result["histogram"], profile.bin_points)
        return {
            "count": int(result["count"]),
            "fields": {
                "minimum": _finite(result["min"]),
                "maximum": _finite(result["max"]),
                "mean": _finite(result["mean"]),
                "variance": _finite(result["variance"]),
                "psi": _finite(scores["psi"]),
                "jensen_shannon": _finite(scores["jensen_shannon"]),
                "ks": _finite(scores["ks"]),
                "wasserstein": _finite(scores["wasserstein"]),
                "quantiles": {k: float(v) for k, v in (result.get("quantiles") or {}).items() if _finite(v) is not None},
            },
        }

    def _merge_sketch(self, other: FieldWindow) -> None:
        assert isinstance(other, NumericFieldWindow)
        self._drain(whole_chunks_only=False)
        other._drain(whole_chunks_only=False)
        self.sketch = sketches.numeric_merge(self.sketch, other.sketch)

    def _state(self) -> dict[str, object]:
        pending = np.concatenate(self._pending) if self._pending else np.zeros(0)
        return {
            "sketch": base64.b64encode(sketch_encoding.numeric_to_bytes(self.sketch)).decode("ascii"),
            "pending": base64.b64encode(pending.astype("<f8").tobytes()).decode("ascii"),
        }


class CategoricalFieldWindow(FieldWindow):
    """A categorical field: counts of the known categories, frequent items of every value (unseen ones too)."""

    kind = "categorical"

    def __init__(self, sketch: CategoricalWindowState) -> None:
        super().__init__()
        self.sketch = sketch

    def _add_values(self, accepted_values: np.ndarray, accepted_status: np.ndarray) -> None:
        # Unseen values of an open ("count") category set are accepted: keep them in the
        # frequent-items sketch so the alert can name the value that floods the feature.
        keep = (accepted_status == FieldStatus.OK) | (accepted_status == FieldStatus.UNSEEN_CATEGORY)
        usable = accepted_values[keep]
        if usable.size:
            self.sketch = sketches.categorical_add(self.sketch, usable)

    def _summarise(self, profile: FeatureProfile) -> dict[str, Any]:
        result = sketches.categorical_result(self.sketch)
        known = [int(result["category_counts"][c]) for c in profile.categories]
        window_counts = np.asarray([*known, int(result["unseen"])], dtype=np.int64)
        scores = distances.histogram_distances(profile.counts_array, window_counts)
        return {
            "count": int(window_counts.sum()),
            "fields": {
                "minimum": None,
                "maximum": None,
                "mean": None,
                "variance": None,
                "psi": _finite(scores["psi"]),
                "jensen_shannon": _finite(scores["jensen_shannon"]),
                "ks": None,
                "wasserstein": None,
                "top_items": tuple((str(value), int(estimate)) for value, estimate in result["top_items"][:10]),
            },
        }

    def _merge_sketch(self, other: FieldWindow) -> None:
        assert isinstance(other, CategoricalFieldWindow)
        self.sketch = sketches.categorical_merge(self.sketch, other.sketch)

    def _state(self) -> dict[str, object]:
        return {"sketch": base64.b64encode(sketch_encoding.categorical_to_bytes(self.sketch)).decode("ascii")}


def new_field_window(profile: FeatureProfile) -> FieldWindow:
    """An empty window of the field ``profile`` describes, binned like the reference."""
    if profile.kind == "categorical":
        return CategoricalFieldWindow(sketches.categorical_initialize(list(profile.categories)))
    return NumericFieldWindow(sketches.numeric_initialize(profile.full_bin_edges))


def field_window_from_state(state: dict[str, Any]) -> FieldWindow:
    """The field window :meth:`FieldWindow.to_state` describes.

    Raises
    ------
    ValueError
        The state is not one of a field window (unknown kind, or a sketch of the other kind).
    """
    sketch = sketch_encoding.window_state_from_bytes(base64.b64decode(str(state["sketch"])))
    window: FieldWindow
    if state["kind"] == "numeric" and isinstance(sketch, NumericWindowState):
        numeric = NumericFieldWindow(sketch)
        pending = np.frombuffer(base64.b64decode(str(state["pending"])), dtype="<f8").astype(np.float64)
        if pending.size:
            numeric._pending, numeric._pending_count = [pending], int(pending.size)
        window = numeric
    elif state["kind"] == "categorical" and isinstance(sketch, CategoricalWindowState):
        window = CategoricalFieldWindow(sketch)
    else:
        raise ValueError(f"state: not a field window of kind {state.get('kind')!r} holding its own kind of sketch")
    counts = np.asarray(state["status_counts"], dtype=np.int64)
    # A state written before a status code was added (UNREAD) has fewer counts: the new ones are 0.
    window.status_counts = np.pad(counts, (0, max(0, _STATUS_CODES - counts.size)))
    return window


def _finite(value: object) -> float | None:
    if value is None:
        return None
    number = float(value)  # type: ignore[arg-type]
    return number if math.isfinite(number) else None

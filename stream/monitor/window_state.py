"""One field's state inside one open window, and its summary when the window closes.

The sketches (``driftline.detectors.sketches``) summarise accepted values; on top of them this
module counts the status of *every* decoded event (accepted or rejected) so that nulls, NaN/inf,
out-of-range values and unseen categories are visible even when the contract sent those events to
the dead-letter topic.
"""

from __future__ import annotations

import base64
import math

import numpy as np

from driftline.detectors import distances, sketch_encoding, sketches
from driftline.schemas.codec import FieldStatus
from driftline.schemas.contract import FieldContract

from .profile import FeatureProfile
from .results import FeatureWindow

__all__ = ["WindowFeatureState", "close_feature_window", "new_feature_state"]

_STATUS_CODES = max(int(s) for s in FieldStatus) + 1

# Numeric values reach the sketch in chunks of this many values of the window's own sequence.
# Welford/Chan moments depend (in the last bits) on how values are grouped; fixing the grouping to
# the window's sequence, not to the caller's batches, makes mean and variance bit-identical however
# the stream was batched — a replay equals the live run.
SKETCH_CHUNK = 4096


class WindowFeatureState:
    """Sketch of the accepted values plus status counts of all decoded events."""

    __slots__ = ("kind", "sketch", "status_counts", "_pending", "_pending_count")

    def __init__(self, kind: str, sketch: object) -> None:
        self.kind = kind
        self.sketch = sketch
        self.status_counts = np.zeros(_STATUS_CODES, dtype=np.int64)
        self._pending: list[np.ndarray] = []
        self._pending_count = 0

    def add(self, accepted_values: np.ndarray, accepted_status: np.ndarray, all_status: np.ndarray) -> None:
        """Add one window's slice of a batch."""
        if all_status.size:
            self.status_counts += np.bincount(all_status.astype(np.int64), minlength=_STATUS_CODES)
        if self.kind == "numeric":
            usable = accepted_values[accepted_status == FieldStatus.OK]
            if usable.size:
                self._pending.append(usable)
                self._pending_count += usable.size
                if self._pending_count >= SKETCH_CHUNK:
                    self._drain(whole_chunks_only=True)
        else:
            # Unseen values of an open ("count") category set are accepted: keep them in the
            # frequent-items sketch so the alert can name the value that floods the feature.
            keep = (accepted_status == FieldStatus.OK) | (accepted_status == FieldStatus.UNSEEN_CATEGORY)
            usable = accepted_values[keep]
            if usable.size:
                self.sketch = sketches.categorical_add(self.sketch, usable)  # type: ignore[arg-type]

    def count(self, status: FieldStatus) -> int:
        return int(self.status_counts[int(status)])

    def _drain(self, *, whole_chunks_only: bool) -> None:
        if not self._pending_count:
            return
        values = np.concatenate(self._pending) if len(self._pending) > 1 else self._pending[0]
        take = (values.size // SKETCH_CHUNK) * SKETCH_CHUNK if whole_chunks_only else values.size
        for start in range(0, take, SKETCH_CHUNK):
            self.sketch = sketches.numeric_add(self.sketch, values[start : min(take, start + SKETCH_CHUNK)])  # type: ignore[arg-type]
        rest = values[take:]
        self._pending = [rest] if rest.size else []
        self._pending_count = int(rest.size)

    def to_state(self) -> dict[str, object]:
        """Plain, JSON-serialisable state (sketch bytes and pending values base64-encoded)."""
        if self.kind == "numeric":
            sketch_bytes = sketch_encoding.numeric_to_bytes(self.sketch)  # type: ignore[arg-type]
            pending = np.concatenate(self._pending) if self._pending else np.zeros(0)
        else:
            sketch_bytes = sketch_encoding.categorical_to_bytes(self.sketch)  # type: ignore[arg-type]
            pending = np.zeros(0)
        return {
            "kind": self.kind,
            "status_counts": self.status_counts.tolist(),
            "sketch": base64.b64encode(sketch_bytes).decode("ascii"),
            "pending": base64.b64encode(pending.astype("<f8").tobytes()).decode("ascii"),
        }

    @classmethod
    def from_state(cls, state: dict[str, object]) -> WindowFeatureState:
        kind = str(state["kind"])
        sketch = sketch_encoding.window_state_from_bytes(base64.b64decode(str(state["sketch"])))
        restored = cls(kind, sketch)
        restored.status_counts = np.asarray(state["status_counts"], dtype=np.int64)
        pending = np.frombuffer(base64.b64decode(str(state["pending"])), dtype="<f8").astype(np.float64)
        if pending.size:
            restored._pending, restored._pending_count = [pending], int(pending.size)
        return restored

    def finished_sketch(self) -> object:
        """The sketch with every pending value added (call once the window has closed)."""
        if self.kind == "numeric":
            self._drain(whole_chunks_only=False)
        return self.sketch


def new_feature_state(spec: FieldContract, profile: FeatureProfile) -> WindowFeatureState:
    """Empty window state of ``spec``, binned like its reference profile."""
    if profile.kind == "categorical":
        return WindowFeatureState("categorical", sketches.categorical_initialize(list(profile.categories)))
    return WindowFeatureState("numeric", sketches.numeric_initialize(profile.full_bin_edges))


def close_feature_window(
    state: WindowFeatureState,
    profile: FeatureProfile,
    *,
    model: str,
    model_version: str,
    window_start_ms: int,
    window_length_ms: int,
    false_alarm_rate: float,
    min_psi: float,
) -> FeatureWindow:
    """Summarise a closed window and compare it with the reference profile."""
    reference_counts = profile.counts_array
    nulls = state.count(FieldStatus.NULL) + state.count(FieldStatus.NULL_NOT_ALLOWED)
    common = dict(
        model=model,
        model_version=model_version,
        feature=profile.name,
        kind=profile.kind,
        window_start_ms=window_start_ms,
        window_length_ms=window_length_ms,
        nulls=nulls,
        non_finite=state.count(FieldStatus.NOT_FINITE),
        out_of_range=state.count(FieldStatus.OUT_OF_RANGE),
        unseen=state.count(FieldStatus.UNSEEN_CATEGORY),
    )
    if state.kind == "numeric":
        result = sketches.numeric_result(state.finished_sketch())  # type: ignore[arg-type]
        count = int(result["count"])
        scores = distances.histogram_distances(reference_counts, result["histogram"], profile.bin_points)
        return FeatureWindow(
            **common,  # type: ignore[arg-type]
            count=count,
            minimum=_finite(result["min"]),
            maximum=_finite(result["max"]),
            mean=_finite(result["mean"]),
            variance=_finite(result["variance"]),
            psi=_finite(scores["psi"]),
            jensen_shannon=_finite(scores["jensen_shannon"]),
            ks=_finite(scores["ks"]),
            wasserstein=_finite(scores["wasserstein"]),
            psi_threshold=max(profile.psi_threshold(count, false_alarm_rate), min_psi) if count else None,
            quantiles={k: float(v) for k, v in (result.get("quantiles") or {}).items() if _finite(v) is not None},
        )
    result = sketches.categorical_result(state.sketch)  # type: ignore[arg-type]
    known = [int(result["category_counts"][c]) for c in profile.categories]
    window_counts = np.asarray(known + [int(result["unseen"])], dtype=np.int64)
    count = int(window_counts.sum())
    scores = distances.histogram_distances(reference_counts, window_counts)
    return FeatureWindow(
        **common,  # type: ignore[arg-type]
        count=count,
        minimum=None,
        maximum=None,
        mean=None,
        variance=None,
        psi=_finite(scores["psi"]),
        jensen_shannon=_finite(scores["jensen_shannon"]),
        ks=None,
        wasserstein=None,
        psi_threshold=max(profile.psi_threshold(count, false_alarm_rate), min_psi) if count else None,
        top_items=tuple((str(value), int(estimate)) for value, estimate in result["top_items"][:10]),
    )


def _finite(value: object) -> float | None:
    if value is None:
        return None
    number = float(value)  # type: ignore[arg-type]
    return number if math.isfinite(number) else None

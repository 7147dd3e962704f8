"""The per-event detectors of each model version: Page–Hinkley and the spread test on every numeric field, ADWIN on the score, the joint-drift test.

A version's detectors (its *track*) start from the calibrated states stored in its reference profile,
re-targeted to the model's false-alarm rate per event (:mod:`~driftline.stream.monitor.budget`), and
are fed the accepted events of that version in arrival order; what they report are
:class:`DetectorHit` values, which the engine turns into signals and (de-duplicated) alerts. When the
model's event rate changes, every track is re-targeted at the same event, whatever the batching.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from driftline.detectors.adwin import ADWIN
from driftline.detectors.joint import JointShift
from driftline.detectors.page_hinkley import PageHinkley
from driftline.detectors.scale import ScaleShift
from driftline.schemas.contract import FieldContract
from driftline.schemas.results import DecodedBatch, FieldStatus

from .profile import ReferenceProfile
from .results import JOINT_FEATURE

__all__ = ["DetectorHit", "DetectorTracks", "RetargetAt", "Track"]


@dataclass(frozen=True)
class DetectorHit:
    """A detector fired on one event of a batch."""

    model_version: str
    feature: str
    detector: str  # page_hinkley | adwin | scale_shift | joint_shift
    statistic: float
    threshold: float
    row: int  # position of the event in the batch's decoded rows
    event_index: int  # position of the event in the version's accepted stream (0-based)
    evidence: tuple[tuple[str, float], ...] = ()  # joint_shift: the features that changed most, with their shares


_DETECTOR_ORDER = {"page_hinkley": 0, "adwin": 1, "scale_shift": 2, "joint_shift": 3}


@dataclass(frozen=True)
class RetargetAt:
    """From the batch's decoded row ``row`` on, every detector runs at ``false_alarm_rate`` per event."""

    row: int
    false_alarm_rate: float


@dataclass
class Track:
    """Streaming detectors of one model version, fed in arrival order."""

    profile: ReferenceProfile
    page_hinkley: dict[str, PageHinkley]
    adwin: dict[str, ADWIN]
    scale_shift: dict[str, ScaleShift]
    joint: JointShift | None = None  # over profile.joint_fields
    accepted_seen: int = 0
    false_alarm_rate: float | None = None  # per event, per detector: where the thresholds are aimed

    @classmethod
    def start(cls, profile: ReferenceProfile, fields: Sequence[FieldContract], false_alarm_rate: float) -> Track:
        """Fresh detectors, in the calibrated states of ``profile`` aimed at ``false_alarm_rate``, for the numeric ``fields``."""
        page_hinkley: dict[str, PageHinkley] = {}
        adwin: dict[str, ADWIN] = {}
        scale_shift: dict[str, ScaleShift] = {}
        for spec in fields:
            feature = profile.features[spec.name]
            if feature.kind != "numeric":
                continue
            if feature.page_hinkley is not None:
                page_hinkley[spec.name] = PageHinkley.from_state(feature.page_hinkley)
            if feature.adwin is not None:
                adwin[spec.name] = ADWIN.from_state(feature.adwin)
            if feature.scale_shift is not None:  # profiles written before the spread test have none
                scale_shift[spec.name] = ScaleShift.from_state(feature.scale_shift)
        joint = JointShift.from_state(profile.joint) if profile.joint is not None else None
        track = cls(profile, page_hinkley, adwin, scale_shift, joint)
        track.retarget(false_alarm_rate)
        return track

    def retarget(self, false_alarm_rate: float) -> None:
        """Aim every detector at ``false_alarm_rate`` per event (nothing to do if they already are)."""
        if false_alarm_rate == self.false_alarm_rate:
            return
        for detectors in (self.page_hinkley, self.adwin, self.scale_shift):
            for detector in detectors.values():
                detector.retarget(false_alarm_rate)
        if self.joint is not None:
            self.joint.retarget(false_alarm_rate)
        self.false_alarm_rate = false_alarm_rate

    def run(self, version: str, batch: DecodedBatch, rows: np.ndarray, retargets: Sequence[RetargetAt] = ()) -> list[DetectorHit]:
        """Feed the accepted events among ``rows`` (a mask of the batch's decoded rows) to every detector.

        At each of ``retargets`` (in row order) the detectors are re-targeted before the events
        from that row on; after the batch they stand at the last one.
        """
        accepted = np.flatnonzero(rows & batch.accepted)
        hits: list[DetectorHit] = []
        done = 0
        for change in retargets:
            stop = int(np.searchsorted(accepted, change.row))
            hits.extend(self._run(version, batch, accepted[done:stop]))
            done = stop
            self.retarget(change.false_alarm_rate)
        hits.extend(self._run(version, batch, accepted[done:]))
        # In event order, so the signals' order does not depend on where a batch ended.
        return sorted(hits, key=lambda hit: (hit.row, _DETECTOR_ORDER[hit.detector], hit.feature))

    def _run(self, version: str, batch: DecodedBatch, accepted: np.ndarray) -> list[DetectorHit]:
        base_index = self.accepted_seen
        self.accepted_seen += len(accepted)
        hits: list[DetectorHit] = []
        if not len(accepted):
            return hits
        detector_sets: tuple[tuple[str, dict[str, Any]], ...] = (
            ("page_hinkley", self.page_hinkley), ("adwin", self.adwin), ("scale_shift", self.scale_shift),
        )
        for name, detectors in detector_sets:
            for feature, detector in detectors.items():
                status = batch.status[feature][accepted]
                usable = accepted[status == FieldStatus.OK]
                fired = detector.update_many(self._residual(feature, batch, usable))
                for hit, statistic, threshold in zip(fired.tolist(), detector.signal_statistics, detector.signal_thresholds):
                    row = int(usable[hit])
                    event_index = base_index + int(np.searchsorted(accepted, row))
                    hits.append(DetectorHit(version, feature, name, statistic, threshold, row, event_index))
        if self.joint is not None:
            hits.extend(self._run_joint(version, batch, accepted, base_index))
        return hits

    def _residual(self, feature: str, batch: DecodedBatch, rows: np.ndarray) -> np.ndarray:
        """The values of ``rows``, less what their hour adds for a field with a daily or weekly cycle."""
        values: np.ndarray = batch.values[feature][rows]
        cycle = self.profile.features[feature].seasonal_cycle
        return values if cycle is None else cycle.remove(values, batch.event_time_ms[rows])

    def _run_joint(self, version: str, batch: DecodedBatch, accepted: np.ndarray, base_index: int) -> list[DetectorHit]:
        """The joint-drift test on the accepted events (a field without a usable value: NaN, the row is skipped)."""
        assert self.joint is not None
        names = self.profile.joint_fields
        matrix = np.empty((len(accepted), len(names)))
        for column, name in enumerate(names):
            values = self._residual(name, batch, accepted)
            matrix[:, column] = np.where(batch.status[name][accepted] == FieldStatus.OK, values, np.nan)
        fired = self.joint.update_many(matrix)
        hits = []
        for hit, statistic, threshold, shares in zip(
            fired.tolist(), self.joint.signal_statistics, self.joint.signal_thresholds, self.joint.signal_contributions, strict=True
        ):
            ranked = sorted(zip(names, shares.tolist(), strict=True), key=lambda item: (-item[1], item[0]))
            evidence = tuple((name, share) for name, share in ranked if share > 0.0)
            hits.append(DetectorHit(
                version, JOINT_FEATURE, "joint_shift", statistic, threshold, int(accepted[hit]), base_index + hit, evidence
            ))
        return hits

    def to_state(self) -> dict[str, Any]:
        return {
            "accepted_seen": self.accepted_seen,
            "false_alarm_rate": self.false_alarm_rate,
            "page_hinkley": {name: d.to_state() for name, d in sorted(self.page_hinkley.items())},
            "adwin": {name: d.to_state() for name, d in sorted(self.adwin.items())},
            "scale_shift": {name: d.to_state() for name, d in sorted(self.scale_shift.items())},
            "joint": None if self.joint is None else self.joint.to_state(),
        }

    def restore(self, state: dict[str, Any]) -> None:
        self.accepted_seen = int(state["accepted_seen"])
        self.page_hinkley = {n: PageHinkley.from_state(d) for n, d in state["page_hinkley"].items()}
        self.adwin = {n: ADWIN.from_state(d) for n, d in state["adwin"].items()}
        self.scale_shift = {n: ScaleShift.from_state(d) for n, d in state["scale_shift"].items()}
        self.joint = None if state["joint"] is None else JointShift.from_state(state["joint"])
        self.false_alarm_rate = float(state["false_alarm_rate"])


class DetectorTracks:
    """The tracks of the model versions seen recently, each started on first sight from its version's profile.

    At most ``max_live`` tracks are kept: at the end of each batch, the tracks beyond it are dropped,
    the version whose last event came earliest first. A stream that sends ever new versions — one per
    deployment, or a producer writing a build id there — must not grow the state without bound
    (10,000 versions took the state from 0.6 to 10 MB and the memory from 283 MB to 1.3 GB before
    this bound). A dropped version that comes back starts again from its profile's calibrated
    detectors. Results stay independent of the batching as long as no version sees more than
    ``max_live`` other versions between two of its events; beyond that (a flood), bounded memory
    wins over bit-identical replays.

    Parameters
    ----------
    profile_for
        The reference profile of a model version (the engine's fallback for unknown versions).
    fields
        The contract's monitored fields.
    max_live
        The most versions whose detectors are kept.
    """

    def __init__(
        self,
        profile_for: Callable[[str], ReferenceProfile],
        fields: Sequence[FieldContract],
        max_live: int = 16,
        *,
        false_alarm_rate: float,
    ) -> None:
        if max_live < 1:
            raise ValueError(f"max_live must be at least 1, got {max_live}")
        self._profile_for = profile_for
        self._fields = tuple(fields)
        self.max_live = max_live
        self.false_alarm_rate = false_alarm_rate  # per event, per detector, as of the end of the last batch
        self._tracks: dict[str, Track] = {}
        self._last_seen: dict[str, int] = {}  # version -> sequence number of its last decoded event
        self.dropped = 0  # tracks dropped to keep within max_live (this engine's life)

    def __len__(self) -> int:
        return len(self._tracks)

    def track(self, version: str) -> Track:
        track = self._tracks.get(version)
        if track is None:
            track = self._tracks[version] = Track.start(self._profile_for(version), self._fields, self.false_alarm_rate)
        return track

    def run(
        self, version: str, batch: DecodedBatch, rows: np.ndarray, last_seen: int, retargets: Sequence[RetargetAt] = ()
    ) -> list[DetectorHit]:
        """Feed the version's rows of the batch; ``last_seen`` is the sequence number of its last event."""
        self._last_seen[version] = last_seen
        return self.track(version).run(version, batch, rows, retargets)

    def retarget(self, false_alarm_rate: float) -> None:
        """Aim every track at ``false_alarm_rate`` (at the end of a batch: also those it did not touch)."""
        self.false_alarm_rate = false_alarm_rate
        for track in self._tracks.values():
            track.retarget(false_alarm_rate)

    def trim(self) -> None:
        """Drop the tracks beyond ``max_live``, the least recently seen first (call at the end of a batch)."""
        if len(self._tracks) <= self.max_live:
            return
        for version in sorted(self._tracks, key=lambda v: (self._last_seen.get(v, -1), v))[: len(self._tracks) - self.max_live]:
            del self._tracks[version]
            self._last_seen.pop(version, None)
            self.dropped += 1

    def to_state(self) -> dict[str, Any]:
        return {
            version: {**track.to_state(), "last_seen": self._last_seen.get(version, -1)}
            for version, track in sorted(self._tracks.items())
        }

    def restore(self, state: dict[str, Any]) -> None:
        for version, saved in state.items():
            self.track(version).restore(saved)
            self._last_seen[version] = int(saved["last_seen"])

"""Window verdicts: what a closed window says against the reference and the contract's budgets.

Pure functions of a window's summary; the engine turns verdicts into alerts (de-duplicated by
episode). Kept apart from the engine so each rule can be read — and tested — on its own.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from driftline.schemas.contract import FieldContract

from .config import EngineConfig
from .profile import FeatureProfile
from .results import AlertKind, FeatureWindow, ModelWindow

__all__ = ["Verdict", "feature_window_verdicts", "format_number", "model_window_verdicts"]


@dataclass(frozen=True)
class Verdict:
    """One rule a closed window breaks."""

    kind: AlertKind  # DISTRIBUTION_DRIFT or DATA_QUALITY
    feature: str | None
    detector: str  # psi | unseen_category | invalid_values | null_fraction | rejections
    score: float
    threshold: float
    message: str


def format_number(value: float | None) -> str:
    """Four significant digits, or ``n/a``."""
    return "n/a" if value is None else f"{value:.4g}"


def feature_window_verdicts(
    spec: FieldContract, profile: FeatureProfile, summary: FeatureWindow, events: int, config: EngineConfig
) -> list[Verdict]:
    """Rules one field's closed window breaks; ``events`` counts the window's events whose values were read."""
    verdicts: list[Verdict] = []
    name = spec.name
    psi, threshold = summary.psi, summary.psi_threshold
    if summary.count >= config.min_window_count and psi is not None and threshold is not None and psi > threshold:
        if summary.kind == "categorical":
            evidence = "most frequent: " + ", ".join(f"{value} ({count})" for value, count in summary.top_items[:3])
        else:
            evidence = (
                f"KS {format_number(summary.ks)}; window mean {format_number(summary.mean)} "
                f"vs reference {format_number(profile.mean)}"
            )
        verdicts.append(Verdict(
            AlertKind.DISTRIBUTION_DRIFT, name, "psi", psi, threshold,
            f"{name}: PSI {psi:.3f} > {threshold:.3f} against the reference "
            f"(Jensen-Shannon {format_number(summary.jensen_shannon)}; {evidence})",
        ))
    if events < config.min_window_count:
        return verdicts
    unseen_fraction = summary.unseen / events
    if unseen_fraction > config.max_unseen_fraction:
        known = set(profile.categories)
        new_values = [value for value, _ in summary.top_items if value not in known][:3]
        verdicts.append(Verdict(
            AlertKind.DATA_QUALITY, name, "unseen_category", unseen_fraction, config.max_unseen_fraction,
            f"{name}: {summary.unseen} of {events} events carry categories unseen in the contract"
            + (f" (most frequent: {', '.join(repr(v) for v in new_values)})" if new_values else ""),
        ))
    invalid_fraction = (summary.non_finite + summary.out_of_range) / events
    if invalid_fraction > config.max_invalid_fraction:
        verdicts.append(Verdict(
            AlertKind.DATA_QUALITY, name, "invalid_values", invalid_fraction, config.max_invalid_fraction,
            f"{name}: {summary.non_finite} NaN/inf and {summary.out_of_range} out-of-range values in {events} events",
        ))
    budget = spec.max_null_fraction if spec.max_null_fraction is not None else 0.0
    # Binomial slack (3 standard errors) keeps an on-budget stream from alerting by chance.
    null_limit = budget + 3.0 * math.sqrt(max(budget * (1.0 - budget), 1.0 / events) / events)
    if summary.nulls / events > null_limit:
        verdicts.append(Verdict(
            AlertKind.DATA_QUALITY, name, "null_fraction", summary.nulls / events, null_limit,
            f"{name}: {summary.nulls} of {events} values missing, budget {budget:.1%} "
            f"(the reference had {profile.null_fraction:.1%})",
        ))
    return verdicts


def model_window_verdicts(window: ModelWindow, config: EngineConfig) -> list[Verdict]:
    """Rules a model's closed window breaks (the share of dead-lettered events)."""
    if not window.events or window.rejected / window.events <= config.max_rejected_fraction:
        return []
    top_reason, top_count = max(window.rejected_by_reason, key=lambda item: (item[1], item[0]))
    return [Verdict(
        AlertKind.DATA_QUALITY, None, "rejections", window.rejected / window.events, config.max_rejected_fraction,
        f"{window.rejected} of {window.events} events rejected in the window "
        f"(mostly {top_reason}: {top_count}); they are in the dead-letter topic",
    )]

from __future__ import annotations

import dataclasses

import pytest

from driftline.schemas.contract import Contract
from driftline.stream.monitor.profile import ReferenceProfile
from driftline.stream.monitor.results import FeatureWindow, ModelWindow
from driftline.stream.monitor.verdicts import EngineConfig, feature_window_verdicts, model_window_verdicts

CONFIG = EngineConfig()


def _window(feature: str, kind: str = "numeric", **changes: object) -> FeatureWindow:
    base = FeatureWindow(
        model="credit_risk", model_version="v1", feature=feature, kind=kind, window_start_ms=0,
        window_length_ms=60_000, count=1000, nulls=0, non_finite=0, out_of_range=0, unseen=0,
        minimum=0.0, maximum=1.0, mean=0.5, variance=0.1, psi=0.01, jensen_shannon=0.01, ks=0.01,
        wasserstein=0.01, psi_threshold=0.1,
    )
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def _spec(contract: Contract, name: str):
    return next(f for f in contract.fields if f.name == name)


def test_a_clean_window_breaks_no_rule(contract: Contract, profile: ReferenceProfile) -> None:
    spec = _spec(contract, "annual_income")
    assert feature_window_verdicts(spec, profile.features[spec.name], _window(spec.name), 1000, CONFIG) == []


def test_psi_above_its_threshold_is_a_distribution_drift(contract: Contract, profile: ReferenceProfile) -> None:
    spec = _spec(contract, "annual_income")
    verdicts = feature_window_verdicts(spec, profile.features[spec.name], _window(spec.name, psi=0.3), 1000, CONFIG)
    assert [(v.kind, v.detector) for v in verdicts] == [("distribution_drift", "psi")]
    assert verdicts[0].score == 0.3 and "PSI 0.300 > 0.100" in verdicts[0].message
    small = _window(spec.name, psi=0.3, count=CONFIG.min_window_count - 1)
    assert feature_window_verdicts(spec, profile.features[spec.name], small, 1000, CONFIG) == []


def test_unseen_categories_are_named(contract: Contract, profile: ReferenceProfile) -> None:
    spec = _spec(contract, "channel")
    window = _window("channel", kind="categorical", unseen=300, top_items=(("web", 400), ("partner_api", 300)))
    verdicts = feature_window_verdicts(spec, profile.features["channel"], window, 1000, CONFIG)
    unseen = [v for v in verdicts if v.detector == "unseen_category"]
    assert len(unseen) == 1 and "'partner_api'" in unseen[0].message and "'web'" not in unseen[0].message


@pytest.mark.parametrize(("nulls", "fires"), [(55, False), (120, True)])
def test_null_budget_has_binomial_slack(contract: Contract, profile: ReferenceProfile, nulls: int, fires: bool) -> None:
    spec = _spec(contract, "employment_type")  # budget 5 %: 3 standard errors at n=1000 is ~2.1 %
    window = _window(spec.name, kind="categorical", nulls=nulls)
    verdicts = feature_window_verdicts(spec, profile.features[spec.name], window, 1000, CONFIG)
    assert any(v.detector == "null_fraction" for v in verdicts) is fires


def test_invalid_values_and_rejections(contract: Contract, profile: ReferenceProfile) -> None:
    spec = _spec(contract, "debt_to_income")
    window = _window(spec.name, non_finite=6, out_of_range=9)
    verdicts = feature_window_verdicts(spec, profile.features[spec.name], window, 1000, CONFIG)
    assert [v.detector for v in verdicts] == ["invalid_values"] and "6 NaN/inf and 9 out-of-range" in verdicts[0].message
    model_window = ModelWindow("credit_risk", "v1", 0, 60_000, events=1000, accepted=900, rejected=100,
                               rejected_by_reason=(("missing_field", 70), ("not_finite", 30)))
    (rejections,) = model_window_verdicts(model_window, CONFIG)
    assert rejections.score == pytest.approx(0.1) and "mostly missing_field: 70" in rejections.message
    assert model_window_verdicts(dataclasses.replace(model_window, accepted=990, rejected=10), CONFIG) == []

"""The challenger in the engine: it beats a stale champion after the outcome's relation changes, and what it
does depends only on the events — not on how predictions and labels interleave, are batched or restarted."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
from label_streams import concept_change_stream

from driftline.schemas.codec import Codec
from driftline.schemas.contract import Contract
from driftline.schemas.contract_catalog import Catalog
from driftline.stream.demo.generator import SyntheticStream
from driftline.stream.monitor.engine import EngineConfig, MonitorEngine
from driftline.stream.monitor.profile import ReferenceProfile, build_reference_profile
from driftline.stream.monitor.results import BatchResult, to_canonical_json

N = 12_000  # 20 events/s: ten minutes, ten windows
CHANGE = N // 2
DELAY_MS = 30_000
CONFIG = EngineConfig(window_length_ms=60_000, allowed_lateness_ms=60_000, label_horizon_ms=600_000, label_grace_ms=60_000,
                      challenger="default")


@pytest.fixture(scope="module")
def stream(contract: Contract) -> dict[str, object]:
    """Predictions, and labels that follow the score until CHANGE, then the applicant's income instead."""
    return concept_change_stream(contract, N, CHANGE)


def _run(contract: Contract, profile: ReferenceProfile, catalog: Catalog, stream: dict[str, object], plan: list[tuple[str, int, int]],
         restart_at: int | None = None) -> tuple[BatchResult, MonitorEngine]:
    """Feed ("p", a, b) prediction slices and ("l", a, b) label slices in the plan's order; restart from state after a step."""
    engine = MonitorEngine(contract, profile, CONFIG)
    codec = Codec(catalog)
    total = BatchResult()
    ids, times, labels = stream["ids"], stream["times"], stream["labels"]
    for step, (kind, a, b) in enumerate(plan):
        if kind == "p":
            total.extend(engine.process(codec.decode_batch(stream["payloads"][a:b], model=contract.model)))  # type: ignore[index]
        else:
            rows = stream["label_order"][a:b]  # type: ignore[index]
            total.extend(engine.process_labels([ids[i] for i in rows], times[rows] + DELAY_MS, labels[rows]))  # type: ignore[index]
        if step == restart_at:
            state = json.loads(json.dumps(engine.to_state()))
            engine = MonitorEngine.from_state(state, contract, profile, CONFIG)
    total.extend(engine.flush())
    return total, engine


def _plan(rng: random.Random, labels_ahead: bool, order: np.ndarray) -> list[tuple[str, int, int]]:
    """Both topics in chunks of random sizes, interleaved at random (labels may run ahead of predictions)."""
    def chunks() -> list[tuple[int, int]]:
        out, start = [], 0
        while start < N:
            end = min(N, start + rng.randint(1, 2_500))
            out.append((start, end))
            start = end
        return out

    predictions, labels = chunks(), chunks()
    plan: list[tuple[str, int, int]] = []
    while predictions or labels:
        take_label = labels and (not predictions or (labels[0][0] <= predictions[0][0] if labels_ahead else rng.random() < 0.4))
        if take_label and not labels_ahead and predictions and int(order[labels[0][0]:labels[0][1]].max()) >= predictions[0][0]:
            take_label = False  # this plan keeps labels behind their predictions
        kind, (a, b) = ("l", labels.pop(0)) if take_label else ("p", predictions.pop(0))
        plan.append((kind, a, b))
    return plan


def test_the_challenger_beats_a_stale_champion_only_after_the_relation_changed(
    contract: Contract, profile: ReferenceProfile, catalog: Catalog, stream: dict[str, object]
) -> None:
    total, engine = _run(contract, profile, catalog, stream, _plan(random.Random(1), False, stream["label_order"]))  # type: ignore[arg-type]
    windows = total.challenger_windows
    change_ms = int(stream["times"][CHANGE])  # type: ignore[index]
    assert sum(w.count for w in windows) == N  # every labelled prediction compared once, in its window
    before = [w for w in windows if w.window_start_ms + 60_000 <= change_ms]
    after = [w for w in windows if w.window_start_ms > change_ms and w.count >= 1_000]  # (the last window has 5 events)
    assert before and not any(w.challenger_better for w in before)
    # Measured: before the change the challenger is right on 0.72-0.77 of the labelled predictions and the
    # champion on 0.76-0.80; after it, the champion on 0.30-0.32 and the challenger on 0.84-0.87.
    assert len(after) == 4 and all(w.challenger_better for w in after), [(w.champion_accuracy, w.challenger_accuracy) for w in after]
    recommended = [a for a in total.alerts if a.kind == "challenger_better"]
    assert recommended and all(a.window_start_ms is not None and a.window_start_ms + 60_000 > change_ms for a in recommended)
    run = engine.challenger
    assert run is not None and (run.counts.scored, run.counts.learned) == (N, N) and run.held == 0
    assert engine._observed is not None and engine._observed.late == 0  # no label too late to be learned


def _labelled_profile(contract: Contract) -> ReferenceProfile:
    columns = SyntheticStream(contract, seed=3).columns(30_000, seed_offset=1)
    labels = (np.random.default_rng(23).random(30_000) < columns["prediction_score"]).astype(float)
    return build_reference_profile(contract, columns, model_version="v1", labels=labels)


def test_what_the_challenger_and_the_concept_test_do_depends_only_on_the_events(
    contract: Contract, catalog: Catalog, stream: dict[str, object]
) -> None:
    # The labelled profile adds the concept-drift test and the estimate: a sequential test on the
    # labels, which must see them in the same order however the topics' reads interleaved.
    profile = _labelled_profile(contract)

    def outcome(total: BatchResult) -> str:
        label_signals = [s for s in total.signals if s.detector == "concept_error"]
        # The incidents' ends too (in any order: each is reported in the call its clock passed it in).
        resolutions = sorted(total.resolved_alerts, key=lambda r: r.alert_id)
        return to_canonical_json([total.challenger_windows, total.alerts, label_signals, resolutions])

    reference, _ = _run(contract, profile, catalog, stream, _plan(random.Random(2), False, stream["label_order"]))  # type: ignore[arg-type]
    assert {a.kind for a in reference.alerts} >= {"challenger_better", "concept_drift"}
    assert {r.kind for r in reference.resolved_alerts} >= {"challenger_better"}
    expected = outcome(reference)
    for seed, labels_ahead, restart in ((3, True, None), (4, False, 5), (5, True, 3), (6, False, 11)):
        plan = _plan(random.Random(seed), labels_ahead, stream["label_order"])  # type: ignore[arg-type]
        total, _ = _run(contract, profile, catalog, stream, plan, restart_at=restart)
        assert outcome(total) == expected, (seed, labels_ahead, restart)


def test_a_challenger_needs_labels_and_a_classifier() -> None:
    with pytest.raises(ValueError, match="needs label_horizon_ms"):
        EngineConfig(challenger="default")
    with pytest.raises(ValueError, match="cannot import it"):
        from driftline.stream.monitor.challenger import load_classifier

        load_classifier("no_such_module:factory")


def test_a_sampled_challenger_takes_the_same_share_of_ids_in_every_run(
    contract: Contract, profile: ReferenceProfile, catalog: Catalog, stream: dict[str, object]
) -> None:
    from driftline.stream.monitor.challenger import Challenger, ChallengerRun, default_classifier

    run = ChallengerRun(Challenger(default_classifier()), ["x"], window_length_ms=60_000, horizon_ms=60_000, lateness_ms=0, sample=0.3)
    ids = stream["ids"]
    taken = [i for i in ids if run.takes(i)]  # type: ignore[attr-defined]
    assert abs(len(taken) / N - 0.3) < 0.02  # 12,000 ids: a binomial standard deviation of 0.004
    sampled = MonitorEngine(contract, profile, EngineConfig(**{**CONFIG.__dict__, "challenger_sample": 0.3}))
    codec = Codec(catalog)
    times, labels = stream["times"], stream["labels"]
    sampled.process(codec.decode_batch(stream["payloads"], model=contract.model))  # type: ignore[arg-type]
    result = sampled.process_labels(ids, times + DELAY_MS, labels)  # type: ignore[arg-type, operator]
    result.extend(sampled.flush())
    assert sampled.challenger is not None and sampled.challenger.counts.scored == sampled.challenger.counts.learned == len(taken)
    assert sum(w.count for w in result.challenger_windows) == len(taken)

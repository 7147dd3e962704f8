"""How the worker builds runners from the topics it found at start (no broker, no database needed here)."""

from __future__ import annotations

from typing import Any, cast

import pytest

from driftline.schemas.contract_catalog import Catalog
from driftline.stream.kafka.connection import KafkaConnection
from driftline.stream.kafka.errors import WorkerError
from driftline.stream.kafka.settings import WorkerSettings
from driftline.stream.kafka.worker import TopicLayout, WorkerRuntime

TOPIC = "predictions.credit_risk"


def _runtime(partitions: int) -> WorkerRuntime:
    settings = WorkerSettings(kafka=KafkaConnection("127.0.0.1:1"), database_url="sqlite://", models=("credit_risk",), metrics_port=None)
    catalog = Catalog.load()
    runtime = WorkerRuntime(
        settings=settings, catalog=catalog, contracts={"credit_risk": catalog.contract("credit_risk")}, profiles={},
        database=cast(Any, None), deadletters=cast(Any, None),
    )
    runtime.layout = TopicLayout({TOPIC: partitions}, {(TOPIC, p): 0 for p in range(partitions)})
    return runtime


def test_a_partition_beyond_those_found_at_start_stops_the_worker() -> None:
    # A model's partition count decides how its windows are made (one engine, or partials merged):
    # a topic that grew while the worker ran must not get a runner of the wrong kind.
    with pytest.raises(WorkerError, match=r"predictions\.credit_risk now has more than the 1 partition\(s\) it had .* restart the workers"):
        _runtime(1).make_runner("credit_risk", TOPIC, 1)


def test_the_partials_topic_is_the_groups_own_by_default() -> None:
    assert _runtime(2).settings.partials_topic == "driftline.window-partials"
    settings = WorkerSettings(kafka=KafkaConnection("b:1"), database_url="sqlite://", models=("credit_risk",), consumer_group="replay-7")
    assert settings.partials_topic == "replay-7.window-partials"
    with pytest.raises(ValueError, match="is also a model or the dead-letter topic"):
        WorkerSettings(kafka=KafkaConnection("b:1"), database_url="sqlite://", models=("credit_risk",), partials_topic=TOPIC)


def test_label_topics_follow_the_label_horizon_and_must_not_clash() -> None:
    from driftline.stream.monitor.engine import EngineConfig

    base = dict(kafka=KafkaConnection("b:1"), database_url="sqlite://", models=("credit_risk",))
    assert WorkerSettings(**base).label_topics == {}  # type: ignore[arg-type]  # no horizon: labels are not read
    labelled = WorkerSettings(**base, engine=EngineConfig(label_horizon_ms=3_600_000))  # type: ignore[arg-type]
    assert labelled.label_topics == {"credit_risk": "labels.credit_risk"}
    with pytest.raises(ValueError, match="label topics that are also other topics"):
        WorkerSettings(**base, engine=EngineConfig(label_horizon_ms=1), label_topic_prefix="predictions.")  # type: ignore[arg-type]


def test_label_topics_must_be_co_partitioned() -> None:
    from driftline.stream.kafka.worker import _check_copartitioned

    _check_copartitioned({TOPIC: "labels.credit_risk"}, {TOPIC: 3, "labels.credit_risk": 3})
    with pytest.raises(WorkerError, match=r"labels\.credit_risk has 2 partition\(s\) and predictions\.credit_risk has 1: .* co-partitioned"):
        _check_copartitioned({TOPIC: "labels.credit_risk"}, {TOPIC: 1, "labels.credit_risk": 2})


def test_feature_sets_get_their_own_topics_and_no_labels() -> None:
    from driftline.stream.monitor.engine import EngineConfig

    settings = WorkerSettings(kafka=KafkaConnection("b:1"), database_url="sqlite://", models=("credit_risk",),
                              feature_sets=("credit_features",), engine=EngineConfig(label_horizon_ms=60_000))
    assert settings.topics == {"credit_risk": TOPIC, "credit_features": "features.credit_features"}
    assert settings.label_topics == {"credit_risk": "labels.credit_risk"}  # a feature set has no labels
    assert (settings.stream_of("credit_features"), settings.stream_of("credit_risk")) == ("features", "predictions")
    only_features = WorkerSettings(kafka=KafkaConnection("b:1"), database_url="sqlite://", models=(), feature_sets=("credit_features",))
    assert only_features.monitored == ("credit_features",)
    with pytest.raises(ValueError, match="a name is given twice"):
        WorkerSettings(kafka=KafkaConnection("b:1"), database_url="sqlite://", models=("credit_risk",), feature_sets=("credit_risk",))
    with pytest.raises(ValueError, match="at least one model"):
        WorkerSettings(kafka=KafkaConnection("b:1"), database_url="sqlite://", models=())


def test_a_feature_set_named_as_a_model_is_refused_saying_which_option_to_use() -> None:
    from driftline.stream.kafka.worker import _check_kinds

    catalog = Catalog.load()
    settings = WorkerSettings(kafka=KafkaConnection("b:1"), database_url="sqlite://", models=("credit_features",))
    with pytest.raises(WorkerError, match=r"credit_features is a feature set .*: monitor it with --feature-set credit_features"):
        _check_kinds(settings, {"credit_features": catalog.contract("credit_features")})
    settings = WorkerSettings(kafka=KafkaConnection("b:1"), database_url="sqlite://", models=(), feature_sets=("credit_risk",))
    with pytest.raises(WorkerError, match=r"credit_risk is a model .*: monitor it with --model credit_risk"):
        _check_kinds(settings, {"credit_risk": catalog.contract("credit_risk")})

"""``driftline worker`` refuses to start with a clear message when something it needs is missing.

These checks run before the worker touches Kafka, so they need no broker (SQLite stands in for the
database; the worker's PostgreSQL path is tested in tests/integration).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from driftline.sinks.database import upgrade_database
from driftline.stream.cli.commands import main

UNREACHABLE = "127.0.0.1:1"


def _worker(database_url: str, *extra: str) -> list[str]:
    return ["worker", "--model", "credit_risk", "--bootstrap", UNREACHABLE, "--database-url", database_url, "--no-metrics", *extra]


def test_an_unmigrated_database_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(_worker(f"sqlite:///{tmp_path / 'empty.sqlite'}")) == 2
    assert "run `driftline db upgrade` first" in capsys.readouterr().err


def test_a_model_without_a_reference_profile_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = f"sqlite:///{tmp_path / 'migrated.sqlite'}"
    upgrade_database(url)
    assert main(_worker(url)) == 2
    assert "no reference profile for model 'credit_risk'" in capsys.readouterr().err


def test_an_unknown_model_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = f"sqlite:///{tmp_path / 'migrated.sqlite'}"
    assert main(["worker", "--model", "fraud", "--bootstrap", UNREACHABLE, "--database-url", url]) == 2
    assert "fraud" in capsys.readouterr().err


def test_db_upgrade_reports_the_revision(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = f"sqlite:///{tmp_path / 'new.sqlite'}"
    assert main(["db", "upgrade", "--database-url", url]) == 0
    assert capsys.readouterr().out.strip().endswith("is at revision 0006")


def test_bad_worker_settings_are_argument_errors(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["worker", "--model", "credit_risk", "--batch-seconds", "0"])
    assert exit_info.value.code == 2
    assert "must be > 0" in capsys.readouterr().err


def test_settings_out_of_range_are_reported_not_raised(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["worker", "--model", "credit_risk", "--database-url", "sqlite://", "--session-timeout", "2"]) == 2
    assert "session_timeout_seconds must be within [6, 300]" in capsys.readouterr().err


def test_label_options_reach_the_engine_and_need_a_horizon(capsys: pytest.CaptureFixture[str]) -> None:
    import argparse

    from driftline.stream.cli.worker import _settings

    parser = argparse.ArgumentParser()
    from driftline.stream.cli import worker

    worker.register(parser.add_subparsers())
    base = ["worker", "--model", "credit_risk", "--database-url", "sqlite://"]
    settings = _settings(parser.parse_args([*base, "--label-horizon", "7d", "--label-grace", "30m", "--label-capacity", "5000",
                                            "--label-topic-prefix", "truth."]))
    engine = settings.engine
    assert (engine.label_horizon_ms, engine.label_grace_ms, engine.label_capacity) == (604_800_000, 1_800_000, 5_000)
    assert settings.label_topics == {"credit_risk": "truth.credit_risk"}
    assert _settings(parser.parse_args(base)).label_topics == {}
    assert main([*base, "--label-capacity", "10"]) == 2
    assert "--label-grace, --label-capacity and --challenger need --label-horizon" in capsys.readouterr().err
    challenged = _settings(parser.parse_args([*base, "--label-horizon", "1h", "--challenger", "--challenger-sample", "0.25"]))
    assert (challenged.engine.challenger, challenged.engine.challenger_sample) == ("default", 0.25)
    with pytest.raises(SystemExit):
        main([*base, "--label-horizon", "soon"])
    assert "is not a duration" in capsys.readouterr().err


def test_feature_sets_are_named_by_their_own_option(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["worker", "--database-url", "sqlite://"]) == 2
    assert "name what to monitor: --model, --feature-set or --all-models" in capsys.readouterr().err
    import argparse

    from driftline.stream.cli import worker
    from driftline.stream.cli.worker import _settings

    parser = argparse.ArgumentParser()
    worker.register(parser.add_subparsers())
    settings = _settings(parser.parse_args(["worker", "--feature-set", "credit_features", "--database-url", "sqlite://"]))
    assert (settings.models, settings.feature_sets) == ((), ("credit_features",))
    everything = _settings(parser.parse_args(["worker", "--all-models", "--database-url", "sqlite://"]))
    assert (everything.models, everything.feature_sets) == (("credit_risk",), ("credit_features",))


def test_the_schema_registry_comes_from_the_option_or_the_environment(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import argparse

    from driftline.stream.cli import worker
    from driftline.stream.cli.worker import _settings

    parser = argparse.ArgumentParser()
    worker.register(parser.add_subparsers())
    base = ["worker", "--model", "credit_risk", "--database-url", "sqlite://"]
    monkeypatch.delenv("DRIFTLINE_SCHEMA_REGISTRY_URL", raising=False)
    assert _settings(parser.parse_args(base)).schema_registry is None
    given = _settings(parser.parse_args([*base, "--schema-registry", "http://127.0.0.1:18081/apis/ccompat/v7"])).schema_registry
    assert given is not None and given.url == "http://127.0.0.1:18081/apis/ccompat/v7" and given.basic_auth is None
    monkeypatch.setenv("DRIFTLINE_SCHEMA_REGISTRY_URL", "https://registry.internal:8081")
    monkeypatch.setenv("DRIFTLINE_SCHEMA_REGISTRY_BASIC_AUTH", "driftline:hunter2-secret")
    from_environment = _settings(parser.parse_args(base)).schema_registry
    assert from_environment is not None and from_environment.url == "https://registry.internal:8081"
    assert from_environment.client_config()["basic.auth.user.info"] == "driftline:hunter2-secret"
    assert "hunter2" not in repr(_settings(parser.parse_args(base)))
    assert main([*base, "--schema-registry", "http://driftline:hunter2-secret@registry:8081"]) == 2
    err = capsys.readouterr().err
    assert "must not carry credentials; set DRIFTLINE_SCHEMA_REGISTRY_BASIC_AUTH" in err and "hunter2" not in err


def test_an_unreachable_schema_registry_is_refused_at_start(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import socket

    from driftline.schemas.contract_catalog import Catalog
    from driftline.sinks import SqlProfileStore
    from driftline.sinks.database import create_database_engine
    from driftline.stream.demo.demo import reference_profile
    from driftline.stream.demo.generator import SyntheticStream

    url = f"sqlite:///{tmp_path / 'migrated.sqlite'}"
    upgrade_database(url)
    contract = Catalog.load().contract("credit_risk")
    profile = reference_profile(contract, SyntheticStream(contract, seed=3))
    engine = create_database_engine(url)
    try:
        SqlProfileStore(engine).save(profile.model, profile.model_version, profile.to_json())
    finally:
        engine.dispose()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]
    registry = f"http://127.0.0.1:{closed}/apis/ccompat/v7"
    # Before Kafka is touched (its bootstrap answers nothing either): the registry is asked first.
    assert main(_worker(url, "--schema-registry", registry)) == 2
    # (Other lines may come from the log handlers earlier tests' runs left on the closed streams of their capsys.)
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("driftline worker: error:")]
    assert len(errors) == 1 and errors[0].startswith(f"driftline worker: error: the Schema Registry at {registry} cannot be used: "), errors

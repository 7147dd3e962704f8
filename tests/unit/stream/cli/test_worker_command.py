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

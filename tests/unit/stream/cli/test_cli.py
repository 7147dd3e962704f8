from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from driftline.stream.cli.commands import build_parser, main
from driftline.stream.demo.demo import run_demo


def test_demo_refuses_a_stream_too_short_for_its_episodes(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["demo", "--events", "5"])
    assert exit_info.value.code == 2
    assert "must be at least 10000" in capsys.readouterr().err


def test_demo_moves_to_a_free_port_when_its_port_is_taken(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        summary = run_demo(output=tmp_path, events=10_000, metrics_port=port, progress=False, echo=True)
    assert summary.metrics_port not in (None, port)
    assert f"port {port} is taken" in capsys.readouterr().out
    assert summary.ok


def _driftline(*argv: str, env: dict[str, str] | None = None, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """``driftline ARGV`` in a fresh process, its output captured (not a terminal)."""
    environment = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, "-m", "driftline.stream.cli", *argv], capture_output=True, text=True, env=environment, timeout=timeout)


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_help_loads_neither_kafka_nor_sqlalchemy_nor_pyarrow() -> None:
    probe = (
        "import sys, contextlib, io\n"
        "from driftline.stream.cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):\n"
        "    main(['--help'])\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'confluent_kafka', 'sqlalchemy', 'pyarrow', 'faust', 'aiokafka'}))\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


@pytest.mark.parametrize("command", [["demo"], ["worker", "--model", "credit_risk"]])
def test_metrics_ports_mean_the_same_for_every_command(command: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main([*command, "--metrics-port", "-1"])
    assert exit_info.value.code == 2
    assert "-1 is not a port number (0 to 65535; 0 = any free port)" in capsys.readouterr().err
    assert main([*command, "--metrics-port", "9464", "--no-metrics", "--database-url", "sqlite://"] if command[0] == "worker"
                else [*command, "--metrics-port", "9464", "--no-metrics"]) == 2
    assert "--metrics-port and --no-metrics contradict each other" in capsys.readouterr().err


def test_the_worker_honours_the_metrics_port_of_the_environment(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from driftline.stream.cli import worker

    args = build_parser().parse_args(["worker", "--model", "credit_risk", "--database-url", "sqlite://"])
    monkeypatch.setenv("DRIFTLINE_METRICS_PORT", "19464")
    assert worker._settings(args).metrics_port == 19464
    monkeypatch.delenv("DRIFTLINE_METRICS_PORT")
    assert worker._settings(args).metrics_port == 9464
    quiet = build_parser().parse_args(["worker", "--model", "credit_risk", "--database-url", "sqlite://", "--no-metrics"])
    assert worker._settings(quiet).metrics_port is None
    monkeypatch.setenv("DRIFTLINE_METRICS_PORT", "http")
    assert main(["worker", "--model", "credit_risk", "--database-url", "sqlite://"]) == 2
    assert capsys.readouterr().err == "driftline worker: error: DRIFTLINE_METRICS_PORT: 'http' is not a port number\n"


@pytest.mark.parametrize("command", [["db", "upgrade"], ["worker", "--model", "credit_risk", "--no-metrics"]])
def test_a_database_url_that_is_not_a_url_is_one_line(command: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main([*command, "--database-url", "not a url"]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "not an SQLAlchemy URL" in error and "Traceback" not in error


def test_produce_to_an_absent_broker_says_so_in_one_line() -> None:
    done = _driftline("produce", "--model", "credit_risk", "--synthetic", "10", "--bootstrap", f"127.0.0.1:{_closed_port()}",
                      "--delivery-timeout", "2")
    assert done.returncode == 1
    assert done.stderr.count("\n") == 1, done.stderr
    assert "does not answer" in done.stderr and "rdkafka" not in done.stderr


def test_output_that_is_not_a_terminal_carries_no_escape_codes(tmp_path: Path) -> None:
    done = _driftline("demo", "--events", "10000", "--no-metrics", "--output", str(tmp_path / "demo"))
    assert done.returncode == 0, done.stderr
    for stream in (done.stdout, done.stderr):
        assert "\x1b" not in stream and "\r" not in stream
    assert "report:" in done.stdout

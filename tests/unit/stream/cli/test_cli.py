from __future__ import annotations

import socket
from pathlib import Path

import pytest

from driftline.stream.cli.commands import main
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

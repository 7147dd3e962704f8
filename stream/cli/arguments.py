"""What the ``driftline`` sub-commands share: argument types, defaults read from the environment, usage errors.

Nothing here imports Kafka, SQLAlchemy or pyarrow: the parser of every command is built from these.
Environment variables are read when a command runs, never at import time.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from driftline.schemas.errors import DriftlineError

if TYPE_CHECKING:
    from driftline.stream.kafka.registry import SchemaRegistrySettings

__all__ = [
    "DEFAULT_BOOTSTRAP",
    "DEFAULT_METRICS_PORT",
    "UsageError",
    "add_data_dir",
    "add_database_url",
    "add_metrics",
    "add_schema_registry",
    "at_least",
    "data_dir",
    "database_url",
    "duration_ms",
    "kafka_bootstrap",
    "metrics_port",
    "optional_duration_ms",
    "port_number",
    "positive_float",
    "positive_int",
    "schema_registry",
]

#: Kafka's usual address, when neither ``--bootstrap`` nor ``$DRIFTLINE_KAFKA_BOOTSTRAP`` names one.
DEFAULT_BOOTSTRAP = "127.0.0.1:9092"
#: Where ``/metrics`` is served when neither ``--metrics-port`` nor ``$DRIFTLINE_METRICS_PORT`` says.
DEFAULT_METRICS_PORT = 9464


class UsageError(DriftlineError):
    """A command was given arguments (or environment) it cannot work with."""


def at_least(minimum: int) -> Callable[[str], int]:
    """An argparse type: a whole number of at least ``minimum``.

    >>> at_least(1)("3")
    3
    """

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from exc
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {value}")
        return value

    return parse


positive_int = at_least(1)


def positive_float(text: str) -> float:
    """An argparse type: a number > 0.

    >>> positive_float("0.25")
    0.25
    """
    try:
        value = float(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from exc
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


_UNITS_MS = {"ms": 1, "s": 1_000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}


def duration_ms(text: str) -> int:
    """An argparse type: a duration > 0 in whole milliseconds; a bare number is seconds, or ``ms``/``s``/``m``/``h``/``d``.

    >>> duration_ms("90"), duration_ms("15m"), duration_ms("7d"), duration_ms("250ms")
    (90000, 900000, 604800000, 250)
    """
    stripped = text.strip().lower()
    unit = next((u for u in ("ms", "s", "m", "h", "d") if stripped.endswith(u)), "")
    number = stripped[: len(stripped) - len(unit)] if unit else stripped
    try:
        value = float(number) * _UNITS_MS[unit or "s"]
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration (a number of seconds, or with a unit: 250ms, 90s, 15m, 2h, 7d)") from exc
    if not value >= 1 or value != value or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be at least 1 ms, got {text!r}")
    return round(value)


def optional_duration_ms(text: str) -> int | None:
    """An argparse type: a duration as :func:`duration_ms`, or ``none`` (``None``: never).

    >>> optional_duration_ms("1h"), optional_duration_ms("none")
    (3600000, None)
    """
    return None if text.strip().lower() in ("none", "off", "never") else duration_ms(text)


def add_budget(parser: argparse.ArgumentParser) -> None:
    """``--false-alarms-per-month``: the model's false-alarm budget in time (see stream/monitor/budget.py)."""
    parser.add_argument(
        "--false-alarms-per-month", type=positive_float, default=1.0,
        help="false alerts a model may raise per 30 days on a clean stream, shared by all of its detectors "
        "and window checks (default 1)",
    )


def port_number(text: str) -> int:
    """An argparse type: a TCP port, 0 (any free port) to 65535.

    >>> port_number("19464")
    19464
    """
    try:
        value = int(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from exc
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"{value} is not a port number (0 to 65535; 0 = any free port)")
    return value


def kafka_bootstrap(given: str | None) -> str:
    """``--bootstrap`` if given, else ``$DRIFTLINE_KAFKA_BOOTSTRAP``, else :data:`DEFAULT_BOOTSTRAP`."""
    return given or os.environ.get("DRIFTLINE_KAFKA_BOOTSTRAP", "").strip() or DEFAULT_BOOTSTRAP


def add_database_url(parser: argparse.ArgumentParser, what: str = "the PostgreSQL database") -> None:
    parser.add_argument(
        "--database-url",
        help=f"SQLAlchemy URL of {what} (default: $DRIFTLINE_DATABASE_URL), "
        "e.g. postgresql+psycopg://driftline@127.0.0.1:5432/driftline",
    )


def database_url(args: argparse.Namespace) -> str:
    """``--database-url``, else ``$DRIFTLINE_DATABASE_URL``.

    Raises
    ------
    UsageError
        Neither names a database.
    """
    url = args.database_url or os.environ.get("DRIFTLINE_DATABASE_URL", "").strip()
    if not url:
        raise UsageError("no database: pass --database-url or set DRIFTLINE_DATABASE_URL")
    return str(url)


def add_metrics(parser: argparse.ArgumentParser) -> None:
    """``--metrics-port`` and ``--no-metrics``, the same for every command that serves metrics."""
    parser.add_argument(
        "--metrics-port",
        type=port_number,
        help=f"port of Prometheus' /metrics (default: $DRIFTLINE_METRICS_PORT or {DEFAULT_METRICS_PORT}; 0 = any free port)",
    )
    parser.add_argument("--no-metrics", action="store_true", help="serve no metrics")


def metrics_port(args: argparse.Namespace) -> int | None:
    """The port to serve metrics on (``None``: ``--no-metrics``).

    Raises
    ------
    UsageError
        ``$DRIFTLINE_METRICS_PORT`` is not a port number.
    """
    if args.no_metrics:
        if args.metrics_port is not None:
            raise UsageError("--metrics-port and --no-metrics contradict each other")
        return None
    if args.metrics_port is not None:
        return int(args.metrics_port)
    text = os.environ.get("DRIFTLINE_METRICS_PORT", "").strip()
    if not text:
        return DEFAULT_METRICS_PORT
    try:
        return port_number(text)
    except argparse.ArgumentTypeError as exc:
        raise UsageError(f"DRIFTLINE_METRICS_PORT: {exc}") from None


def add_data_dir(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data-dir",
        type=Path,
        help="driftline's data directory: reference profiles, worker state, demo output "
        "(default: $DRIFTLINE_DATA_DIR, else $XDG_DATA_HOME/driftline, else ~/.local/share/driftline)",
    )


def data_dir(args: argparse.Namespace) -> Path:
    """``--data-dir``, else ``$DRIFTLINE_DATA_DIR``, else ``$XDG_DATA_HOME/driftline`` (``~/.local/share/driftline``).

    >>> data_dir(argparse.Namespace(data_dir=Path("/srv/driftline")))
    PosixPath('/srv/driftline')
    """
    if args.data_dir is not None:
        return Path(args.data_dir)
    given = os.environ.get("DRIFTLINE_DATA_DIR", "").strip()
    if given:
        return Path(given).expanduser()
    xdg = os.environ.get("XDG_DATA_HOME", "").strip()
    return (Path(xdg) if xdg else Path.home() / ".local" / "share") / "driftline"


def add_schema_registry(parser: argparse.ArgumentParser, what: str) -> None:
    """``--schema-registry URL``: the Confluent-compatible Schema Registry (default ``$DRIFTLINE_SCHEMA_REGISTRY_URL``)."""
    parser.add_argument(
        "--schema-registry", metavar="URL",
        help=f"Schema Registry {what} (default: $DRIFTLINE_SCHEMA_REGISTRY_URL), e.g. http://127.0.0.1:8081 or Apicurio's "
        "http://host:8080/apis/ccompat/v7; basic credentials only from $DRIFTLINE_SCHEMA_REGISTRY_BASIC_AUTH (user:password)",
    )


def schema_registry(args: argparse.Namespace) -> SchemaRegistrySettings | None:
    """The Schema Registry of ``--schema-registry``, else of ``$DRIFTLINE_SCHEMA_REGISTRY_URL`` (``None``: neither).

    Raises
    ------
    UsageError
        The URL is not one (or carries credentials, which belong in ``$DRIFTLINE_SCHEMA_REGISTRY_BASIC_AUTH``).
    """
    from driftline.stream.kafka.registry import SchemaRegistrySettings

    try:
        return SchemaRegistrySettings.from_environment(args.schema_registry)
    except ValueError as exc:
        raise UsageError(str(exc)) from None

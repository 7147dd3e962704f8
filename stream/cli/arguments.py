"""What the ``driftline`` sub-commands share: argument types, defaults read from the environment, usage errors.

Nothing here imports Kafka, SQLAlchemy or pyarrow: the parser of every command is built from these.
Environment variables are read when a command runs, never at import time.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from driftline.schemas.errors import DriftlineError

if TYPE_CHECKING:
    from driftline.stream.kafka.connection import KafkaConnection, Secret
    from driftline.stream.kafka.registry import SchemaRegistrySettings

__all__ = [
    "DEFAULT_BOOTSTRAP",
    "DEFAULT_METRICS_PORT",
    "UsageError",
    "add_data_dir",
    "add_database_url",
    "add_kafka_security",
    "add_metrics",
    "add_schema_registry",
    "at_least",
    "check_client_properties",
    "data_dir",
    "database_url",
    "duration_ms",
    "kafka_bootstrap",
    "kafka_connection",
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


def utc_time(text: str) -> datetime:
    """An argparse type: an ISO 8601 date or time, UTC unless it says otherwise.

    >>> utc_time("2026-11-29T12:00")
    datetime.datetime(2026, 11, 29, 12, 0, tzinfo=datetime.timezone.utc)
    """
    try:
        value = datetime.fromisoformat(text.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an ISO 8601 date or time (2026-11-29, 2026-11-29T12:00:00Z)") from None
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


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


def kafka_bootstrap(given: str | None, environ: Mapping[str, str] | None = None) -> str:
    """``--bootstrap`` if given, else ``$DRIFTLINE_KAFKA_BOOTSTRAP``, else :data:`DEFAULT_BOOTSTRAP`.

    Only the brokers: a command that connects takes :func:`kafka_connection`, which adds TLS and SASL.
    """
    env = os.environ if environ is None else environ
    return given or env.get("DRIFTLINE_KAFKA_BOOTSTRAP", "").strip() or DEFAULT_BOOTSTRAP


def add_database_url(parser: argparse.ArgumentParser, what: str = "the PostgreSQL database") -> None:
    parser.add_argument(
        "--database-url",
        help=f"SQLAlchemy URL of {what} (default: $DRIFTLINE_DATABASE_URL), "
        "e.g. postgresql+psycopg://driftline@127.0.0.1:5432/driftline",
    )


def database_url(args: argparse.Namespace) -> str:
    """``--database-url``, else ``$DRIFTLINE_DATABASE_URL``; with the password of ``$DRIFTLINE_DATABASE_PASSWORD``
    or of the file ``$DRIFTLINE_DATABASE_PASSWORD_FILE`` (a mounted Secret) put into it.

    The result may hold a password: give it to the database engine, never to a message (``display_url``).

    Raises
    ------
    UsageError
        Neither names a database; the password cannot be read, or the URL already has one.
    """
    url = args.database_url or os.environ.get("DRIFTLINE_DATABASE_URL", "").strip()
    if not url:
        raise UsageError("no database: pass --database-url or set DRIFTLINE_DATABASE_URL")
    password = _secret_from_environment(os.environ, "DRIFTLINE_DATABASE_PASSWORD", "DRIFTLINE_DATABASE_PASSWORD_FILE")
    if password is None:
        return str(url)
    return _with_password(str(url), password)


def _with_password(url: str, password: Secret) -> str:
    """``url`` with ``password`` as its password (SQLAlchemy escapes what needs escaping)."""
    import sqlalchemy as sa  # only when a password is given: --help stays light
    from sqlalchemy.exc import ArgumentError

    try:
        parsed = sa.make_url(url)
    except (ArgumentError, ValueError):
        # No URL in the message: it may hold a password.
        raise UsageError("database URL: not an SQLAlchemy URL (dialect+driver://user@host:port/database)") from None
    if parsed.get_backend_name() == "sqlite":
        raise UsageError("DRIFTLINE_DATABASE_PASSWORD: an SQLite database takes no password")
    if parsed.password is not None:
        raise UsageError("DRIFTLINE_DATABASE_PASSWORD: the database URL has a password already; give it in one place")
    return parsed.set(password=password.reveal()).render_as_string(hide_password=False)


# -- Kafka's connection: brokers, TLS, SASL ----------------------------------------------------------------

#: The options of :func:`add_kafka_security`, each with the environment variable read in its absence.
#: Passwords have no option (an argument list is visible to every user of the machine): only the
#: variables below, or a file.
_KAFKA_OPTIONS = {
    "kafka_security_protocol": "DRIFTLINE_KAFKA_SECURITY_PROTOCOL",
    "kafka_sasl_mechanism": "DRIFTLINE_KAFKA_SASL_MECHANISM",
    "kafka_sasl_username": "DRIFTLINE_KAFKA_SASL_USERNAME",
    "kafka_sasl_password_file": "DRIFTLINE_KAFKA_SASL_PASSWORD_FILE",
    "kafka_ssl_ca_location": "DRIFTLINE_KAFKA_SSL_CA_LOCATION",
    "kafka_ssl_certificate_location": "DRIFTLINE_KAFKA_SSL_CERTIFICATE_LOCATION",
    "kafka_ssl_key_location": "DRIFTLINE_KAFKA_SSL_KEY_LOCATION",
    "kafka_ssl_key_password_file": "DRIFTLINE_KAFKA_SSL_KEY_PASSWORD_FILE",
}


def add_kafka_security(parser: argparse.ArgumentParser) -> None:
    """The options of Kafka's TLS and SASL settings (each defaults to its ``DRIFTLINE_KAFKA_*`` variable).

    The command's own ``--bootstrap`` names the brokers; :func:`kafka_connection` reads all of them.
    """
    from driftline.stream.kafka.connection import SASL_MECHANISMS, SECURITY_PROTOCOLS

    group = parser.add_argument_group(
        "Kafka security", "TLS and SASL (README, Secure connections); every option defaults to its environment variable, "
        "and passwords are read only from the environment or a file, never from an option")
    group.add_argument("--kafka-security-protocol", choices=SECURITY_PROTOCOLS, default=None,
                       help="PLAINTEXT (default), SSL, SASL_PLAINTEXT or SASL_SSL ($DRIFTLINE_KAFKA_SECURITY_PROTOCOL)")
    group.add_argument("--kafka-sasl-mechanism", choices=SASL_MECHANISMS, default=None,
                       help="SASL mechanism ($DRIFTLINE_KAFKA_SASL_MECHANISM)")
    group.add_argument("--kafka-sasl-username", metavar="USER", help="SASL user ($DRIFTLINE_KAFKA_SASL_USERNAME)")
    group.add_argument("--kafka-sasl-password-file", metavar="FILE",
                       help="file holding the SASL password ($DRIFTLINE_KAFKA_SASL_PASSWORD_FILE, or the password itself "
                       "in $DRIFTLINE_KAFKA_SASL_PASSWORD)")
    group.add_argument("--kafka-ssl-ca-location", metavar="FILE",
                       help="CA certificate(s), PEM, that the broker's certificate must chain to ($DRIFTLINE_KAFKA_SSL_CA_LOCATION; "
                       "default: the system's CAs)")
    group.add_argument("--kafka-ssl-certificate-location", metavar="FILE",
                       help="client certificate, PEM, for brokers that require one ($DRIFTLINE_KAFKA_SSL_CERTIFICATE_LOCATION)")
    group.add_argument("--kafka-ssl-key-location", metavar="FILE",
                       help="the client certificate's private key, PEM ($DRIFTLINE_KAFKA_SSL_KEY_LOCATION)")
    group.add_argument("--kafka-ssl-key-password-file", metavar="FILE",
                       help="file holding the private key's password, if it is encrypted ($DRIFTLINE_KAFKA_SSL_KEY_PASSWORD_FILE, "
                       "or the password itself in $DRIFTLINE_KAFKA_SSL_KEY_PASSWORD)")


def kafka_connection(args: argparse.Namespace, environ: Mapping[str, str] | None = None) -> KafkaConnection:
    """The brokers and the connection's security, from the options of :func:`add_kafka_security` (and the
    command's ``--bootstrap``), else the environment (``environ``, default ``os.environ``); built once when the
    command runs.

    Every setting is an option or its variable (the option wins); a password is the content of a file
    (``--kafka-sasl-password-file``, ``$DRIFTLINE_KAFKA_SASL_PASSWORD_FILE``) or the variable
    ``$DRIFTLINE_KAFKA_SASL_PASSWORD`` — both variables at once are refused. With TLS, the CA, the client
    certificate and its key are opened once here, so that a bad file is named before any connection.

    Raises
    ------
    UsageError
        A setting is unknown, missing or contradicts another, or a file cannot be read; the message names
        the option or variable, never a password.
    """
    from driftline.stream.kafka.connection import KafkaConnection

    env = os.environ if environ is None else environ
    given = {option: _option_or_variable(args, option, variable, env) for option, variable in _KAFKA_OPTIONS.items()}
    protocol = (given["kafka_security_protocol"] or ("", ""))[0].upper() or "PLAINTEXT"
    mechanism = (given["kafka_sasl_mechanism"] or ("", ""))[0].upper() or None
    sasl_password = _password(given["kafka_sasl_password_file"], env, "DRIFTLINE_KAFKA_SASL_PASSWORD")
    key_password = _password(given["kafka_ssl_key_password_file"], env, "DRIFTLINE_KAFKA_SSL_KEY_PASSWORD")
    paths: dict[str, Path | None] = {}
    for option in ("kafka_ssl_ca_location", "kafka_ssl_certificate_location", "kafka_ssl_key_location"):
        found = given[option]
        paths[option] = _readable_file(*found) if found is not None else None
    try:
        connection = KafkaConnection(
            bootstrap_servers=kafka_bootstrap(getattr(args, "bootstrap", None), env),
            security_protocol=protocol,
            sasl_mechanism=mechanism,
            sasl_username=given["kafka_sasl_username"][0] if given["kafka_sasl_username"] else None,
            sasl_password=sasl_password,
            ssl_ca_location=paths["kafka_ssl_ca_location"],
            ssl_certificate_location=paths["kafka_ssl_certificate_location"],
            ssl_key_location=paths["kafka_ssl_key_location"],
            ssl_key_password=key_password,
        )
    except ValueError as exc:
        raise UsageError(f"Kafka connection: {_named(str(exc), given)}") from None
    if connection.uses_tls:
        _check_tls_files(connection, given)
    return connection


def _option_or_variable(args: argparse.Namespace, option: str, variable: str, env: Mapping[str, str]) -> tuple[str, str] | None:
    """``(value, where it came from)`` of an option, else of its variable; ``None`` when neither is set."""
    value = getattr(args, option, None)
    if value:
        return str(value), "--" + option.replace("_", "-")
    text = env.get(variable, "").strip()
    return (text, variable) if text else None


def _password(file: tuple[str, str] | None, env: Mapping[str, str], variable: str) -> Secret | None:
    """The password in ``file`` (an option's or a ``*_FILE`` variable's), else in ``variable``."""
    from driftline.stream.kafka.connection import Secret

    if file is not None:
        if file[1].startswith("DRIFTLINE_") and env.get(variable):
            raise UsageError(f"{variable} and {file[1]} are both set: give the password one way")
        return _read_secret(Path(file[0]).expanduser(), file[1])
    value = env.get(variable)
    if value is None:
        return None
    if not value:
        raise UsageError(f"{variable} is set but empty")
    return Secret(value)


def _secret_from_environment(env: Mapping[str, str], variable: str, file_variable: str) -> Secret | None:
    """The password of ``variable``, or the content of the file ``file_variable`` names (both: refused)."""
    path = env.get(file_variable, "").strip()
    return _password((path, file_variable) if path else None, env, variable)


def _read_secret(path: Path, where: str) -> Secret:
    """A password from a file (a mounted Kubernetes Secret, a file of mode 0600), without its final newline."""
    from driftline.stream.kafka.connection import Secret

    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
        raise UsageError(f"{where}: cannot read the password file {path}: {reason}") from None
    text = text.removesuffix("\n").removesuffix("\r")
    if not text:
        raise UsageError(f"{where}: the password file {path} is empty")
    return Secret(text)


def _readable_file(text: str, where: str) -> Path:
    path = Path(text).expanduser()
    if not path.is_file():
        raise UsageError(f"{where}: {path} is not a file")
    try:
        with path.open("rb"):
            pass
    except OSError as exc:
        raise UsageError(f"{where}: cannot read {path}: {exc.strerror}") from None
    return path


_SETTING_NAMES = {
    "security_protocol": "kafka_security_protocol",
    "sasl_mechanism": "kafka_sasl_mechanism",
    "sasl_username": "kafka_sasl_username",
    "sasl_password": "kafka_sasl_password_file",
    "ssl_ca_location": "kafka_ssl_ca_location",
    "ssl_certificate_location": "kafka_ssl_certificate_location",
    "ssl_key_location": "kafka_ssl_key_location",
    "ssl_key_password": "kafka_ssl_key_password_file",
}


def _named(message: str, given: Mapping[str, tuple[str, str] | None]) -> str:
    """A :class:`KafkaConnection` error with each setting it names called by its option or variable."""
    import re

    def name(match: re.Match[str]) -> str:
        setting = match.group(0)
        option = _SETTING_NAMES[setting]
        found = given.get(option)
        if found is not None:
            return found[1]
        variable = _KAFKA_OPTIONS[option]
        if setting in ("sasl_password", "ssl_key_password"):
            return f"{variable.removesuffix('_FILE')} (or {variable})"
        return variable

    return re.sub(r"\b(" + "|".join(_SETTING_NAMES) + r")\b", name, message)


def _check_tls_files(connection: KafkaConnection, given: Mapping[str, tuple[str, str] | None]) -> None:
    """Open the CA, the client certificate and its key as the clients will (a bad file is named now, not at connection)."""
    import ssl

    def where(option: str) -> str:
        found = given.get(option)
        return found[1] if found is not None else _KAFKA_OPTIONS[option]

    context = ssl.create_default_context()
    if connection.ssl_ca_location is not None:
        try:
            context.load_verify_locations(cafile=str(connection.ssl_ca_location))
        except (OSError, ssl.SSLError) as exc:
            raise UsageError(f"{where('kafka_ssl_ca_location')}: {connection.ssl_ca_location} holds no usable CA certificate "
                             f"(PEM): {exc}") from None
    if connection.ssl_certificate_location is not None:
        password = connection.ssl_key_password.reveal() if connection.ssl_key_password is not None else None
        try:
            # A callable: an encrypted key without a password fails here instead of prompting on the terminal.
            context.load_cert_chain(str(connection.ssl_certificate_location), str(connection.ssl_key_location),
                                    password=lambda: password or "")
        except (OSError, ssl.SSLError) as exc:
            raise UsageError(
                f"{where('kafka_ssl_certificate_location')}, {where('kafka_ssl_key_location')}: the client certificate and key do "
                f"not load (a key that does not match, or an encrypted key without its password — "
                f"{where('kafka_ssl_key_password_file')}): {exc}") from None


#: librdkafka settings an ``-X KEY=VALUE`` may not give: the connection's security has one home (the options and
#: variables above), and a password in an argument list is visible to every user of the machine.
_CONNECTION_PROPERTY_PREFIXES = ("bootstrap.servers", "security.protocol", "sasl.", "ssl.")


def check_client_properties(properties: Iterable[tuple[str, str]]) -> None:
    """Refuse librdkafka properties that set the connection (or a secret) from the command line.

    >>> check_client_properties([("linger.ms", "5")])
    >>> check_client_properties([("sasl.password", "x")])  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    driftline.stream.cli.arguments.UsageError: -X sasl.password: Kafka's connection and its secrets are set ...
    """
    for key, _value in properties:
        lowered = key.strip().lower()
        if lowered.startswith(_CONNECTION_PROPERTY_PREFIXES) or "password" in lowered or "secret" in lowered:
            raise UsageError(f"-X {key}: Kafka's connection and its secrets are set by --bootstrap, the --kafka-* options and "
                             "the DRIFTLINE_KAFKA_* variables (README, Secure connections); a password is never an argument")


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

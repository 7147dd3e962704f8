"""Secure connections on the real broker and database: SCRAM, TLS verified against a CA made here, client
certificates — and no secret in any log line, error message or process argument list.

The local broker (``deploy/local/kafka.sh``) has, beside PLAINTEXT, a SASL_PLAINTEXT listener with SCRAM (a user
whose password is drawn at each fresh start and kept in a file whose *path* ``services.sh`` exports), a SASL_SSL
listener and an SSL listener that requires client certificates. The two TLS listeners start with a self-signed
placeholder; this module makes a throwaway CA (``tests/throwaway_ca.py``), installs a broker certificate it signed
— and, on the SSL listener, the CA as the truststore for client certificates — through Kafka's dynamic broker
config, and removes them afterwards.

Every ``driftline`` process here is given only a secured listener's address, through the environment: a Kafka
client built without the connection's settings (the batch reader, the label reader, a producer, an admin or probe
client, Faust's aiokafka consumer and producer) could not connect, and the run would not finish.

The database password: the local PostgreSQL trusts loopback except for members of ``driftline_password_login``
(``scram-sha-256``, ``deploy/local/postgres.sh``); the worker logs in as such a member, with the password from
``DRIFTLINE_DATABASE_PASSWORD`` or ``DRIFTLINE_DATABASE_PASSWORD_FILE``. The fixture first checks that the server
refuses a wrong password for it — or the test could not tell that the password reached the server.

While a command runs, every process's argument list on the machine (``/proc/<pid>/cmdline``, what ``ps`` shows) is
read every 50 ms and searched for the secrets; the watch is shown to catch one in a process started with it as an
argument. Its stdout and stderr are searched too.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import socket
import ssl
import subprocess
import sys
import threading
import time
import urllib.parse
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource, ResourceType
from sqlalchemy.exc import OperationalError
from throwaway_ca import ThrowawayCA, make_ca
from unavailable import unavailable
from worker_harness import MODEL, REPO, eventually, isolated_database, read_topic, unique

from driftline.sinks.database import create_database_engine
from driftline.stream.kafka.connection import KafkaConnection, Secret
from driftline.stream.kafka.topics import ensure_topics

#: What ``deploy/local/services.sh env`` exports about the local broker's secured listeners.
SECURED = {
    "scram": "DRIFTLINE_KAFKA_SCRAM_BOOTSTRAP",
    "tls": "DRIFTLINE_KAFKA_TLS_BOOTSTRAP",
    "mtls": "DRIFTLINE_KAFKA_MTLS_BOOTSTRAP",
    "username": "DRIFTLINE_KAFKA_SCRAM_USERNAME",
    "password_file": "DRIFTLINE_KAFKA_SCRAM_PASSWORD_FILE",
}


@dataclass(frozen=True)
class Listeners:
    plaintext: str
    scram: str
    tls: str
    mtls: str
    username: str
    password: str


@dataclass(frozen=True)
class DatabaseLogin:
    url: str  # the login's URL, without its password
    password: str
    owner_url: str  # the schema's owner (trusted on loopback): what the test reads the results with


@pytest.fixture(scope="module")
def listeners(kafka_bootstrap: str) -> Listeners:
    values: dict[str, str] = {}
    for name, variable in SECURED.items():
        value = os.environ.get(variable, "").strip()
        if not value:
            unavailable(f"the local broker's secured listeners are not available: {variable} is not set "
                        "(`deploy/local/services.sh up` exports it for the broker it starts)")
        values[name] = value
    password_file = Path(values.pop("password_file"))
    assert password_file.stat().st_mode & 0o077 == 0, f"{password_file} is readable by others"
    return Listeners(plaintext=kafka_bootstrap, password=password_file.read_text(), **values)


# -- the throwaway CA on the broker's TLS listeners -------------------------------------------------------------------------

def _handshakes(address: str, ca: Path, client: ThrowawayCA | None = None, times: int = 12) -> bool:
    """``times`` TLS handshakes in a row verify the broker against ``ca`` (the broker's network threads — three by
    default — each take up a new certificate on their own, and take new connections in turn)."""
    host, port = address.rsplit(":", 1)
    context = ssl.create_default_context(cafile=str(ca))
    if client is not None:
        context.load_cert_chain(str(client.client_certificate), str(client.client_key), password=client.client_key_password)
    for _ in range(times):
        try:
            with socket.create_connection((host, int(port)), 5) as raw, context.wrap_socket(raw, server_hostname=host):
                pass
        except (ssl.SSLError, OSError):
            return False
    return True


def _alter_broker(plaintext: str, settings: Mapping[str, str | None]) -> None:
    """Set (a value) or remove (``None``) dynamic settings of the broker, through its PLAINTEXT listener."""
    admin = AdminClient({"bootstrap.servers": plaintext, "logger": logging.getLogger("test_secure_kafka")})
    (broker,) = admin.list_topics(timeout=10).brokers
    entries = [ConfigEntry(name, value or "", incremental_operation=AlterConfigOpType.SET if value is not None else AlterConfigOpType.DELETE)
               for name, value in settings.items()]
    for future in admin.incremental_alter_configs([ConfigResource(ResourceType.BROKER, str(broker), incremental_configs=entries)]).values():
        future.result(30)


@pytest.fixture(scope="module")
def pki(listeners: Listeners, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ThrowawayCA]:
    """A CA made here; the broker's TLS listeners serve a certificate it signed, and the SSL listener trusts its clients."""
    ca = make_ca(tmp_path_factory.mktemp("pki"), client_key_password="k3y p@ss/" + unique(""))
    installed = {
        "listener.name.sasl_ssl.ssl.keystore.location": str(ca.broker_keystore),
        "listener.name.ssl.ssl.keystore.location": str(ca.broker_keystore),
        "listener.name.ssl.ssl.truststore.location": str(ca.ca),
    }
    started = time.monotonic()
    _alter_broker(listeners.plaintext, installed)
    try:
        eventually(lambda: True if _handshakes(listeners.tls, ca.ca) and _handshakes(listeners.mtls, ca.ca, ca) else None, 60,
                   "the broker's TLS listeners serving the test CA's certificate")
        print(f"the test CA's certificate served {time.monotonic() - started:.1f} s after the dynamic config change")
        yield ca
    finally:
        # Back to the placeholder: the files above go with the test's temporary directory.
        _alter_broker(listeners.plaintext, dict.fromkeys(installed))


# -- a PostgreSQL login with a password ---------------------------------------------------------------------------------------

@pytest.fixture()
def database_login(database_url: str) -> Iterator[DatabaseLogin]:
    """A role that must give its password (characters that a URL and SQL must escape included), on an isolated schema."""
    with isolated_database(database_url) as owner_url:
        role = unique("secure_")
        password = f"db p@ss/{unique('')}:%é'"
        owner = create_database_engine(owner_url)
        try:
            with owner.begin() as connection:
                connection.exec_driver_sql("DO $$ BEGIN CREATE ROLE driftline_password_login NOLOGIN; "
                                           "EXCEPTION WHEN duplicate_object THEN NULL; END $$")
                secret = sa.literal(password).compile(dialect=owner.dialect, compile_kwargs={"literal_binds": True})
                connection.exec_driver_sql(f'CREATE ROLE "{role}" LOGIN PASSWORD {secret} IN ROLE driftline_password_login')
                schema = connection.execute(sa.text("SELECT current_schema()")).scalar_one()
                connection.exec_driver_sql(f'GRANT USAGE, CREATE ON SCHEMA "{schema}" TO "{role}"')
                connection.exec_driver_sql(f'GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA "{schema}" TO "{role}"')
                connection.exec_driver_sql(f'GRANT USAGE, SELECT, UPDATE ON ALL SEQUENCES IN SCHEMA "{schema}" TO "{role}"')
            url = sa.make_url(owner_url).set(username=role).render_as_string(hide_password=False)
            assert sa.make_url(url).password is None
            _check_password_is_required(url, password)
            yield DatabaseLogin(url=url, password=password, owner_url=owner_url)
        finally:
            with owner.begin() as connection:
                connection.exec_driver_sql(f'DROP OWNED BY "{role}"')
                connection.exec_driver_sql(f'DROP ROLE IF EXISTS "{role}"')
            owner.dispose()


def _check_password_is_required(url: str, password: str) -> None:
    wrong = create_database_engine(sa.make_url(url).set(password="not " + password).render_as_string(hide_password=False))
    right = create_database_engine(sa.make_url(url).set(password=password).render_as_string(hide_password=False))
    try:
        try:
            with wrong.connect():
                pass
        except OperationalError as exc:
            assert "password authentication failed" in str(exc)
        else:
            pytest.fail("PostgreSQL let the login in with a wrong password, so this test could not tell whether driftline's "
                        "password reached it: the local cluster predates deploy/local/postgres.sh's password rule "
                        "(`services.sh down` and `up` make a fresh one)")
        with right.connect() as connection:
            assert connection.execute(sa.text("SELECT 1")).scalar_one() == 1
    finally:
        wrong.dispose()
        right.dispose()


# -- commands, their output and every argument list on the machine -----------------------------------------------------------

def _forms(secret: str) -> set[str]:
    """A secret as it could leak: itself, and escaped for a URL."""
    return {secret, urllib.parse.quote(secret, safe=""), urllib.parse.quote_plus(secret)}


@dataclass
class ArgumentWatch:
    """Reads every process's argument list (``/proc/*/cmdline``) every 50 ms and keeps those that hold a secret."""

    secrets: Sequence[str]
    found: list[str] = field(default_factory=list)
    scans: int = 0
    seen: dict[int, str] = field(default_factory=dict)  # pids asked for -> their argument list as last read

    def scan(self, pids: Sequence[int] = ()) -> None:
        forms = {form for secret in self.secrets for form in _forms(secret)}
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                arguments = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode("utf-8", "replace")
            except OSError:
                continue  # the process ended meanwhile
            if int(entry.name) in pids and arguments:
                self.seen[int(entry.name)] = arguments
            if any(form in arguments for form in forms):
                self.found.append(f"pid {entry.name}: {arguments[:300]}")
        self.scans += 1

    @contextlib.contextmanager
    def watching(self, pid: int) -> Iterator[None]:
        stop = threading.Event()

        def loop() -> None:
            while not stop.is_set():
                self.scan([pid])
                stop.wait(0.05)

        thread = threading.Thread(target=loop, daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join()


@dataclass(frozen=True)
class Run:
    code: int
    stdout: str
    stderr: str
    arguments: str  # the process's own argument list, as the watch read it

    @property
    def error_lines(self) -> list[str]:
        return [line for line in self.stderr.splitlines() if line.strip()]


def _driftline(arguments: Sequence[str], env: dict[str, str], watch: ArgumentWatch, directory: Path, timeout: float = 300) -> Run:
    """``driftline ARGUMENTS`` in a subprocess with ``env``, its output in files, every argument list watched meanwhile."""
    name = unique(f"{arguments[0]}-")
    out, err = directory / f"{name}.out", directory / f"{name}.err"
    with out.open("wb") as stdout, err.open("wb") as stderr:
        process = subprocess.Popen([sys.executable, "-m", "driftline.stream.cli", *arguments], stdout=stdout, stderr=stderr,
                                   cwd=REPO, env=env)
        with watch.watching(process.pid):
            try:
                code = process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
                pytest.fail(f"driftline {arguments[0]} still running after {timeout:.0f} s:\n{err.read_text()[-3000:]}")
    run = Run(code, out.read_text(errors="replace"), err.read_text(errors="replace"), watch.seen.get(process.pid, ""))
    assert run.arguments.startswith(sys.executable), f"the watch never read the process's arguments ({watch.scans} scans)"
    return run


def _no_secret_anywhere(watch: ArgumentWatch, *runs: Run) -> None:
    assert not watch.found, f"a secret in a process's argument list: {watch.found[:3]}"
    forms = {form for secret in watch.secrets for form in _forms(secret)}
    for run in runs:
        for form in forms:
            assert form not in run.stdout and form not in run.stderr, f"a secret in the output of `{run.arguments[:200]}`"


def _environment(**variables: str) -> dict[str, str]:
    """The test's environment without any Kafka or database setting of its own, plus ``variables``."""
    env = {key: value for key, value in os.environ.items() if not key.startswith(("DRIFTLINE_KAFKA_", "DRIFTLINE_DATABASE_"))}
    env.update(variables)
    return env


def _secret_file(path: Path, secret: str) -> Path:
    path.write_text(secret + "\n", encoding="utf-8")  # a trailing newline, as `echo` or an editor leaves it
    path.chmod(0o600)
    return path


def _publish(kafka: KafkaConnection, topic: str, payloads: Sequence[bytes], partitions: int) -> None:
    """Publish ``payloads`` over ``kafka``'s secured connection, spread over ``partitions``."""
    errors: list[str] = []
    producer = Producer({**kafka.client_config(), "enable.idempotence": True})
    for index, payload in enumerate(payloads):
        producer.produce(topic, value=payload, partition=index % partitions,
                         on_delivery=lambda error, _: errors.append(str(error)) if error else None)
    assert producer.flush(30) == 0 and not errors, errors[:3]


def _rows(url: str, statement: str, **parameters: object) -> list[tuple[Any, ...]]:
    engine = create_database_engine(url)
    try:
        with engine.connect() as connection:
            return [tuple(row) for row in connection.execute(sa.text(statement), parameters).all()]
    finally:
        engine.dispose()


def _worker_arguments(prefix: str, group: str, *extra: str) -> list[str]:
    return ["worker", "--model", MODEL, "--topic-prefix", prefix, "--deadletter-topic", prefix + "dlq", "--alerts-topic",
            prefix + "alerts", "--group", group, "--metrics-port", "0", "--checkpoint-seconds", "0.5", "--stop-at-end", *extra]


def _checkpointed(login: DatabaseLogin, group: str) -> tuple[int, int, int]:
    """consumed, accepted, dead-lettered over the group's prediction partitions (read as the schema's owner)."""
    rows = _rows(login.owner_url, "SELECT consumed, accepted, dead_lettered FROM checkpoints WHERE consumer_group = :g "
                 "AND topic NOT LIKE '%window-partials'", g=group)
    assert rows, "no checkpoint: the worker wrote nothing"
    consumed, accepted, dead = (sum(int(row[i]) for row in rows) for i in range(3))
    return consumed, accepted, dead


# -- the tests ------------------------------------------------------------------------------------------------------------------

def test_the_argument_watch_finds_a_secret_given_as_an_argument() -> None:
    secret = "watch-" + unique("")
    watch = ArgumentWatch([secret])
    process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)", f"--password={secret}"])
    def found() -> bool | None:
        watch.scan()
        return True if watch.found else None

    try:
        eventually(found, 10, "the watch finding the argument")
    finally:
        process.kill()
        process.wait()
    assert str(process.pid) in watch.found[0]


def test_worker_and_produce_over_scram_keep_every_secret_out_of_logs_and_arguments(
    listeners: Listeners, database_login: DatabaseLogin, tmp_path: Path,
) -> None:
    """SCRAM-SHA-512 without TLS: a model over two partitions (the merge stage's Faust agent reads the partials),
    its labels, dead letters and alerts — every client of the worker on the SCRAM listener."""
    prefix = unique("scram") + "."
    topic, labels = prefix + MODEL, f"{prefix}labels.{MODEL}"
    group = unique("scram-")
    env = _environment(
        DRIFTLINE_KAFKA_BOOTSTRAP=listeners.scram, DRIFTLINE_KAFKA_SECURITY_PROTOCOL="SASL_PLAINTEXT",
        DRIFTLINE_KAFKA_SASL_MECHANISM="SCRAM-SHA-512", DRIFTLINE_KAFKA_SASL_USERNAME=listeners.username,
        DRIFTLINE_KAFKA_SASL_PASSWORD=listeners.password,
        DRIFTLINE_DATABASE_URL=database_login.url,
        DRIFTLINE_DATABASE_PASSWORD_FILE=str(_secret_file(tmp_path / "database-password", database_login.password)),
    )
    watch = ArgumentWatch([listeners.password, database_login.password])
    events = 20_000
    produced = _driftline(["produce", "--model", MODEL, "--synthetic", str(events), "--drift", "--topic", topic, "--partitions", "2"],
                          env, watch, tmp_path)
    assert produced.code == 0, produced.stderr
    assert f"sent {events:,} events" in produced.stdout

    # Corrupt predictions and labels, published over SCRAM too (through the settings object): the dead letters.
    kafka = KafkaConnection(listeners.scram, security_protocol="SASL_PLAINTEXT", sasl_mechanism="SCRAM-SHA-512",
                            sasl_username=listeners.username, sasl_password=Secret(listeners.password))
    ensure_topics(kafka, [labels], 30.0, partitions={labels: 2})
    _publish(kafka, topic, [b"\xff not avro"] * 3, partitions=2)
    _publish(kafka, labels, [b"\x00 not a label"] * 4, partitions=2)

    worker = _driftline(_worker_arguments(prefix, group, "--label-horizon", "1h", "--label-topic-prefix", prefix + "labels.",
                                          "--idle-partition-seconds", "3600"), env, watch, tmp_path)
    assert worker.code == 0, worker.stderr[-3000:]
    _no_secret_anywhere(watch, produced, worker)

    consumed, accepted, dead = _checkpointed(database_login, group)
    assert consumed == events + 3 and consumed == accepted + dead
    dead_letters = {letter.key.rsplit(":", 2)[0] for letter in read_topic(listeners.plaintext, prefix + "dlq")}
    assert {topic, labels} <= dead_letters  # the batch reader and the label reader both read, and the dead letters went out
    # The merge stage (a Faust agent: aiokafka over SCRAM) merged the two partitions' windows; alerts reached their topic.
    assert _rows(database_login.owner_url, "SELECT count(*) FROM model_windows WHERE model = :m", m=MODEL)[0][0] > 0
    assert read_topic(listeners.plaintext, prefix + "alerts"), "no incident reached the alerts topic"


def test_worker_and_produce_over_tls_verify_the_broker_against_the_test_ca(
    listeners: Listeners, pki: ThrowawayCA, database_login: DatabaseLogin, tmp_path: Path,
) -> None:
    """SASL_SSL with SCRAM-SHA-256; the broker's certificate checked against the CA made here (and its name)."""
    prefix = unique("tls") + "."
    group = unique("tls-")
    env = _environment(
        DRIFTLINE_KAFKA_BOOTSTRAP=listeners.tls, DRIFTLINE_KAFKA_SECURITY_PROTOCOL="SASL_SSL",
        DRIFTLINE_KAFKA_SASL_MECHANISM="SCRAM-SHA-256", DRIFTLINE_KAFKA_SASL_USERNAME=listeners.username,
        DRIFTLINE_KAFKA_SASL_PASSWORD_FILE=str(_secret_file(tmp_path / "sasl-password", listeners.password)),
        DRIFTLINE_KAFKA_SSL_CA_LOCATION=str(pki.ca),
        DRIFTLINE_DATABASE_URL=database_login.url, DRIFTLINE_DATABASE_PASSWORD=database_login.password,
    )
    watch = ArgumentWatch([listeners.password, database_login.password])
    produced = _driftline(["produce", "--model", MODEL, "--synthetic", "5000", "--topic", prefix + MODEL], env, watch, tmp_path)
    assert produced.code == 0, produced.stderr
    worker = _driftline(_worker_arguments(prefix, group), env, watch, tmp_path)
    assert worker.code == 0, worker.stderr[-3000:]
    assert _checkpointed(database_login, group)[:2] == (5000, 5000)
    # A replay takes the same connection settings (and the database password) from the environment.
    replayed = _driftline(["replay", "--model", MODEL, "--topic-prefix", prefix, "--group", group, "--run", "over-tls", "-q"],
                          env, watch, tmp_path)
    assert replayed.code == 0, replayed.stderr[-3000:]
    assert "5,000 messages: 5,000 accepted, 0 rejected" in replayed.stdout, replayed.stdout

    # The broker is verified: the same command trusting another CA is refused, in one line.
    untrusted = _driftline(["produce", "--model", MODEL, "--synthetic", "10", "--topic", prefix + MODEL],
                           {**env, "DRIFTLINE_KAFKA_SSL_CA_LOCATION": str(pki.other_ca)}, watch, tmp_path)
    assert untrusted.code == 1 and len(untrusted.error_lines) == 1, untrusted.stderr
    assert re.search(r"TLS with Kafka at 127\.0\.0\.1:\d+ \(SASL_SSL, .*\) failed: SSL handshake failed: .*certificate verify failed",
                     untrusted.stderr), untrusted.stderr
    _no_secret_anywhere(watch, produced, worker, replayed, untrusted)


def test_worker_and_produce_with_a_client_certificate(listeners: Listeners, pki: ThrowawayCA, database_login: DatabaseLogin,
                                                      tmp_path: Path) -> None:
    """SSL with a client certificate whose key is encrypted (its password in a file named by an option); Faust's
    clients load the same certificate into their TLS context."""
    prefix = unique("mtls") + "."
    group = unique("mtls-")
    env = _environment(DRIFTLINE_DATABASE_URL=database_login.url, DRIFTLINE_DATABASE_PASSWORD=database_login.password)
    key_password = _secret_file(tmp_path / "key-password", pki.client_key_password)
    options = ["--bootstrap", listeners.mtls, "--kafka-security-protocol", "SSL", "--kafka-ssl-ca-location", str(pki.ca),
               "--kafka-ssl-certificate-location", str(pki.client_certificate), "--kafka-ssl-key-location", str(pki.client_key),
               "--kafka-ssl-key-password-file", str(key_password)]
    watch = ArgumentWatch([pki.client_key_password, database_login.password])
    produced = _driftline(["produce", "--model", MODEL, "--synthetic", "3000", "--topic", prefix + MODEL, *options], env, watch, tmp_path)
    assert produced.code == 0, produced.stderr
    worker = _driftline([*_worker_arguments(prefix, group), *options], env, watch, tmp_path)
    assert worker.code == 0, worker.stderr[-3000:]
    assert _checkpointed(database_login, group)[:2] == (3000, 3000)

    # The listener requires the certificate: without it, one line saying what TLS refused.
    anonymous = _driftline(["produce", "--model", MODEL, "--synthetic", "10", "--topic", prefix + MODEL, *options[:6]], env, watch,
                           tmp_path)
    assert anonymous.code == 1 and len(anonymous.error_lines) == 1, anonymous.stderr
    assert "TLS with Kafka at" in anonymous.stderr, anonymous.stderr
    _no_secret_anywhere(watch, produced, worker, anonymous)


def test_a_wrong_password_is_one_clear_line_without_it(listeners: Listeners, database_login: DatabaseLogin, tmp_path: Path) -> None:
    wrong = "wrong-" + unique("")
    kafka = {"DRIFTLINE_KAFKA_BOOTSTRAP": listeners.scram, "DRIFTLINE_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
             "DRIFTLINE_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512", "DRIFTLINE_KAFKA_SASL_USERNAME": listeners.username}
    database = {"DRIFTLINE_DATABASE_URL": database_login.url}
    watch = ArgumentWatch([wrong, listeners.password, database_login.password])
    prefix = unique("wrong") + "."
    refused = "refused the connection: SASL authentication error: Authentication failed during authentication due to invalid credentials"

    produced = _driftline(["produce", "--model", MODEL, "--synthetic", "10", "--topic", prefix + MODEL],
                          _environment(**kafka, DRIFTLINE_KAFKA_SASL_PASSWORD=wrong), watch, tmp_path, timeout=60)
    assert produced.code == 1 and len(produced.error_lines) == 1, produced.stderr
    assert produced.error_lines[0].startswith(f"driftline produce: error: Kafka at {listeners.scram} (SASL_PLAINTEXT, SCRAM-SHA-512 "
                                              f"as {listeners.username}) {refused}"), produced.stderr

    worker = _driftline(_worker_arguments(prefix, unique("wrong-")), _environment(
        **kafka, **database, DRIFTLINE_KAFKA_SASL_PASSWORD=wrong, DRIFTLINE_DATABASE_PASSWORD=database_login.password),
        watch, tmp_path, timeout=60)
    assert worker.code == 2, worker.stderr
    errors = [line for line in worker.error_lines if "error" in line.lower() or "authentication" in line.lower()]
    assert len(errors) == 1 and errors[0] == worker.error_lines[-1], worker.stderr
    assert errors[0].startswith(f"driftline worker: error: Kafka at {listeners.scram} (SASL_PLAINTEXT, SCRAM-SHA-512 as "
                                f"{listeners.username}) {refused}"), worker.stderr

    bad_database = _driftline(_worker_arguments(prefix, unique("wrong-")), _environment(
        **kafka, **database, DRIFTLINE_KAFKA_SASL_PASSWORD=listeners.password, DRIFTLINE_DATABASE_PASSWORD=wrong),
        watch, tmp_path, timeout=60)
    assert bad_database.code == 2 and len(bad_database.error_lines) == 1, bad_database.stderr
    role = sa.make_url(database_login.url).username
    assert bad_database.error_lines[0].startswith("driftline worker: error: could not read the schema revision of postgresql+psycopg://"
                                                  f"{role}:***@"), bad_database.stderr
    assert f'password authentication failed for user "{role}"' in bad_database.error_lines[0], bad_database.stderr
    _no_secret_anywhere(watch, produced, worker, bad_database)

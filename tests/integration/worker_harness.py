"""Helpers of the integration tests: isolated databases, events on the wire, worker processes, polling, HTTP.

Each test gets its own PostgreSQL schema (selected through libpq's ``options`` in the URL), its
own topic prefix, dead-letter topic and consumer group, so tests never see each other's data.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest
import sqlalchemy as sa
from confluent_kafka import Consumer, Producer, TopicPartition

from driftline.schemas.codec import encode_single_object
from driftline.schemas.contract import Contract
from driftline.schemas.contract_catalog import Catalog
from driftline.sinks import SqlProfileStore
from driftline.sinks.database import create_database_engine, upgrade_database
from driftline.stream.demo.demo import reference_profile
from driftline.stream.demo.generator import Episode, SyntheticStream
from driftline.stream.kafka.connection import KafkaConnection

MODEL = "credit_risk"
REPO = Path(__file__).resolve().parents[2]

T = TypeVar("T")


def eventually(probe: Callable[[], T | None], timeout: float, what: str, interval: float = 0.5) -> T:
    """Poll ``probe`` until it returns something other than None (a bounded wait, not a timing test)."""
    deadline = time.monotonic() + timeout
    while True:
        result = probe()
        if result is not None:
            return result
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not within {timeout:.0f}s")
        time.sleep(interval)


def http_get(url: str, timeout: float = 5.0) -> tuple[int, str]:
    """Status and body of a GET (an HTTP error status is returned, not raised)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, response.read().decode("utf-8")
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode("utf-8", "replace")


def get_json(url: str) -> Any:
    """The JSON body of a GET that must answer 200."""
    status, body = http_get(url)
    assert status == 200, f"GET {url}: HTTP {status}: {body[:500]}"
    return json.loads(body)


def unique(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:10]}"


def url_in_schema(database_url: str, schema: str) -> str:
    """``database_url`` with libpq's ``options`` extended so that its connections work in ``schema``."""
    url = sa.make_url(database_url)
    options = " ".join(filter(None, [url.query.get("options"), f"-csearch_path={schema}"]))  # type: ignore[list-item]
    return url.update_query_dict({"options": options}).render_as_string(hide_password=False)


@contextlib.contextmanager
def empty_schema(database_url: str) -> Iterator[str]:
    """The URL of a fresh, empty PostgreSQL schema; dropped afterwards."""
    schema = unique("t_")
    admin = create_database_engine(database_url)
    with admin.begin() as connection:
        connection.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    try:
        yield url_in_schema(database_url, schema)
    finally:
        with admin.begin() as connection:
            connection.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@contextlib.contextmanager
def isolated_database(database_url: str) -> Iterator[str]:
    """A fresh schema, migrated to head and holding the credit_risk reference profile; dropped afterwards."""
    with empty_schema(database_url) as url:
        upgrade_database(url)
        contract = Catalog.load().contract(MODEL)
        profile = reference_profile(contract, SyntheticStream(contract, seed=3))
        engine = create_database_engine(url)
        try:
            SqlProfileStore(engine).save(profile.model, profile.model_version, profile.to_json())
        finally:
            engine.dispose()
        yield url


def synthetic_payloads(
    n: int, *, seed: int = 11, events_per_second: float = 100.0, episodes: Sequence[Episode] = (), contract: Contract | None = None,
    model_version: str = "v1",
) -> list[bytes]:
    """``n`` single-object-encoded events of the credit-risk model (drift episodes applied)."""
    contract = contract or Catalog.load().contract(MODEL)
    stream = SyntheticStream(contract, seed=seed, events_per_second=events_per_second)
    payloads: list[bytes] = []
    for offset in range(0, n, 10_000):
        k = min(10_000, n - offset)
        columns = stream.columns(k, offset=offset)
        stream.apply_episodes(columns, list(episodes), offset=offset)
        for record in stream.records(columns, stream.event_times(k, offset=offset), offset=offset, model_version=model_version):
            payloads.append(encode_single_object(record, contract.schema_json))
    return payloads


def produce(bootstrap: str, topic: str, payloads: Sequence[bytes | None], *, message_max_bytes: int = 2_000_000) -> None:
    """Publish every payload, in order, to partition 0 of ``topic``; fail unless all were acknowledged."""
    errors: list[str] = []

    def on_delivery(error: Any, message: Any) -> None:
        if error is not None:
            errors.append(str(error))

    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20, "enable.idempotence": True, "message.max.bytes": message_max_bytes})
    for payload in payloads:
        while True:
            try:
                producer.produce(topic, value=payload, partition=0, on_delivery=on_delivery)
                break
            except BufferError:
                producer.poll(0.05)
        producer.poll(0)
    assert producer.flush(60) == 0, "messages not delivered within 60 s"
    assert not errors, errors[:3]


def create_topic(bootstrap: str, topic: str) -> None:
    """A 1-partition topic, as the worker and ``driftline produce`` create it (ready: its partition has a leader)."""
    from driftline.stream.kafka.topics import ensure_topics

    ensure_topics(KafkaConnection(bootstrap), [topic], 30.0)


@dataclass(frozen=True)
class DeadLetter:
    key: str
    value: bytes | None
    headers: dict[str, str]


def read_topic(bootstrap: str, topic: str, timeout: float = 30.0) -> list[DeadLetter]:
    """Every message of partition 0 of ``topic`` up to its current end offset."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": unique("reader-"), "enable.auto.commit": False})
    try:
        low, high = consumer.get_watermark_offsets(TopicPartition(topic, 0), timeout=timeout)
        consumer.assign([TopicPartition(topic, 0, low)])
        messages: list[DeadLetter] = []
        deadline = time.monotonic() + timeout
        while len(messages) < high - low:
            assert time.monotonic() < deadline, f"read {len(messages)} of {high - low} messages of {topic}"
            for message in consumer.consume(1000, timeout=1.0):
                assert message.error() is None, message.error()
                headers = {name: value.decode() for name, value in (message.headers() or [])}
                messages.append(DeadLetter((message.key() or b"").decode(), message.value(), headers))
        return messages
    finally:
        consumer.close()


class Worker:
    """``driftline worker`` in a subprocess (killable with SIGKILL, like a crashed pod)."""

    def __init__(self, *, bootstrap: str, database_url: str, prefix: str, deadletter: str, group: str,
                 log: Path, extra: Sequence[str] = (), stop_at_end: bool = False, models: Sequence[str] = (MODEL,),
                 schema_registry_url: str | None = None) -> None:
        command = [
            sys.executable, "-m", "driftline.stream.cli", "worker",
            *(f"--model={model}" for model in models), "--bootstrap", bootstrap, "--database-url", database_url,
            "--topic-prefix", prefix, "--deadletter-topic", deadletter, "--group", group,
            "--metrics-port", "0", "--checkpoint-seconds", "0.5", *extra,
        ]
        if stop_at_end:
            command.append("--stop-at-end")
        self.log_path = log
        self._log = log.open("ab")
        # A worker resolves Confluent schema ids only in the registry its test names (as $DRIFTLINE_SCHEMA_REGISTRY_URL,
        # the worker's default): the suite's registry keeps the ids other tests registered, which would turn a test's
        # deliberately unknown schema id into a known one.
        env = {name: value for name, value in os.environ.items() if name != "DRIFTLINE_SCHEMA_REGISTRY_URL"}
        if schema_registry_url is not None:
            env["DRIFTLINE_SCHEMA_REGISTRY_URL"] = schema_registry_url
        self.process = subprocess.Popen(command, stdout=self._log, stderr=subprocess.STDOUT, cwd=REPO, env=env)

    def wait(self, timeout: float) -> int:
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise AssertionError(f"worker still running after {timeout} s; log:\n{self.log_tail()}") from None
        finally:
            self._log.flush()

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs at all."""
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(30)
        self._log.close()

    def stop(self) -> int:
        self.process.send_signal(signal.SIGTERM)
        code = self.wait(60)
        self._log.close()
        return code

    @property
    def running(self) -> bool:
        return self.process.poll() is None

    def log_tail(self, lines: int = 40) -> str:
        self._log.flush()
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


def read_checkpoint(engine: sa.Engine, group: str, topic: str) -> dict[str, Any] | None:
    """The checkpoint row of partition 0 of ``topic`` (without the engine state), or None."""
    with engine.connect() as connection:
        row = connection.execute(
            sa.text("SELECT next_offset, consumed, accepted, dead_lettered, updated_at FROM checkpoints "
                    "WHERE consumer_group = :g AND topic = :t AND partition = 0"),
            {"g": group, "t": topic},
        ).mappings().first()
    return dict(row) if row is not None else None


def checkpoint(database_url: str, group: str, topic: str) -> dict[str, Any] | None:
    engine = create_database_engine(database_url)
    try:
        return read_checkpoint(engine, group, topic)
    finally:
        engine.dispose()


def table(database_url: str, name: str, *, exclude: Sequence[str] = ()) -> list[tuple[Any, ...]]:
    """Every row of a result table, sorted, without the ``exclude`` columns."""
    engine = create_database_engine(database_url)
    try:
        columns = [c.name for c in sa.Table(name, sa.MetaData(), autoload_with=engine).columns if c.name not in exclude]
        with engine.connect() as connection:
            rows = connection.execute(sa.text(f"SELECT {', '.join(columns)} FROM {name}")).all()
        return sorted((tuple(row) for row in rows), key=repr)
    finally:
        engine.dispose()


# Columns that legitimately differ between two runs: write times, and the KLL quantiles whose
# compaction uses an unseeded random generator (README, "Determinism"); drift scores and alerts come
# from exact histograms.
VOLATILE = re.compile(r"^(updated_at|created_at|p\d\d)$")
RESULT_TABLES = ("window_aggregates", "model_windows", "alerts", "schema_changes", "performance_windows", "challenger_windows")


def snapshot(url: str) -> dict[str, list[tuple[Any, ...]]]:
    """Every result table's rows, sorted, without the columns that legitimately differ between runs."""
    engine = create_database_engine(url)
    try:
        columns = {name: [c["name"] for c in sa.inspect(engine).get_columns(name)] for name in RESULT_TABLES}
    finally:
        engine.dispose()
    return {name: table(url, name, exclude=[c for c in columns[name] if VOLATILE.match(c)]) for name in RESULT_TABLES}


def wait_for_progress(url: str, group: str, topic: str, offset: float, worker: Worker, timeout: float = 300) -> None:
    """Until the group's checkpoint of ``topic`` passed ``offset`` (the worker must keep running meanwhile)."""
    deadline = time.monotonic() + timeout
    while (checkpoint(url, group, topic) or {}).get("next_offset", 0) < offset:
        assert worker.running, worker.log_tail()
        assert time.monotonic() < deadline, f"no progress to offset {offset:.0f}:\n{worker.log_tail()}"
        time.sleep(0.1)


def kill_at_random_points(rng: Any, start: Callable[[], Worker], progress: Callable[[], float], total: float,
                          timeout: float = 300) -> list[str]:
    """SIGKILL a worker once at start-up and at three random shares of ``total`` progress, restarting it each time.

    ``start`` starts the worker, ``progress`` says how far its checkpoints have come (of ``total``).
    Returns a line per kill: where it landed, and the progress then.
    """
    kills: list[str] = []
    plan = [("start-up", rng.uniform(0.5, 3.0))] + [("progress", f) for f in sorted(rng.uniform(0.15, 0.85) for _ in range(3))]
    for kind, value in plan:
        worker = start()
        if kind == "start-up":
            time.sleep(value)
        else:
            deadline = time.monotonic() + timeout
            while progress() < value * total:
                assert worker.running, worker.log_tail()
                assert time.monotonic() < deadline, f"no progress to {value * total:.0f}:\n{worker.log_tail()}"
                time.sleep(0.1)
            time.sleep(rng.uniform(0.0, 0.6))
        assert worker.running, worker.log_tail()
        worker.kill()
        kills.append(f"{kind} {value:.2f}: checkpointed {progress():.0f}")
    return kills

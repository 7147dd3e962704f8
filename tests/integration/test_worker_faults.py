"""Faults the worker survives, on the real services: a database outage, a broker crash, and messages that
no single one of may stop it (too large to dead-letter whole, undecodable, or making the engine fail).

Each test compares the disturbed run's tables with an undisturbed run over the same messages (another
consumer group and database schema), and checks consumed = accepted + dead-lettered.

The outage and crash tests stop the local PostgreSQL and Kafka with ``deploy/local/postgres.sh`` and
``deploy/local/kafka.sh`` (``down``/``kill``, then ``start`` on the existing data): they need the
services of ``make test`` on this machine, not someone else's.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
from pathlib import Path

import pytest
from confluent_kafka.admin import AdminClient, NewTopic
from worker_harness import (
    MODEL,
    REPO,
    Worker,
    checkpoint,
    eventually,
    http_get,
    isolated_database,
    produce,
    read_topic,
    snapshot,
    synthetic_payloads,
    unique,
    wait_for_progress,
)

from driftline.sinks import SqlProfileStore, create_database_engine
from driftline.stream.demo.generator import Episode

LOCAL = REPO / "deploy" / "local"


def _service(script: str, command: str) -> None:
    done = subprocess.run(["bash", str(LOCAL / script), command], capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, f"{script} {command}: {done.stderr}"


def _local_services_only() -> None:
    """The outage tests stop the services: only those deploy/local started here."""
    status = subprocess.run(["bash", str(LOCAL / "services.sh"), "status"], capture_output=True, text=True, timeout=60).stdout
    if "external" in status:
        pytest.skip("the services are external (not started by deploy/local): they are not ours to stop")


def _status(url: str) -> int | None:
    """The HTTP status of a GET, or None while nothing listens."""
    try:
        return http_get(url, timeout=2.0)[0]
    except OSError:  # URLError: connection refused, the server is not up (yet)
        return None


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _stream(n: int) -> list[bytes | None]:
    episodes = [Episode("mean_shift", int(n * 0.4), int(n * 0.6), "annual_income", size=1.0)]
    return list(synthetic_payloads(n, episodes=episodes))


def _clean_run(kafka_bootstrap: str, url: str, prefix: str, tmp_path: Path) -> None:
    clean = Worker(bootstrap=kafka_bootstrap, database_url=url, prefix=prefix, deadletter=prefix + "dlq.clean",
                   group="clean", log=tmp_path / "clean.log", stop_at_end=True)
    assert clean.wait(300) == 0, clean.log_tail()


def test_a_database_outage_pauses_the_worker_which_then_resumes(kafka_bootstrap: str, database_url: str, tmp_path: Path) -> None:
    _local_services_only()
    n = 150_000
    prefix = unique("pgdown") + "."
    topic = prefix + MODEL
    produce(kafka_bootstrap, topic, _stream(n))
    health = _free_port()
    with isolated_database(database_url) as clean_url, isolated_database(database_url) as url:
        _clean_run(kafka_bootstrap, clean_url, prefix, tmp_path)
        expected = snapshot(clean_url)
        worker = Worker(bootstrap=kafka_bootstrap, database_url=url, prefix=prefix, deadletter=prefix + "dlq", group="outage",
                        log=tmp_path / "worker.log", stop_at_end=True,
                        extra=["--health-port", str(health), "--database-outage-seconds", "120", "--batch-events", "5000"])
        try:
            eventually(lambda: True if _status(f"http://127.0.0.1:{health}/readyz") == 200 else None, 60, "the worker ready")
            wait_for_progress(url, "outage", topic, 0.2 * n, worker)
            _service("postgres.sh", "down")
            try:
                eventually(lambda: True if "consumption paused" in worker.log_path.read_text() else None, 30, "the pause logged")
                assert _status(f"http://127.0.0.1:{health}/readyz") == 503  # not ready while it cannot checkpoint
                assert _status(f"http://127.0.0.1:{health}/healthz") == 200  # but alive
                time.sleep(30)
                assert worker.running, worker.log_tail()
            finally:
                _service("postgres.sh", "start")
            assert worker.wait(300) == 0, worker.log_tail()
        finally:
            if worker.running:
                worker.process.kill()
        log = worker.log_path.read_text()
        assert log.count("cannot checkpoint") == 1 and log.count("checkpoints go through again") == 1, log[-3000:]
        final = checkpoint(url, "outage", topic)
        assert final is not None and final["consumed"] == final["accepted"] + final["dead_lettered"] == n
        assert snapshot(url) == expected


def test_a_database_that_stays_down_makes_the_worker_give_up_clearly(kafka_bootstrap: str, database_url: str, tmp_path: Path) -> None:
    _local_services_only()
    prefix = unique("pggone") + "."
    topic = prefix + MODEL
    produce(kafka_bootstrap, topic, _stream(30_000))
    with isolated_database(database_url) as url:
        worker = Worker(bootstrap=kafka_bootstrap, database_url=url, prefix=prefix, deadletter=prefix + "dlq", group="gone",
                        log=tmp_path / "worker.log", extra=["--database-outage-seconds", "8", "--batch-events", "2000"])
        try:
            wait_for_progress(url, "gone", topic, 2_000, worker)
            _service("postgres.sh", "down")
            try:
                code = worker.wait(120)
            finally:
                _service("postgres.sh", "start")
        finally:
            if worker.running:
                worker.process.kill()
        assert code != 0
        assert "could not checkpoint for" in worker.log_tail(60) and "--database-outage-seconds 8" in worker.log_tail(60)


def test_a_broker_crash_and_restart_on_its_data_loses_and_doubles_nothing(
    kafka_bootstrap: str, database_url: str, tmp_path: Path
) -> None:
    _local_services_only()
    n = 150_000
    prefix = unique("kafkill") + "."
    topic = prefix + MODEL
    produce(kafka_bootstrap, topic, _stream(n))
    with isolated_database(database_url) as clean_url, isolated_database(database_url) as url:
        _clean_run(kafka_bootstrap, clean_url, prefix, tmp_path)
        expected = snapshot(clean_url)
        worker = Worker(bootstrap=kafka_bootstrap, database_url=url, prefix=prefix, deadletter=prefix + "dlq", group="crash",
                        log=tmp_path / "worker.log", stop_at_end=True, extra=["--batch-events", "5000"])
        try:
            wait_for_progress(url, "crash", topic, 0.3 * n, worker)
            _service("kafka.sh", "kill")
            try:
                time.sleep(5)
                assert worker.running, worker.log_tail()
            finally:
                _service("kafka.sh", "start")
            assert worker.wait(300) == 0, worker.log_tail()
        finally:
            if worker.running:
                worker.process.kill()
        final = checkpoint(url, "crash", topic)
        assert final is not None and final["consumed"] == final["accepted"] + final["dead_lettered"] == n
        assert snapshot(url) == expected


def _broken_profile(url: str) -> None:
    """Store a profile of version ``v-broken`` whose detector state for one field is corrupt."""
    engine = create_database_engine(url)
    try:
        store = SqlProfileStore(engine)
        profile = json.loads(store.load(MODEL, "v1") or "")
        profile["model_version"] = "v-broken"
        profile["features"]["annual_income"]["page_hinkley"] = {"type": "PageHinkley", "state": "corrupt"}
        store.save(MODEL, "v-broken", json.dumps(profile))
    finally:
        engine.dispose()


def test_no_single_message_can_stop_the_worker(kafka_bootstrap: str, database_url: str, tmp_path: Path) -> None:
    """Oversized (beyond what the dead-letter topic takes), undecodable and engine-breaking messages are set aside."""
    n = 40_000
    prefix = unique("poison") + "."
    topic, deadletter = prefix + MODEL, prefix + "dlq"
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    # A source topic that takes 3 MB messages; the dead-letter topic keeps the broker's 1 MB default.
    for future in admin.create_topics([NewTopic(topic, 1, config={"max.message.bytes": "3000000"}),
                                       NewTopic(deadletter, 1)]).values():
        future.result(30)
    good = _stream(n)
    broken = list(synthetic_payloads(10, seed=5, model_version="v-broken"))
    messages: list[bytes | None] = []
    bad = {}
    for position, payload in enumerate(good):
        messages.append(payload)
        if position in (5_000, 25_000):
            bad[len(messages)] = "oversized"
            messages.append(b"\x00" * (1_500_000 if position == 5_000 else 2_500_000))  # > 1 MB: rejected as oversized
        if position in (8_000, 30_000):
            bad[len(messages)] = "bad_magic"
            messages.append(b"\xffnot avro at all")
        if position % 10_000 == 9_999:
            bad[len(messages)] = "engine_failure"
            messages.append(broken.pop())
    produce(kafka_bootstrap, topic, messages, message_max_bytes=4_000_000)
    with isolated_database(database_url) as clean_url, isolated_database(database_url) as url:
        clean_prefix = unique("poison-clean") + "."
        produce(kafka_bootstrap, clean_prefix + MODEL, good)
        _clean_run(kafka_bootstrap, clean_url, clean_prefix, tmp_path)
        _broken_profile(url)
        worker = Worker(bootstrap=kafka_bootstrap, database_url=url, prefix=prefix, deadletter=deadletter, group="poison",
                        log=tmp_path / "worker.log", stop_at_end=True, extra=["--batch-events", "3000"])
        assert worker.wait(600) == 0, worker.log_tail()
        final = checkpoint(url, "poison", topic)
        assert final is not None
        assert (final["consumed"], final["dead_lettered"]) == (len(messages), len(bad))
        assert final["consumed"] == final["accepted"] + final["dead_lettered"]
        letters = {int(letter.key.rsplit(":", 1)[1]): letter for letter in read_topic(kafka_bootstrap, deadletter)}
        assert {offset: letter.headers["driftline.reason"] for offset, letter in letters.items()} == bad
        for offset, reason in bad.items():
            if reason == "oversized":  # too large for the dead-letter topic: a record of it instead
                record = json.loads(letters[offset].value or b"")
                assert letters[offset].headers.get("driftline.truncated") == "true"
                assert (record["offset"], record["size"], record["reason"]) == (offset, len(messages[offset] or b""), "oversized")
            else:
                assert letters[offset].value == messages[offset]  # the original bytes
        # What the engine saw is exactly the clean stream: the same windows and alerts.
        assert snapshot(url) == snapshot(clean_url)
    log = worker.log_path.read_text()
    assert "makes the engine fail; it is set aside" in log
    assert os.path.getsize(worker.log_path) < 5_000_000  # no crash loop filled it


@pytest.fixture(autouse=True)
def _services_back_up() -> object:
    """Whatever a test did, the local services run again afterwards (the next tests need them)."""
    yield None
    for script in ("postgres.sh", "kafka.sh"):
        subprocess.run(["bash", str(LOCAL / script), "start"], capture_output=True, timeout=180)

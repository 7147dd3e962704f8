"""End-to-end throughput and latency of ``driftline worker`` on the local broker, against baselines of the same run.

    python tests/benchmarks/end_to_end.py [--events N] [--latency-seconds S] [--rates R …] [--scale-events N] [--rss-events N]

Needs Kafka and PostgreSQL (``eval "$(bash deploy/local/services.sh up)"``; ``make bench`` does it).

Throughput. One fresh 1-partition topic is pre-filled with ``--events`` (default 1,000,000) synthetic
events of the 20-feature credit_risk model, then read three times, one after the other:

  (a) a raw confluent-kafka consumer that only counts messages, reading batches of the worker's size
      (the broker's and the client's ceiling);
  (b) a Faust agent that only counts events, on an app built by ``stream.app.create_app`` with the
      worker's settings (Faust's own per-message cost: the ceiling of any Faust worker);
  (c) the full ``driftline worker --stop-at-end`` (decode, contract check, engine, Postgres,
      checkpoints), on a fresh database schema and consumer group;
  (f) ``driftline replay --run bench`` of the whole topic, under a run label of its own (the same
      partition runner, read with a group-less consumer, checkpointing as often as the worker), on a
      fresh schema.

Each rate excludes start-up: it counts the events consumed after a first mark and divides by the
time from that mark to the last event. (a) marks the first batch returned by ``consume``; (b) marks
the first event inside the agent; (c) and (f) mark the first checkpoint seen in the database (see
:func:`worker_throughput`). Targets: (c) >= 0.45 x (a) and >= 5 x (b); (f) >= (c), replay at least at
the worker's speed.

Latency. For each of ``--rates`` (default 5,000 and 20,000 events/s), a worker (fresh schema, group
and topic) is started and, once its consumer group is joined, ``driftline produce --rate`` publishes
``--latency-seconds`` (default 60) of the demo's drift stream (its episodes raise alerts) at that
steady rate. The worker's ``--latency-record`` gives every message's produce-to-commit latency:
Kafka timestamp to the database commit of its results, alerts included. The first
``--warmup-seconds`` of the stream are left out of the percentiles. Targets: p99 < 1.5 s at 5,000
events/s and < 2 s at 20,000.

Memory. A topic of ``--rss-events`` (default 5,000,000) events is processed by one worker while its
resident set size is read from /proc every 0.1 s (with the checkpointed offset); the peak RSS while the
checkpoints cover the first million is compared with the peak while they cover the last million — the
same statistic at both ends: RSS swings ±15 MiB with each 50,000-message batch, so a single sample at
one end against the peak at the other measured that swing, not growth. Target: growth < 5 %. The peak of
every million is printed too, so a steady climb (a leak) shows as such.

Scale (a figure, not a target). The same protocol twice, one after the other: (d) one worker on a
1-partition topic, (e) two workers of one group on a 2-partition topic (the model split over
partitions: a runner per partition, window partials merged by the Faust merge agent). ``driftline
produce`` first fills the topic with ``--scale-events`` (default 2,000,000) keyed events; then the
workers start, and once the group is stable with every member assigned, the rate counts the events
checkpointed from the first checkpoint seen after that to the last (all partitions, the database's
commit times). What a lone first worker read before the others joined is left out. (A first version
produced while the workers ran: they kept up with the producer, which shares the two cores, so the
rate measured only the small remainder after it finished.)

The benchmark reports; it does not assert its targets. It exits non-zero only when something broke:
a process failed or timed out, or a count does not reconcile (e.g. the worker's checkpoint must
have consumed exactly the events of the topic).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import sqlalchemy as sa

REPO = Path(__file__).resolve().parents[2]
# The integration tests' helpers: isolated database schemas, topic creation, worker processes.
sys.path.insert(0, str(REPO / "tests" / "integration"))

from worker_harness import MODEL, Worker, create_topic, isolated_database, read_checkpoint, unique

from driftline.sinks.database import create_database_engine
from driftline.stream.kafka.connection import KafkaConnection

FAUST_AGENT_COMMAND = "_faust-count-agent"  # the hidden sub-command run in the Faust subprocess
DRIFTLINE = [sys.executable, "-m", "driftline.stream.cli"]
RAW_TARGET = 0.45  # full worker / raw consumer
AGENT_TARGET = 5.0  # full worker / counting Faust agent
LATENCY_TARGETS_MS = {5_000.0: 1_500.0, 20_000.0: 2_000.0}  # rate -> p99 produce-to-commit
RSS_GROWTH_TARGET = 0.05


class BenchmarkError(Exception):
    """Something broke (not: a target was missed)."""


@dataclass
class Rate:
    """Events counted after a first mark, over the seconds from that mark to the last event."""

    events: int  # events counted after the first mark
    seconds: float  # from the first mark to the last event

    @property
    def per_second(self) -> float:
        return self.events / self.seconds if self.seconds > 0 else float("nan")


# -------------------------------------------------------------------------------- helpers


def produce(bootstrap: str, topic: str, events: int, *extra: str) -> str:
    """``driftline produce`` of ``events`` synthetic credit_risk events; its summary line."""
    command = [*DRIFTLINE, "produce", "--model", MODEL, "--synthetic", str(events), "--topic", topic,
               "--bootstrap", bootstrap, "-q", *extra]
    done = subprocess.run(command, capture_output=True, text=True, cwd=REPO)
    if done.returncode != 0:
        raise BenchmarkError(f"driftline produce exited {done.returncode}:\n{done.stdout}{done.stderr}")
    return done.stdout.strip().splitlines()[-1]


def delete_topics(bootstrap: str, run: str) -> None:
    """Delete every topic of this run (theirs all start with the run id, Faust's internal ones too)."""
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": bootstrap})
    ours = [name for name in admin.list_topics(timeout=30).topics if name.startswith(run)]
    if ours:
        for future in admin.delete_topics(ours, operation_timeout=30).values():
            with contextlib.suppress(Exception):
                future.result(30)


def log_tail(path: Path, lines: int = 30) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""


@contextlib.contextmanager
def database_engine(url: str) -> Iterator[sa.Engine]:
    engine = create_database_engine(url)
    try:
        yield engine
    finally:
        engine.dispose()


def alert_counts(engine: sa.Engine) -> dict[str, int]:
    with engine.connect() as connection:
        rows = connection.execute(sa.text("SELECT kind, count(*) FROM alerts GROUP BY kind ORDER BY kind")).all()
    return {str(kind): int(count) for kind, count in rows}


# -------------------------------------------------------------------------------- (a) raw consumer


def raw_consumer_throughput(bootstrap: str, topic: str, events: int, timeout: float, batch: int) -> Rate:
    """A confluent-kafka consumer that only counts messages from offset 0 up to ``events``, ``batch`` at a time."""
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"{topic}.raw", "enable.auto.commit": False})
    try:
        consumer.assign([TopicPartition(topic, 0, 0)])
        count = 0
        first_batch = 0
        first = last = 0.0
        deadline = time.monotonic() + timeout
        while count < events:
            if time.monotonic() > deadline:
                raise BenchmarkError(f"raw consumer: {count:,} of {events:,} messages after {timeout:.0f} s")
            messages = consumer.consume(batch, timeout=1.0)
            if not messages:
                continue
            now = time.perf_counter()
            for message in messages:
                if message.error() is not None:
                    raise BenchmarkError(f"raw consumer: {message.error()}")
            count += len(messages)
            if first_batch == 0:
                first, first_batch = now, len(messages)
            last = now
        if count != events:
            raise BenchmarkError(f"raw consumer: read {count:,} messages, the topic holds {events:,}")
        return Rate(count - first_batch, last - first)
    finally:
        consumer.close()


# -------------------------------------------------------------------------------- (b) counting Faust agent


def faust_count_agent(argv: list[str]) -> int:
    """The Faust subprocess: count ``--events`` events, write the timings, stop the worker."""
    import faust

    from driftline.stream.kafka.app import create_app, use_fast_event_loop
    from driftline.stream.kafka.settings import WorkerSettings

    parser = argparse.ArgumentParser(prog=FAUST_AGENT_COMMAND)
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--topic-prefix", required=True)
    parser.add_argument("--group", required=True)
    parser.add_argument("--events", type=int, required=True)
    parser.add_argument("--result", type=Path, required=True)
    args = parser.parse_args(argv)
    use_fast_event_loop()  # as the worker
    # The worker's app settings; the database is never used by this app.
    settings = WorkerSettings(kafka=KafkaConnection(args.bootstrap), database_url="postgresql://unused", models=(MODEL,),
                              consumer_group=args.group, topic_prefix=args.topic_prefix, metrics_port=None)
    app = create_app(settings)
    topic = app.topic(settings.topics[MODEL], key_type=bytes, value_type=bytes, partitions=1)
    target = args.events

    @app.agent(topic, name="bench.count")
    async def count(stream: faust.StreamT[bytes]) -> None:
        counted = 0
        first = 0.0
        async for _event in stream:
            if counted == 0:
                first = time.perf_counter()
            counted += 1
            if counted == target:
                last = time.perf_counter()
                args.result.write_text(json.dumps({"events": counted, "first": first, "last": last}))
                os.kill(os.getpid(), signal.SIGTERM)

    with contextlib.suppress(SystemExit):
        faust.Worker(app, loglevel="WARNING", quiet=True).execute_from_commandline()
    return 0 if args.result.exists() else 1


def faust_agent_throughput(bootstrap: str, prefix: str, group: str, events: int, directory: Path, timeout: float) -> Rate:
    result = directory / "faust-count.json"
    log = directory / "faust-count.log"
    command = [sys.executable, str(Path(__file__).resolve()), FAUST_AGENT_COMMAND, "--bootstrap", bootstrap,
               "--topic-prefix", prefix, "--group", group, "--events", str(events), "--result", str(result)]
    with log.open("wb") as output:
        process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT, cwd=REPO)
        try:
            code = process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            raise BenchmarkError(f"counting Faust agent still running after {timeout:.0f} s:\n{log_tail(log)}") from None
    if code != 0 or not result.exists():
        raise BenchmarkError(f"counting Faust agent exited {code}:\n{log_tail(log)}")
    timings = json.loads(result.read_text())
    if timings["events"] != events:
        raise BenchmarkError(f"counting Faust agent counted {timings['events']:,} events, the topic holds {events:,}")
    return Rate(timings["events"] - 1, timings["last"] - timings["first"])


# -------------------------------------------------------------------------------- (c) full worker


@dataclass
class WorkerRun:
    """What the throughput run of the full worker measured."""

    rate: Rate
    wall_seconds: float  # process start to exit
    first_checkpoint_seconds: float  # process start to the first checkpoint seen
    checkpoints: int  # distinct checkpoints seen
    counts: dict[str, int]
    alerts: dict[str, int]


def _while_running(worker: Worker, timeout: float, what: str) -> Iterator[None]:
    """Yield every 0.1 s while ``worker`` runs; kill it after ``timeout`` s; then it must have exited 0.

    Raises
    ------
    BenchmarkError
        The worker outlived ``timeout`` (it is killed), or exited with another code.
    """
    deadline = time.monotonic() + timeout
    while worker.running:
        if time.monotonic() > deadline:
            worker.process.kill()
            worker.process.wait()
            raise BenchmarkError(f"{what} still running after {timeout:.0f} s:\n{worker.log_tail()}")
        yield
        time.sleep(0.1)
    code = worker.wait(10)
    if code != 0:
        raise BenchmarkError(f"{what} exited {code}:\n{worker.log_tail()}")


def worker_throughput(bootstrap: str, database_url: str, run: str, prefix: str, events: int,
                      worker_options: list[str], directory: Path, timeout: float) -> WorkerRun:
    """``driftline worker --stop-at-end`` over the pre-filled topic.

    Start-up (interpreter, imports, database checks, Faust's start and the group join) is left out
    by timing from checkpoints: the checkpoints row is polled every 0.1 s, and the rate is
    (next_offset of the final checkpoint - next_offset of the first one seen) over the difference
    of their ``updated_at``. ``updated_at`` is the worker's own clock at each commit, so the poll
    interval does not blur the figure; only the events of the first checkpoint are left out.
    """
    topic = f"{prefix}{MODEL}"
    group = f"{run}-worker"
    with isolated_database(database_url) as url, database_engine(url) as engine:
        started = time.monotonic()
        worker = Worker(bootstrap=bootstrap, database_url=url, prefix=prefix, deadletter=f"{run}.deadletter",
                        group=group, log=directory / "worker-throughput.log", extra=worker_options, stop_at_end=True)
        seen: list[tuple[float, dict[str, Any]]] = []  # (monotonic time seen, checkpoint)
        for _ in _while_running(worker, timeout, "worker"):
            row = read_checkpoint(engine, group, topic)
            if row is not None and (not seen or row["updated_at"] != seen[-1][1]["updated_at"]):
                seen.append((time.monotonic(), row))
        wall = time.monotonic() - started
        final = read_checkpoint(engine, group, topic)
        if final is None:
            raise BenchmarkError(f"worker wrote no checkpoint:\n{worker.log_tail()}")
        if final["updated_at"] != (seen[-1][1]["updated_at"] if seen else None):
            seen.append((time.monotonic(), final))
        if final["next_offset"] != events or final["consumed"] != events:
            raise BenchmarkError(f"worker checkpoint at offset {final['next_offset']:,} with {final['consumed']:,} "
                                 f"consumed; the topic holds {events:,} events")
        first = seen[0][1]
        seconds = (final["updated_at"] - first["updated_at"]).total_seconds()
        rate = Rate(final["next_offset"] - first["next_offset"], seconds)
        counts = {key: final[key] for key in ("consumed", "accepted", "dead_lettered")}
        return WorkerRun(rate, wall, seen[0][0] - started, len(seen), counts, alert_counts(engine))


# -------------------------------------------------------------------------------- (f) replay


def replay_throughput(bootstrap: str, database_url: str, run: str, prefix: str, events: int, checkpoint_seconds: float,
                      directory: Path, timeout: float) -> Rate:
    """``driftline replay --run bench`` of the pre-filled topic, timed from its checkpoints like the worker.

    Its own checkpoints (``replay:bench``) are polled as the worker's are; the rate is the offsets
    between the first one seen and the final one over the difference of their ``updated_at``.
    """
    topic = f"{prefix}{MODEL}"
    group = "replay:bench"
    log = directory / "replay-throughput.log"
    with isolated_database(database_url) as url, database_engine(url) as engine, log.open("wb") as output:
        process = subprocess.Popen([*DRIFTLINE, "replay", "--model", MODEL, "--run", "bench", "--bootstrap", bootstrap,
                                    "--database-url", url, "--topic-prefix", prefix, "--checkpoint-seconds", f"{checkpoint_seconds:g}"],
                                   stdout=output, stderr=subprocess.STDOUT, cwd=REPO)
        deadline = time.monotonic() + timeout
        seen: list[dict[str, Any]] = []
        while process.poll() is None:
            if time.monotonic() > deadline:
                process.kill()
                process.wait()
                raise BenchmarkError(f"replay still running after {timeout:.0f} s:\n{log_tail(log)}")
            row = read_checkpoint(engine, group, topic)
            if row is not None and (not seen or row["updated_at"] != seen[-1]["updated_at"]):
                seen.append(row)
            time.sleep(0.1)
        if process.returncode != 0:
            raise BenchmarkError(f"replay exited {process.returncode}:\n{log_tail(log)}")
        final = read_checkpoint(engine, group, topic)
        if final is None or final["next_offset"] != events or final["consumed"] != events:
            raise BenchmarkError(f"the replay's checkpoint is {final}; the topic holds {events:,} events:\n{log_tail(log)}")
        if not seen or final["updated_at"] != seen[-1]["updated_at"]:
            seen.append(final)
        first = seen[0]
        return Rate(final["next_offset"] - first["next_offset"], (final["updated_at"] - first["updated_at"]).total_seconds())


# -------------------------------------------------------------------------------- latency


@dataclass
class LatencyRun:
    """What the latency run measured."""

    producer_line: str
    latencies_ms: np.ndarray  # every message, offset order
    warmup: int  # leading messages left out of the percentiles
    join_seconds: float
    drain_seconds: float  # from the producer's exit to the checkpoint of the last event
    alerts: dict[str, int]
    counts: dict[str, int]


def wait_until_joined(bootstrap: str, group: str, topic: str, worker: Worker, timeout: float) -> None:
    """Until ``group`` is stable with ``topic`` assigned to a member."""
    from confluent_kafka import ConsumerGroupState
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": bootstrap})
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not worker.running:
            raise BenchmarkError(f"latency worker exited {worker.process.returncode} before joining:\n{worker.log_tail()}")
        with contextlib.suppress(Exception):  # the group does not exist until the worker's consumer asks for it
            description = admin.describe_consumer_groups([group])[group].result(10)
            assigned = {tp.topic for member in description.members if member.assignment
                        for tp in member.assignment.topic_partitions}
            if description.state == ConsumerGroupState.STABLE and topic in assigned:
                return
        time.sleep(0.2)
    raise BenchmarkError(f"latency worker did not join group {group} within {timeout:.0f} s:\n{worker.log_tail()}")


def latency_run(bootstrap: str, database_url: str, run: str, events: int, rate: float, warmup_seconds: float,
                worker_options: list[str], directory: Path) -> LatencyRun:
    prefix = f"{run}.latency{rate:g}."
    topic = f"{prefix}{MODEL}"
    group = f"{run}-latency{rate:g}"
    record = directory / f"latency{rate:g}.npy"
    create_topic(bootstrap, topic)
    with isolated_database(database_url) as url, database_engine(url) as engine:
        started = time.monotonic()
        worker = Worker(bootstrap=bootstrap, database_url=url, prefix=prefix, deadletter=f"{run}.deadletter",
                        group=group, log=directory / f"worker-latency{rate:g}.log",
                        extra=[*worker_options, "--latency-record", str(record)])
        try:
            wait_until_joined(bootstrap, group, topic, worker, timeout=120)
            joined = time.monotonic() - started
            line = produce(bootstrap, topic, events, "--drift", "--rate", f"{rate:g}")
            produced = time.monotonic()
            deadline = time.monotonic() + 120 + events / 2_000  # the worker may lag behind the producer
            while True:
                row = read_checkpoint(engine, group, topic)
                if row is not None and row["next_offset"] == events:
                    drain = time.monotonic() - produced
                    break
                if not worker.running or time.monotonic() > deadline:
                    raise BenchmarkError(f"latency worker checkpointed {row['next_offset'] if row else 0:,} of "
                                         f"{events:,} events:\n{worker.log_tail()}")
                time.sleep(0.1)
        finally:
            code = worker.stop() if worker.running else worker.wait(10)
        if code != 0:
            raise BenchmarkError(f"latency worker exited {code}:\n{worker.log_tail()}")
        if not record.exists():
            raise BenchmarkError(f"latency worker wrote no {record.name}:\n{worker.log_tail()}")
        latencies = np.load(record)
        if len(latencies) != events:
            raise BenchmarkError(f"latency record holds {len(latencies):,} messages, {events:,} were produced")
        final = read_checkpoint(engine, group, topic)
        assert final is not None
        counts = {key: final[key] for key in ("consumed", "accepted", "dead_lettered")}
        if final["consumed"] != events:
            raise BenchmarkError(f"latency worker consumed {final['consumed']:,} events, {events:,} were produced")
        warmup = min(len(latencies) - 1, int(warmup_seconds * rate))
        return LatencyRun(line, latencies, warmup, joined, drain, alert_counts(engine), counts)


# -------------------------------------------------------------------------------- scale


def _partition_checkpoints(engine: sa.Engine, group: str, topic: str) -> list[dict[str, Any]]:
    with engine.connect() as connection:
        rows = connection.execute(
            sa.text("SELECT partition, next_offset, consumed, updated_at FROM checkpoints WHERE consumer_group = :g AND topic = :t"),
            {"g": group, "t": topic},
        ).mappings().all()
    return [dict(row) for row in rows]


def wait_until_members_assigned(bootstrap: str, group: str, members: int, workers: list[Worker], timeout: float) -> None:
    """Until ``group`` is stable with ``members`` members, each with partitions."""
    from confluent_kafka import ConsumerGroupState
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": bootstrap})
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for worker in workers:
            if not worker.running:
                raise BenchmarkError(f"a scale worker exited {worker.process.returncode} before joining:\n{worker.log_tail()}")
        with contextlib.suppress(Exception):
            description = admin.describe_consumer_groups([group])[group].result(10)
            assigned = [m for m in description.members if m.assignment and m.assignment.topic_partitions]
            if description.state == ConsumerGroupState.STABLE and len(assigned) == members:
                return
        time.sleep(0.2)
    raise BenchmarkError(f"group {group} did not settle with {members} assigned members within {timeout:.0f} s")


def scale_run(bootstrap: str, database_url: str, run: str, events: int, partitions: int, workers: int,
              worker_options: list[str], directory: Path, timeout: float) -> Rate:
    """``workers`` workers of one group on a ``partitions``-partition topic fed ``events`` at full speed (see the module)."""
    prefix = f"{run}.scale{partitions}."
    topic = f"{prefix}{MODEL}"
    group = f"{run}-scale{partitions}"
    from driftline.stream.kafka.topics import ensure_topics

    ensure_topics(KafkaConnection(bootstrap), [topic], 30.0, partitions={topic: partitions})
    produce(bootstrap, topic, events, "--seed", "11", "--events-per-second", "1000")
    with isolated_database(database_url) as url, database_engine(url) as engine:
        running = [
            Worker(bootstrap=bootstrap, database_url=url, prefix=prefix, deadletter=f"{run}.deadletter", group=group,
                   log=directory / f"worker-scale{partitions}-{index}.log", extra=worker_options)
            for index in range(workers)
        ]
        try:
            wait_until_members_assigned(bootstrap, group, min(workers, partitions), running, timeout=180)
            seen: list[tuple[int, datetime]] = []  # (events checkpointed, latest commit time) as it changed
            deadline = time.monotonic() + timeout
            while True:
                rows = _partition_checkpoints(engine, group, topic)
                if rows:
                    done, latest = sum(r["next_offset"] for r in rows), max(r["updated_at"] for r in rows)
                    if not seen or done != seen[-1][0]:
                        seen.append((done, latest))
                    if done == events:
                        break
                for worker in running:
                    if not worker.running:
                        raise BenchmarkError(f"a scale worker exited {worker.process.returncode}:\n{worker.log_tail()}")
                if time.monotonic() > deadline:
                    raise BenchmarkError(f"scale run checkpointed {seen[-1][0] if seen else 0:,} of {events:,} events in {timeout:.0f} s")
                time.sleep(0.1)
            rows = _partition_checkpoints(engine, group, topic)
            if sum(r["consumed"] for r in rows) != events:
                raise BenchmarkError(f"scale run consumed {sum(r['consumed'] for r in rows):,} events, {events:,} were produced")
        finally:
            codes = [worker.stop() if worker.running else worker.wait(10) for worker in running]
        if any(codes):
            raise BenchmarkError(f"a scale worker exited {codes}:\n{running[0].log_tail()}")
        first, last = seen[0], seen[-1]
        return Rate(last[0] - first[0], (last[1] - first[1]).total_seconds())


# -------------------------------------------------------------------------------- memory


@dataclass
class MemoryRun:
    """RSS of the worker as its checkpoints passed the offsets of the topic."""

    samples: list[tuple[int, int]]  # (checkpointed offset, RSS bytes), in time order
    events: int

    @property
    def million(self) -> int:
        return min(1_000_000, max(1, self.events // 5))

    def _peak(self, start: int, end: int) -> int | None:
        """The highest RSS sampled while the checkpoint was in ``[start, end)`` (``end`` = events: to the end); None: no sample."""
        values = [rss for offset, rss in self.samples if start <= offset < end or (end >= self.events and offset >= start)]
        return max(values) if values else None

    def peak_rss(self, start: int, end: int) -> int:
        """:meth:`_peak`, which must have samples."""
        peak = self._peak(start, end)
        if peak is None:
            raise BenchmarkError(f"no RSS sample while the checkpoint was between {start:,} and {end:,}")
        return peak

    def rss_over_first_million(self) -> int:
        return self.peak_rss(0, self.million)

    def rss_over_last_million(self) -> int:
        return self.peak_rss(self.events - self.million, self.events)

    def peaks(self) -> list[int | None]:
        """The peak RSS of each million (each fifth of a shorter run); None where no sample fell (a short, fast run)."""
        return [self._peak(start, min(start + self.million, self.events)) for start in range(0, self.events, self.million)]


def _rss_bytes(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def memory_run(bootstrap: str, database_url: str, run: str, events: int, worker_options: list[str], directory: Path,
               timeout: float) -> MemoryRun:
    prefix = f"{run}.memory."
    topic = f"{prefix}{MODEL}"
    group = f"{run}-memory"
    create_topic(bootstrap, topic)
    produce(bootstrap, topic, events, "--seed", "13", "--events-per-second", "1000")
    with isolated_database(database_url) as url, database_engine(url) as engine:
        worker = Worker(bootstrap=bootstrap, database_url=url, prefix=prefix, deadletter=f"{run}.deadletter",
                        group=group, log=directory / "worker-memory.log", extra=worker_options, stop_at_end=True)
        samples: list[tuple[int, int]] = []
        for _ in _while_running(worker, timeout, "memory worker"):
            row = read_checkpoint(engine, group, topic)
            offset = row["next_offset"] if row is not None else 0
            rss = _rss_bytes(worker.process.pid)
            if rss is not None:
                samples.append((offset, rss))
        final = read_checkpoint(engine, group, topic)
        if final is None or final["consumed"] != events:
            raise BenchmarkError(f"memory worker consumed {final['consumed'] if final else 0:,} of {events:,} events")
        return MemoryRun(samples, events)


# -------------------------------------------------------------------------------- report


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == FAUST_AGENT_COMMAND:
        return faust_count_agent(sys.argv[2:])
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000,
                        help="events of the pre-filled topic (default 1,000,000; below ~100,000 the worker's figure is "
                        "dominated by its 1-s checkpoint cadence and start-up)")
    parser.add_argument("--event-time-rate", type=float, default=1000.0,
                        help="events per second of event time in the pre-filled topic (default 1,000, as engine_throughput.py: "
                        "60,000 events per 1-minute window)")
    parser.add_argument("--rates", type=float, nargs="+", default=[5_000.0, 20_000.0],
                        help="steady produce rates of the latency runs (default 5,000 and 20,000 events/s)")
    parser.add_argument("--latency-seconds", type=float, default=60.0, help="length of each latency run (default 60 s)")
    parser.add_argument("--warmup-seconds", type=float, default=5.0, help="leading seconds of a latency run left out (default 5)")
    parser.add_argument("--rss-events", type=int, default=5_000_000, help="events of the memory run (default 5,000,000; 0: none)")
    parser.add_argument("--scale-events", type=int, default=2_000_000, help="events of each scale run (default 2,000,000; 0: none)")
    parser.add_argument("--batch-events", type=int, default=50_000, help="worker --batch-events (default: the worker's, 50000)")
    parser.add_argument("--batch-seconds", type=float, default=0.25, help="worker --batch-seconds (default: the worker's, 0.25)")
    parser.add_argument("--checkpoint-seconds", type=float, default=1.0, help="worker --checkpoint-seconds (default: the worker's, 1.0)")
    parser.add_argument("--bootstrap", default=os.environ.get("DRIFTLINE_KAFKA_BOOTSTRAP"), help="default $DRIFTLINE_KAFKA_BOOTSTRAP")
    parser.add_argument("--database-url", default=os.environ.get("DRIFTLINE_DATABASE_URL"), help="default $DRIFTLINE_DATABASE_URL")
    args = parser.parse_args()
    if not args.bootstrap or not args.database_url:
        parser.error('no services: run `eval "$(bash deploy/local/services.sh up)"` or pass --bootstrap and --database-url')
    if args.events < 2 or args.latency_seconds <= args.warmup_seconds:
        parser.error("--events must be at least 2 and --latency-seconds longer than --warmup-seconds")

    worker_options = ["--batch-events", str(args.batch_events), "--batch-seconds", f"{args.batch_seconds:g}",
                      "--checkpoint-seconds", f"{args.checkpoint_seconds:g}"]
    timeout = 120 + args.events / 2_000  # a counting Faust agent does ~20k events/s here
    run = unique("bench-e2e-")
    prefix = f"{run}.fill."
    topic = f"{prefix}{MODEL}"
    print(f"$ python {' '.join(sys.argv)}")
    print(f"python {platform.python_version()}, {os.cpu_count()} CPUs, Kafka {args.bootstrap}, run id {run}")
    print(f"worker: {' '.join(worker_options)}")
    begun = time.monotonic()
    latencies: list[tuple[float, LatencyRun]] = []
    memory: MemoryRun | None = None
    scale: list[tuple[str, Rate]] = []
    with tempfile.TemporaryDirectory(prefix="driftline-bench-") as temporary:
        directory = Path(temporary)
        try:
            create_topic(args.bootstrap, topic)
            fill = produce(args.bootstrap, topic, args.events, "--seed", "11", "--events-per-second", f"{args.event_time_rate:g}")
            print(f"pre-fill: {fill}")
            raw = raw_consumer_throughput(args.bootstrap, topic, args.events, timeout, args.batch_events)
            print(f"(a) raw consumer: {raw.per_second:,.0f} events/s")
            agent = faust_agent_throughput(args.bootstrap, prefix, f"{run}-faust", args.events, directory, timeout)
            print(f"(b) counting Faust agent: {agent.per_second:,.0f} events/s")
            worker = worker_throughput(args.bootstrap, args.database_url, run, prefix, args.events, worker_options,
                                       directory, timeout)
            print(f"(c) full worker: {worker.rate.per_second:,.0f} events/s")
            replayed = replay_throughput(args.bootstrap, args.database_url, run, prefix, args.events, args.checkpoint_seconds,
                                         directory, timeout)
            print(f"(f) replay: {replayed.per_second:,.0f} events/s")
            for rate in args.rates:
                latencies.append((rate, latency_run(args.bootstrap, args.database_url, run, int(rate * args.latency_seconds), rate,
                                                    args.warmup_seconds, worker_options, directory)))
                print(f"latency run at {rate:,.0f} events/s done")
            if args.scale_events:
                for label, partitions, workers in (("(d) 1 worker, 1 partition", 1, 1), ("(e) 2 workers, 2 partitions", 2, 2)):
                    scale.append((label, scale_run(args.bootstrap, args.database_url, run, args.scale_events, partitions, workers,
                                                   worker_options, directory, 120 + args.scale_events / 2_000)))
                    print(f"{label}: {scale[-1][1].per_second:,.0f} events/s")
            if args.rss_events:
                memory = memory_run(args.bootstrap, args.database_url, run, args.rss_events, worker_options, directory,
                                    120 + args.rss_events / 10_000)
        except (BenchmarkError, AssertionError) as exc:  # AssertionError: the harness's Worker timed out
            print(f"end_to_end: FAILED: {exc}", file=sys.stderr)
            return 1
        finally:
            with contextlib.suppress(Exception):
                delete_topics(args.bootstrap, run)

    print()
    print(f"throughput over {args.events:,} events of {MODEL} (1 partition, {args.event_time_rate:g} events/s of event time)")
    print(f"{'path':52s} {'events/s':>10s} {'vs (a)':>8s} {'vs (b)':>8s} {'counted':>10s} {'seconds':>8s}")
    for label, rate in (
        ("(a) raw confluent-kafka consumer, counting", raw),
        ("(b) Faust agent (worker's app settings), counting", agent),
        ("(c) driftline worker (full), checkpoint to checkpoint", worker.rate),
        ("(f) driftline replay (full), checkpoint to checkpoint", replayed),
    ):
        print(f"{label:52s} {rate.per_second:10,.0f} {rate.per_second / raw.per_second:7.3f}x "
              f"{rate.per_second / agent.per_second:7.3f}x {rate.events:10,} {rate.seconds:8.1f}")
    to_raw, to_agent = worker.rate.per_second / raw.per_second, worker.rate.per_second / agent.per_second
    print(f"worker: {worker.wall_seconds:.1f} s from process start to exit, first checkpoint after "
          f"{worker.first_checkpoint_seconds:.1f} s, {worker.checkpoints} checkpoints seen; checkpoint counts {worker.counts}; "
          f"alerts {worker.alerts or 'none'}")
    print(f"targets: worker / raw = {to_raw:.3f} (>= {RAW_TARGET:.2f}: {'met' if to_raw >= RAW_TARGET else 'NOT met'}); "
          f"worker / Faust agent = {to_agent:.2f} (>= {AGENT_TARGET:g}: {'met' if to_agent >= AGENT_TARGET else 'NOT met'}); "
          f"replay / worker = {replayed.per_second / worker.rate.per_second:.2f} (>= 1: "
          f"{'met' if replayed.per_second >= worker.rate.per_second else 'NOT met'})")

    for rate, latency in latencies:
        steady = latency.latencies_ms[latency.warmup:]
        p50, p95, p99 = np.percentile(steady, [50, 95, 99])
        target = LATENCY_TARGETS_MS.get(rate)
        print()
        print(f"produce-to-commit latency, {len(latency.latencies_ms):,} events of the drift stream at {rate:,.0f} events/s "
              f"(worker joined its group after {latency.join_seconds:.1f} s)")
        print(f"producer: {latency.producer_line}")
        print(f"{'messages':>30s} {'p50 ms':>8s} {'p95 ms':>8s} {'p99 ms':>8s} {'max ms':>8s}")
        print(f"{f'{len(steady):,} after the first {args.warmup_seconds:g} s':>30s} {p50:8.0f} {p95:8.0f} {p99:8.0f} {steady.max():8.0f}")
        decile = max(1, len(steady) // 10)
        print(f"median latency of the first / last tenth: {np.median(steady[:decile]):,.0f} / {np.median(steady[-decile:]):,.0f} ms; "
              f"last event checkpointed {latency.drain_seconds:.1f} s after the producer finished")
        print(f"checkpoint counts {latency.counts}; alerts: {sum(latency.alerts.values())} {latency.alerts}")
        if target is not None:
            print(f"target: p99 < {target:,.0f} ms at {rate:,.0f} events/s -> {'met' if p99 < target else 'NOT met'} (p99 {p99:,.0f} ms)")

    if scale:
        print()
        print(f"scale: a topic of {args.scale_events:,} keyed events, counted once the group is stable (a figure, not a target)")
        for label, rate in scale:
            print(f"{label:52s} {rate.per_second:10,.0f} {rate.per_second / scale[0][1].per_second:7.3f}x {rate.events:10,} {rate.seconds:8.1f}")

    if memory is not None:
        first, last = memory.rss_over_first_million(), memory.rss_over_last_million()
        growth = last / first - 1.0
        print()
        print(f"memory over {memory.events:,} events: peak RSS {first / 2**20:,.0f} MiB over the first million, "
              f"{last / 2**20:,.0f} MiB over the last million ({len(memory.samples)} samples): growth {growth:+.1%} "
              f"(target < {RSS_GROWTH_TARGET:.0%}: {'met' if growth < RSS_GROWTH_TARGET else 'NOT met'})")
        print("  peak RSS per million (MiB): " + ", ".join("-" if peak is None else f"{peak / 2**20:,.0f}" for peak in memory.peaks()))
    print(f"total {time.monotonic() - begun:.0f} s, finished {datetime.now().isoformat(timespec='seconds')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

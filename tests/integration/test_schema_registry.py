"""Confluent framing through a real Schema Registry (Apicurio's Confluent API, ``deploy/local/registry.sh``), on the
real broker and database.

One topic, one subject (``<topic>-value``), five ``driftline produce`` runs of consecutive events, then one
``driftline worker`` that resolves every schema id in the same registry:

1. auto-register: the contract's schema becomes version 1;
2. use-latest: nothing registered, written with version 1;
3. an evolution the registry refuses under BACKWARD — a new required field without a default (data written
   before cannot be read with it) — exits non-zero with the registry's 409 in one line, and sends nothing;
4. a compatible evolution — a new optional field with a default (the catalog's ``customer_segment`` producer)
   — becomes version 2;
5. use-latest again: written with version 2.

The worker accepts every event sent and raises exactly one ``schema_change`` alert, for version 2's id,
saying it is compatible with the contract.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from worker_harness import MODEL, Worker, checkpoint, isolated_database, read_topic, snapshot, unique

import driftline.schemas
from driftline.schemas.contract_catalog import Catalog
from driftline.sinks.database import create_database_engine
from driftline.stream.cli import main
from driftline.stream.demo.generator import SyntheticStream

SEGMENT_SCHEMA = Path(driftline.schemas.__file__).parent / "catalog" / "credit_risk_v1_1_segment.avsc"
RUN_EVENTS = 2_000


def _event_files(tmp_path: Path, runs: int) -> list[Path]:
    """``runs`` JSON-lines files of consecutive synthetic events (ids and event times continue from file to file)."""
    contract = Catalog.load().contract(MODEL)
    stream = SyntheticStream(contract, seed=5, events_per_second=50)
    total = runs * RUN_EVENTS
    records = stream.records(stream.columns(total), stream.event_times(total))
    paths = []
    for run in range(runs):
        path = tmp_path / f"events-{run}.jsonl"
        path.write_text("".join(json.dumps(r) + "\n" for r in records[run * RUN_EVENTS:(run + 1) * RUN_EVENTS]), encoding="utf-8")
        paths.append(path)
    return paths


def _registry_versions(schema_registry_url: str, subject: str) -> list[int]:
    from confluent_kafka.schema_registry import SchemaRegistryClient

    return list(SchemaRegistryClient({"url": schema_registry_url}).get_versions(subject))


def _schema_id(schema_registry_url: str, subject: str, version: int) -> int:
    from confluent_kafka.schema_registry import SchemaRegistryClient

    return int(SchemaRegistryClient({"url": schema_registry_url}).get_version(subject, version).schema_id)


def test_produce_registers_and_the_worker_decodes_through_the_registry(
    kafka_bootstrap: str, database_url: str, schema_registry_url: str, tmp_path: Path,
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
) -> None:
    prefix = unique("registry") + "."
    topic, deadletter, group = prefix + MODEL, prefix + "deadletter", "registry"
    subject = f"{topic}-value"
    files = _event_files(tmp_path, 4)
    contract = Catalog.load().contract(MODEL)

    def produce(path: Path, *options: str) -> int:
        return main(["produce", "--model", MODEL, "--input", str(path), "--topic", topic, "--bootstrap", kafka_bootstrap,
                     "--wire-format", "confluent", "-q", *options])

    # 1. auto-register (the default mode), the registry named on the command line.
    assert produce(files[0], "--schema-registry", schema_registry_url) == 0, capsys.readouterr().err
    assert _registry_versions(schema_registry_url, subject) == [1]
    first_id = _schema_id(schema_registry_url, subject, 1)
    # 2. use-latest, the registry from $DRIFTLINE_SCHEMA_REGISTRY_URL: nothing is registered.
    monkeypatch.setenv("DRIFTLINE_SCHEMA_REGISTRY_URL", schema_registry_url)
    assert produce(files[1], "--registry-mode", "use-latest") == 0, capsys.readouterr().err
    assert _registry_versions(schema_registry_url, subject) == [1]
    capsys.readouterr()

    # 3. A new required field without a default: BACKWARD refuses it (version 1's data has no value for it).
    required = json.loads(json.dumps(contract.schema_json))
    required["fields"].append({"name": "branch_code", "type": "string"})
    required_path = tmp_path / "credit_risk_branch_required.avsc"
    required_path.write_text(json.dumps(required), encoding="utf-8")
    assert produce(files[2], "--writer-schema", str(required_path)) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"driftline produce: error: the Schema Registry refused the writer schema under {subject}: "
                               "the subject's compatibility rule does not allow it"), lines[0]
    assert "branch_code" in lines[0] and lines[0].endswith("(HTTP 409)"), lines[0]
    assert _registry_versions(schema_registry_url, subject) == [1]

    # 4. A new optional field with a default: compatible, registered as version 2.
    assert produce(files[2], "--writer-schema", str(SEGMENT_SCHEMA)) == 0, capsys.readouterr().err
    assert _registry_versions(schema_registry_url, subject) == [1, 2]
    second_id = _schema_id(schema_registry_url, subject, 2)
    assert second_id != first_id
    # 5. use-latest writes with version 2 now.
    assert produce(files[3], "--registry-mode", "use-latest") == 0, capsys.readouterr().err
    assert _registry_versions(schema_registry_url, subject) == [1, 2]

    # What is on the topic: Confluent framing, version 1's id, then version 2's; nothing of the refused run.
    messages = read_topic(kafka_bootstrap, topic)
    assert [m.value[:5] for m in messages] == (
        [b"\x00" + first_id.to_bytes(4, "big")] * (2 * RUN_EVENTS) + [b"\x00" + second_id.to_bytes(4, "big")] * (2 * RUN_EVENTS)
    )

    with isolated_database(database_url) as url:
        # The worker's registry comes from $DRIFTLINE_SCHEMA_REGISTRY_URL (its default), set in its environment.
        worker = Worker(bootstrap=kafka_bootstrap, database_url=url, prefix=prefix, deadletter=deadletter, group=group,
                        log=tmp_path / "worker.log", stop_at_end=True, schema_registry_url=schema_registry_url)
        assert worker.wait(300) == 0, worker.log_tail()
        assert f"schema ids are resolved in the Schema Registry at {schema_registry_url}" in worker.log_path.read_text()

        counts = checkpoint(url, group, topic)
        assert counts is not None
        assert (counts["consumed"], counts["accepted"], counts["dead_lettered"]) == (4 * RUN_EVENTS, 4 * RUN_EVENTS, 0), counts
        engine = create_database_engine(url)
        try:
            with engine.connect() as connection:
                changes = connection.execute(sa.text("SELECT writer_id, compatible, new_fields FROM schema_changes")).all()
                alerts: list[Any] = connection.execute(
                    sa.text("SELECT detector, severity, message FROM alerts WHERE kind = 'schema_change'")
                ).all()
        finally:
            engine.dispose()
        # A replay into the live run resolves the ids in the same registry (the codecs of the worker's
        # factory): it computes what the worker computed, and changes no row.
        before = snapshot(url)
        replay = ["replay", "--model", MODEL, "--bootstrap", kafka_bootstrap, "--database-url", url, "--topic-prefix", prefix,
                  "--group", group, "-q"]
        assert main([*replay, "--schema-registry", schema_registry_url]) == 0, capsys.readouterr().err
        out = capsys.readouterr().out
        assert f"{4 * RUN_EVENTS:,} messages: {4 * RUN_EVENTS:,} accepted, 0 rejected" in out, out
        assert snapshot(url) == before
        # Without a registry the same messages cannot be read (as for a worker without one).
        monkeypatch.delenv("DRIFTLINE_SCHEMA_REGISTRY_URL")
        assert main([*replay, "--run", "no-registry"]) == 0, capsys.readouterr().err
        out = capsys.readouterr().out
        assert f"0 accepted, {4 * RUN_EVENTS:,} rejected (unknown_schema_id {4 * RUN_EVENTS:,})" in out, out
    # Version 1 is the contract itself: no change. Version 2 is one, compatible, reported once.
    assert len(changes) == 1, changes
    writer_id, compatible, new_fields = changes[0]
    assert writer_id == str(second_id) and compatible, changes
    assert "customer_segment" in json.dumps(new_fields), changes
    assert len(alerts) == 1, alerts
    detector, severity, message = alerts[0]
    assert detector == "schema_diff" and severity == "warning", alerts  # a compatible change warns; an incompatible one is critical
    assert message == (f"writer schema {second_id} differs from contract credit_risk v1: new field 'customer_segment' "
                       "([null, string]); compatible with credit_risk v1: events are resolved to the contract"), message

"""Many models over many workers: one consumer group shares every model topic, and a dead worker's models move.

Six models (copies of the credit-risk contract under other names) each have a topic of events. Three
workers of one group start with ``--all-models``; once they are under way one is SIGKILLed: its
partitions move to the others after its session expires, each restored from its checkpoint.
Afterwards every window aggregate and alert equal those of one uninterrupted worker, and
consumed = accepted + dead-lettered = the topic's events, per model.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from worker_harness import (
    REPO,
    Worker,
    checkpoint,
    create_topic,
    eventually,
    isolated_database,
    produce,
    snapshot,
    synthetic_payloads,
    unique,
)

from driftline.schemas.contract import load_contract
from driftline.sinks import SqlProfileStore, create_database_engine
from driftline.stream.demo.generator import Episode, SyntheticStream
from driftline.stream.monitor.profile import build_reference_profile

MODELS = [f"model_{letter}" for letter in "abcdef"]
N = 20_000


def _contracts(directory: Path) -> Path:
    """A contract directory with the six models: the credit-risk contract, renamed."""
    source = json.loads((REPO / "schemas" / "credit_risk.avsc").read_text(encoding="utf-8"))
    for model in MODELS:
        schema = dict(source, namespace=f"driftline.models.{model}", driftline={**source["driftline"], "model": model})
        (directory / f"{model}.avsc").write_text(json.dumps(schema), encoding="utf-8")
    return directory


def _store_profiles(url: str, schemas: Path) -> None:
    engine = create_database_engine(url)
    try:
        store = SqlProfileStore(engine)
        for model in MODELS:
            contract = load_contract(schemas / f"{model}.avsc")
            profile = build_reference_profile(contract, SyntheticStream(contract, seed=3).columns(20_000, seed_offset=1), model_version="v1")
            store.save(model, "v1", profile.to_json())
    finally:
        engine.dispose()


def _progress(url: str, group: str, prefix: str) -> int:
    return sum((checkpoint(url, group, prefix + model) or {}).get("next_offset", 0) for model in MODELS)


def _owns_partitions(worker: Worker) -> bool:
    log = worker.log_path.read_text()
    return "restored from its checkpoint" in log or "no checkpoint: from the beginning" in log


def test_three_workers_share_six_models_and_survive_a_kill_9(kafka_bootstrap: str, database_url: str, tmp_path: Path) -> None:
    schemas = _contracts(tmp_path)
    prefix = unique("many") + "."
    streams = {}
    for position, model in enumerate(MODELS):
        contract = load_contract(schemas / f"{model}.avsc")
        episodes = [Episode("mean_shift", N // 2, N, "annual_income", size=1.0)] if position % 2 else []
        streams[model] = synthetic_payloads(N, seed=position, episodes=episodes, contract=contract)
        create_topic(kafka_bootstrap, prefix + model)
    common = ["--all-models", "--schemas", str(schemas), "--batch-events", "2000"]
    with isolated_database(database_url) as clean_url, isolated_database(database_url) as url:
        _store_profiles(clean_url, schemas)
        _store_profiles(url, schemas)
        # Three workers of one group join while the topics are still empty...
        workers = [
            Worker(bootstrap=kafka_bootstrap, database_url=url, prefix=prefix, deadletter=prefix + "dlq", group="three",
                   log=tmp_path / f"worker{index}.log", models=(), extra=common)
            for index in range(3)
        ]
        try:
            eventually(lambda: True if all(_owns_partitions(worker) for worker in workers) else None, 120,
                       "the group spread the six models over the three workers")
            # ...then the events arrive in ten rounds, and one worker is killed after the third.
            victim = workers[0]
            for round_ in range(10):
                for model in MODELS:
                    produce(kafka_bootstrap, prefix + model, streams[model][round_ * N // 10 : (round_ + 1) * N // 10])
                if round_ == 2:
                    eventually(lambda: True if _progress(url, "three", prefix) > 0 else None, 60, "progress before the kill")
                    victim.kill()
                time.sleep(0.3)
            eventually(lambda: True if _progress(url, "three", prefix) == N * len(MODELS) else None, 300,
                       "every event checkpointed by the surviving workers")
            for worker in workers[1:]:
                assert worker.stop() == 0, worker.log_tail()
        finally:
            for worker in workers:
                if worker.running:
                    worker.process.kill()
        survivors = "".join(worker.log_path.read_text() for worker in workers[1:])
        assert "restored from its checkpoint" in survivors  # the victim's models moved, from their checkpoints
        clean = Worker(bootstrap=kafka_bootstrap, database_url=clean_url, prefix=prefix, deadletter=prefix + "dlq.clean",
                       group="one", log=tmp_path / "one.log", stop_at_end=True, models=(), extra=common)
        assert clean.wait(300) == 0, clean.log_tail()
        for model in MODELS:
            final = checkpoint(url, "three", prefix + model)
            assert final is not None, f"{model} was never checkpointed"
            assert final["consumed"] == final["accepted"] + final["dead_lettered"] == N, (model, final)
        rows = snapshot(url)
        assert rows == snapshot(clean_url)
        assert {row[0] for row in rows["window_aggregates"]} == set(MODELS)  # every model was monitored
        assert any(row[3] == "mean_shift" for row in rows["alerts"])  # the drifting ones raised alerts

"""The replay driver (``stream/runner/replay.py``) with in-memory ports: holding back unsettled rows, and a split model's merge.

The real broker and database, the CLI and the live run's snapshots are in tests/integration/test_replay.py.
"""

from __future__ import annotations

import numpy as np
import pytest
from label_streams import concept_change_stream

from driftline.schemas.codec import Codec, encode_single_object
from driftline.schemas.contract import Contract
from driftline.schemas.contract_catalog import Catalog
from driftline.stream.monitor.engine import EngineConfig
from driftline.stream.monitor.profile import ReferenceProfile
from driftline.stream.monitor.results import PerformanceWindow, to_canonical_json
from driftline.stream.runner import (
    CountedDeadLetters,
    InMemoryCheckpointStore,
    MessageBatch,
    PartitionKey,
    PartitionRunner,
    ReplayItem,
    ReplayStore,
    ReplayTally,
    replay,
)

N = 12_000  # 20 events/s: ten one-minute windows
DELAY_MS = 30_000
CONFIG = EngineConfig(window_length_ms=60_000, allowed_lateness_ms=60_000, label_horizon_ms=120_000, label_grace_ms=30_000)
KEY = PartitionKey("replay:live", "predictions.credit_risk", 0)


@pytest.fixture(scope="module")
def items(contract: Contract, catalog: Catalog) -> list[ReplayItem]:
    """Batches of 500 predictions, each followed by the labels observed (30 s later) up to its last prediction's time."""
    events = concept_change_stream(contract, N, N // 2)
    schema = catalog.event_schema("driftline.events.Label")
    order = np.argsort(events["times"] + DELAY_MS, kind="stable")
    labels = [encode_single_object({"event_id": events["ids"][i], "model_name": contract.model, "label": float(events["labels"][i]),
                                    "label_time": int(events["times"][i]) + DELAY_MS}, schema) for i in order]
    label_times = (events["times"] + DELAY_MS)[order]
    out: list[ReplayItem] = []
    sent = 0
    for start in range(0, N, 500):
        end = min(N, start + 500)
        out.append(ReplayItem(0, MessageBatch(list(range(start, end)), events["payloads"][start:end], [0] * (end - start))))
        due = int(np.searchsorted(label_times, events["times"][end - 1], side="right"))
        if due > sent:
            out.append(ReplayItem(0, MessageBatch(list(range(sent, due)), labels[sent:due], [0] * (due - sent)), labels=True))
            sent = due
    return out


def _replay(contract: Contract, catalog: Catalog, profile: ReferenceProfile, items: list[ReplayItem], *,
            hold: bool) -> tuple[InMemoryCheckpointStore, ReplayStore, ReplayTally]:
    store, tally = InMemoryCheckpointStore(), ReplayTally()
    replay_store = ReplayStore(store, None, tally, hold_unsettled=hold)
    runner = PartitionRunner(key=KEY, contract=contract, profiles={"v1": profile}, codec=Codec(catalog), store=replay_store,
                             deadletters=CountedDeadLetters(), config=CONFIG)
    replay_store.bind(runner)
    replay({0: runner}, items, tally, checkpoint_seconds=0.0)  # a checkpoint after every item
    return store, replay_store, tally


def _performance(store: InMemoryCheckpointStore) -> list[PerformanceWindow]:
    return [window for result in store.results for window in result.performance_windows]


def test_held_back_rows_are_written_once_and_final(contract: Contract, catalog: Catalog, labelled: ReferenceProfile,
                                                   items: list[ReplayItem]) -> None:
    written, _, tally = _replay(contract, catalog, labelled, items, hold=False)
    every = _performance(written)
    final = {window.window_start_ms: window for window in every}  # the last record of each window
    assert len(every) > 2 * len(final), "the rows were not rewritten as labels arrived: nothing to hold back"
    assert tally.predictions == N and tally.labels > 0.9 * N

    held_store, held, held_tally = _replay(contract, catalog, labelled, items, hold=True)
    once = _performance(held_store)
    # Each window's row is written once, and it is the final one; the windows whose labels could still
    # come at the end (the last few minutes) are not written at all, and counted.
    assert len({w.window_start_ms for w in once}) == len(once) > 5
    assert to_canonical_json(once) == to_canonical_json([final[w.window_start_ms] for w in once])
    left = sorted(set(final) - {w.window_start_ms for w in once})
    assert left and held.held == held_tally.held_back == len(left)
    assert min(left) > max(w.window_start_ms for w in once)
    # Nothing else is held: the other tables get what the plain replay wrote.
    for name in ("feature_windows", "model_windows", "alerts"):
        assert to_canonical_json([r for res in held_store.results for r in getattr(res, name)]) == to_canonical_json(
            [r for res in written.results for r in getattr(res, name)]), name
    assert held_tally.rows["performance_windows"] == len(once)


def test_a_replay_store_starts_its_runner_where_it_is_told(contract: Contract, catalog: Catalog, profile: ReferenceProfile,
                                                          items: list[ReplayItem]) -> None:
    predictions = [item for item in items if not item.labels]
    store, tally = InMemoryCheckpointStore(), ReplayTally()
    first = PartitionRunner(key=KEY, contract=contract, profiles={"v1": profile}, codec=Codec(catalog),
                            store=ReplayStore(store, None, tally), deadletters=CountedDeadLetters())
    replay({0: first}, predictions[:10], tally)
    checkpoint = store.load_checkpoint(KEY.consumer_group, KEY.topic, KEY.partition)
    assert checkpoint is not None and checkpoint.next_offset == 5_000
    # Under another key, from that state: it goes on from offset 5,000 (what comes before is skipped).
    other = PartitionKey("replay:fix-1", KEY.topic, 0)
    resumed = PartitionRunner(key=other, contract=contract, profiles={"v1": profile}, codec=Codec(catalog),
                              store=ReplayStore(store, checkpoint, tally), deadletters=CountedDeadLetters())
    assert resumed.restored and resumed.next_offset == 5_000
    assert resumed.process(predictions[0].batch) is None
    with pytest.raises(RuntimeError, match="bind"):
        ReplayStore(store, None, tally, hold_unsettled=True).commit(checkpoint, [])

"""The demo's synthetic stream as columns to publish: what ``driftline produce --synthetic`` and ``driftline generate`` send."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

import pyarrow as pa

from driftline.schemas.contract import Contract
from driftline.stream.produce.input_files import InputError, SourceBatch

from .demo import BATCH_SIZE, demo_episodes, demo_event_times, renamed_schema
from .generator import Episode, SyntheticStream

__all__ = ["synthetic_batches"]


def synthetic_batches(
    contract: Contract, events: int, *, seed: int = 7, events_per_second: float = 10.0, drift: bool = False, model_version: str = "v1"
) -> Iterator[SourceBatch]:
    """Columns of ``events`` synthetic events, in the generator's batches of 2,000.

    With ``drift`` the stream is exactly the one ``driftline demo`` monitors for the same ``events``,
    ``seed`` and ``events_per_second``: its value episodes (mean shift, producer schema change,
    new-category flood; the renamed field is written with the renamed writer schema, which the
    bundled catalog knows) and its trickle of events later than the allowed lateness. Its concept
    episode lives in the labels, which this source does not produce.
    """
    stream = SyntheticStream(contract, seed=seed, events_per_second=events_per_second)
    episodes: list[Episode] = []
    rename: Episode | None = None
    renamed: dict[str, object] | None = None
    if drift:
        episodes = demo_episodes(events)
        missing = sorted({e.feature for e in episodes} - {f.name for f in contract.monitored_fields})
        if missing:
            raise InputError(f"--drift uses the demo model's fields {missing}, which contract {contract.label} lacks")
        rename = next(e for e in episodes if e.kind == "rename")
        renamed = renamed_schema(contract, rename.feature, rename.new_name)
    identity = {spec.role: spec.name for spec in contract.fields}
    for offset in range(0, events, BATCH_SIZE):
        n = min(BATCH_SIZE, events - offset)
        columns: dict[str, Any] = stream.columns(n, offset=offset)
        if drift:
            stream.apply_episodes(columns, episodes, offset=offset)
            times = demo_event_times(stream, n, offset)
        else:
            times = stream.event_times(n, offset=offset)
        columns[identity["id"]] = [f"evt-{i:09d}" for i in range(offset, offset + n)]
        columns[identity["event_time"]] = times
        columns[identity["model_name"]] = pa.array([contract.model] * n, pa.string())
        columns[identity["model_version"]] = pa.array([model_version] * n, pa.string())
        if rename is None or not (offset < rename.end and rename.start < offset + n):
            yield SourceBatch(columns, n)
            continue
        cuts = sorted({0, n, min(max(rename.start - offset, 0), n), min(max(rename.end - offset, 0), n)})
        for start, stop in itertools.pairwise(cuts):
            part = {name: values[start:stop] for name, values in columns.items()}
            inside = rename.start <= offset + start < rename.end
            if inside:
                part[rename.new_name] = part.pop(rename.feature)
            yield SourceBatch(part, stop - start, writer_schema=renamed if inside else None)

"""A check shared by the unit and the integration tests of the producer (``pythonpath`` in pyproject.toml)."""

from __future__ import annotations

from typing import Any

from driftline.schemas import Contract, DecodedBatch, FieldStatus


def assert_decodes_to(batch: DecodedBatch, contract: Contract, records: list[dict[str, Any]]) -> None:
    """Every message was accepted and decodes to ``records``: ids, event times, versions and every monitored field."""
    assert batch.n_input == len(records) and batch.n_accepted == len(records), batch.rejections[:3]
    assert batch.event_id.tolist() == [r["event_id"] for r in records]
    assert batch.event_time_ms.tolist() == [r["event_time"] for r in records]
    assert batch.model_version.tolist() == [r["model_version"] for r in records]
    for spec in contract.monitored_fields:
        expected = [r[spec.name] for r in records]
        nulls = batch.status[spec.name] == FieldStatus.NULL
        assert nulls.tolist() == [v is None for v in expected], spec.name
        assert batch.values[spec.name][~nulls].tolist() == [v for v in expected if v is not None], spec.name

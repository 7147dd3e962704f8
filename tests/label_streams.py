"""A prediction stream with labels whose relation to the inputs changes halfway: the challenger and concept tests' input."""

from __future__ import annotations

from typing import Any

import numpy as np

from driftline.schemas.codec import encode_single_object
from driftline.schemas.contract import Contract
from driftline.stream.demo.generator import SyntheticStream


def concept_change_stream(contract: Contract, n: int, change: int) -> dict[str, Any]:
    """``n`` predictions at 20 events/s; labels follow the score until ``change``, then the applicant's income.

    ``label_order``: the labels' arrival order, out of their predictions' order within blocks of 500 (about 25 s).
    """
    synthetic = SyntheticStream(contract, seed=21, events_per_second=20)
    columns = synthetic.columns(n)
    times = synthetic.event_times(n)
    records = synthetic.records(columns, times)
    rng = np.random.default_rng(22)
    scores = np.array([float(r["prediction_score"]) for r in records])
    income = np.log(np.array([float(r["annual_income"]) for r in records]))
    z = (income - income.mean()) / income.std()
    probability = np.where(np.arange(n) < change, scores, 1.0 / (1.0 + np.exp(-4.0 * z)))
    labels = (rng.random(n) < probability).astype(float)
    order = np.concatenate([rng.permutation(np.arange(start, min(n, start + 500))) for start in range(0, n, 500)])
    return {
        "label_order": order,
        "payloads": [encode_single_object(r, contract.schema_json) for r in records],
        "ids": [str(r["event_id"]) for r in records],
        "times": np.asarray(times, dtype=np.int64),
        "labels": labels,
    }

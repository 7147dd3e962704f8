"""Kafka topic names and dead-letter header names shared by the worker, the producer and replay.

One topic per model, ``predictions.<model>``, with **one partition**: the per-event detectors
(Page–Hinkley, ADWIN) need the model's events in one total order, and the same order is what
makes a replay compute exactly what the live run computed (DESIGN decision 1). Throughput scales
across models (one agent each); a model that outgrows one partition needs per-partition engines
merged by window, which driftline does not do yet.
"""

from __future__ import annotations

import re

__all__ = [
    "DEADLETTER_TOPIC",
    "HEADER_DETAIL",
    "HEADER_FIELD",
    "HEADER_REASON",
    "HEADER_SOURCE",
    "PREDICTION_TOPIC_PREFIX",
    "prediction_topic",
]

PREDICTION_TOPIC_PREFIX = "predictions."
DEADLETTER_TOPIC = "driftline.deadletter"

#: Headers of a dead-lettered message (values are UTF-8). Its value is the original bytes and its
#: key is ``HEADER_SOURCE``'s value, ``<topic>:<partition>:<offset>``: a worker that restarts after a
#: crash may dead-letter the same message again, and the key tells such copies apart.
HEADER_REASON = "driftline.reason"
HEADER_FIELD = "driftline.field"
HEADER_DETAIL = "driftline.detail"
HEADER_SOURCE = "driftline.source"

_MODEL_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def prediction_topic(model: str, prefix: str = PREDICTION_TOPIC_PREFIX) -> str:
    """The topic of a model's prediction events; ``prefix`` namespaces an environment (``staging.predictions.``).

    >>> prediction_topic("credit_risk")
    'predictions.credit_risk'
    """
    if not _MODEL_NAME.match(model):
        raise ValueError(f"model: {model!r} is not a valid model name (an Avro record name)")
    return prefix + model

"""Publishing prediction events: the producer API and the input files ``driftline produce`` reads."""

from __future__ import annotations

from .input_files import InputError, RowMapper, RowProblem, SourceBatch, file_format, read_file
from .producer import WIRE_FORMATS, DeliveryError, EncodedBatch, EventProducer

__all__ = [
    "WIRE_FORMATS",
    "DeliveryError",
    "EncodedBatch",
    "EventProducer",
    "InputError",
    "RowMapper",
    "RowProblem",
    "SourceBatch",
    "file_format",
    "read_file",
]

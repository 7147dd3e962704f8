"""The generator's decoded-batch shortcut gives what the codec gives on the same events."""

from __future__ import annotations

import numpy as np

from driftline.schemas.codec import Codec, encode_single_object
from driftline.schemas.contract import Contract
from driftline.schemas.contract_catalog import Catalog
from driftline.stream.demo.generator import SyntheticStream


def test_the_decoded_batch_shortcut_matches_the_codec(catalog: Catalog, contract: Contract) -> None:
    stream = SyntheticStream(contract, seed=4)
    n, offset = 3_000, 500
    columns, times = stream.columns(n, offset=offset), stream.event_times(n, offset=offset)
    mine = stream.decoded_batch(columns, times, offset=offset)
    records = stream.records(columns, times, offset=offset)
    real = Codec(catalog).decode_batch([encode_single_object(r, contract.schema_json) for r in records], model=contract.model)
    assert real.accepted.all() and mine.accepted.all()
    assert np.array_equal(real.event_time_ms, mine.event_time_ms)
    assert list(real.event_id) == list(mine.event_id) and list(real.model_version) == list(mine.model_version)
    assert any((mine.status[name] != 0).any() for name in mine.status), "some nulls, so statuses are compared meaningfully"
    for spec in contract.monitored_fields:
        assert np.array_equal(real.status[spec.name], mine.status[spec.name]), spec.name
        if spec.kind == "categorical":
            assert list(real.values[spec.name]) == list(mine.values[spec.name]), spec.name
        else:
            assert np.allclose(real.values[spec.name], mine.values[spec.name], equal_nan=True), spec.name

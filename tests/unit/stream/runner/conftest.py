"""What the runner tests share beside the stream tests' fixtures: a reference profile with labels."""

from __future__ import annotations

import numpy as np
import pytest

from driftline.schemas.contract import Contract
from driftline.stream.demo.generator import SyntheticStream
from driftline.stream.monitor.profile import ReferenceProfile, build_reference_profile


@pytest.fixture(scope="session")
def labelled(contract: Contract) -> ReferenceProfile:
    """The credit-risk reference with labels drawn from its scores: the concept test and the estimate are calibrated."""
    columns = SyntheticStream(contract, seed=3).columns(30_000, seed_offset=1)
    labels = (np.random.default_rng(23).random(30_000) < columns["prediction_score"]).astype(float)
    return build_reference_profile(contract, columns, model_version="v1", labels=labels)

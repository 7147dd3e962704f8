from __future__ import annotations

import pytest

from driftline.schemas.contract import Contract
from driftline.schemas.contract_catalog import Catalog
from driftline.stream.demo.generator import SyntheticStream
from driftline.stream.monitor.profile import ReferenceProfile, build_reference_profile


@pytest.fixture(scope="session")
def catalog() -> Catalog:
    return Catalog.load()


@pytest.fixture(scope="session")
def contract(catalog: Catalog) -> Contract:
    return catalog.contract("credit_risk")


@pytest.fixture(scope="session")
def profile(contract: Contract) -> ReferenceProfile:
    stream = SyntheticStream(contract, seed=3)
    return build_reference_profile(contract, stream.columns(30_000, seed_offset=1), model_version="v1")

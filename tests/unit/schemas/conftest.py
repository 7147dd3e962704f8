from __future__ import annotations

import copy
import json
from collections.abc import Callable
from typing import Any

import pytest
from schema_files import SCHEMAS

from driftline.schemas import Catalog, Contract, in_memory_registry, parse_contract

BASE_RECORD: dict[str, Any] = {
    "event_id": "evt-000000001",
    "event_time": 1_767_225_600_000,
    "model_name": "credit_risk",
    "model_version": "v1",
    "annual_income": 54_000.0,
    "loan_amount": 12_000.0,
    "credit_score": 700,
    "age": 41,
    "employment_years": 3.5,
    "open_accounts": 7,
    "total_accounts": 19,
    "delinquencies_2y": 0,
    "public_records": 0,
    "revolving_balance": 5_400.0,
    "revolving_utilization": 0.31,
    "debt_to_income": 0.22,
    "num_inquiries_6m": 1,
    "months_since_last_delinquency": None,
    "loan_term_months": 36,
    "interest_rate": 0.11,
    "home_ownership": "MORTGAGE",
    "loan_purpose": "debt_consolidation",
    "employment_type": "full_time",
    "region": "west",
    "channel": "web",
    "prediction_score": 0.12,
    "prediction_class": 0,
}


@pytest.fixture(scope="session")
def catalog() -> Catalog:
    return Catalog.load()


@pytest.fixture(scope="session")
def contract(catalog: Catalog) -> Contract:
    return catalog.contract("credit_risk")


@pytest.fixture
def record() -> Callable[..., dict[str, Any]]:
    """A valid credit_risk event, with keyword overrides."""

    def make(**overrides: Any) -> dict[str, Any]:
        return {**BASE_RECORD, **overrides}

    return make


@pytest.fixture
def registry() -> Any:
    return in_memory_registry()


@pytest.fixture
def writer_schema(contract: Contract) -> Callable[..., dict[str, Any]]:
    """The contract's schema as a producer would change it: ``{field: new type}``, renames, additions."""

    def make(types: dict[str, Any] | None = None, rename: dict[str, str] | None = None, add: list[dict[str, Any]] | None = None) -> dict[str, Any]:
        schema = copy.deepcopy(contract.schema_json)
        for field in schema["fields"]:
            field.pop("driftline", None)
            if types and field["name"] in types:
                field["type"] = types[field["name"]]
                field.pop("default", None)
            if rename and field["name"] in rename:
                field["name"] = rename[field["name"]]
        schema["fields"].extend(add or [])
        return schema

    return make


@pytest.fixture(scope="session")
def fraud_contract() -> Contract:
    """A second, small model, for model-mismatch and mixed-stream tests."""
    schema = {
        "type": "record",
        "name": "Prediction",
        "namespace": "driftline.models.fraud",
        "driftline": {"model": "fraud", "contract_version": 3},
        "fields": [
            {"name": "event_id", "type": "string", "driftline": {"role": "id"}},
            {"name": "event_time", "type": {"type": "long", "logicalType": "timestamp-millis"}, "driftline": {"role": "event_time"}},
            {"name": "model_name", "type": "string", "driftline": {"role": "model_name"}},
            {"name": "model_version", "type": "string", "driftline": {"role": "model_version"}},
            {"name": "amount", "type": "double", "driftline": {"role": "feature", "range": [0, 1e6]}},
            {"name": "score", "type": "float", "driftline": {"role": "prediction_score", "range": [0, 1]}},
        ],
    }
    return parse_contract(json.dumps(schema), source="fraud.avsc")


@pytest.fixture(scope="session")
def two_models(contract: Contract, fraud_contract: Contract) -> Catalog:
    writers = [json.loads(path.read_text()) for path in sorted((SCHEMAS / "catalog").glob("*.avsc"))]
    return Catalog([contract, fraud_contract], writer_schemas=writers)

from __future__ import annotations

import copy
import json
import math
import shutil
from pathlib import Path
from typing import Any

import pytest
from schema_files import SCHEMAS

from driftline.schemas import (
    Catalog,
    CatalogError,
    Contract,
    ContractError,
    DriftlineError,
    UnknownModelError,
    WriterSchemaError,
    load_contract,
    parse_contract,
)
from driftline.schemas.avro_types import fingerprint


def test_example_contract_declares_roles_kinds_and_value_contracts(contract: Contract) -> None:
    assert (contract.model, contract.version, contract.full_name) == ("credit_risk", 1, "driftline.models.credit_risk.Prediction")
    roles = {f.role: f.name for f in contract.fields if f.role not in ("feature",)}
    assert roles == {
        "id": "event_id", "event_time": "event_time", "model_name": "model_name", "model_version": "model_version",
        "prediction_score": "prediction_score", "prediction_class": "prediction_class",
    }
    features = [f for f in contract.fields if f.role == "feature"]
    assert 18 <= len(features) <= 24
    dti = contract.field("debt_to_income")
    assert (dti.kind, dti.avro_type, dti.range, dti.nullable, dti.on_violation, dti.has_default) == (
        "numeric", "double", (0.0, 1.0), False, "reject", False
    )
    home = contract.field("home_ownership")
    assert (home.kind, home.categories, home.on_violation) == ("categorical", ("RENT", "OWN", "MORTGAGE", "OTHER"), "reject")
    assert contract.field("channel").on_violation == "count"  # open set: unseen values are counted
    months = contract.field("months_since_last_delinquency")
    assert (months.nullable, months.has_default, months.default, months.max_null_fraction) == (True, True, None, 0.75)
    assert contract.field("delinquencies_2y").avro_type == "int"
    assert contract.field("event_time").kind == "timestamp"
    assert contract.field("event_id").kind == "string"
    assert contract.field("prediction_score").range == (0.0, 1.0)
    assert not any(f.allow_nan for f in contract.fields)
    identity = ("id", "event_time", "model_name", "model_version")
    assert [f.name for f in contract.monitored_fields] == [f.name for f in contract.fields if f.role not in identity]


def test_fingerprints_match_the_avro_specification_test_vectors() -> None:
    # share/test/data/schema-tests.txt of the Avro project: CRC-64-AVRO of "null" and "int".
    assert fingerprint('"null"') == 7195948357588979594
    assert fingerprint('"int"') == 8247732601305521295


def test_catalog_indexes_contracts_and_writer_schemas_by_fingerprint(catalog: Catalog, contract: Contract) -> None:
    assert catalog.models == ("credit_risk",)
    assert catalog.contract_for_record("driftline.models.credit_risk.Prediction") is contract
    assert catalog.writer_schema(contract.fingerprint) is not None
    names = list(catalog.fingerprints.values())
    # the contract plus the two catalog/ writer schemas of the same record, and the label/alert events
    assert names.count("driftline.models.credit_risk.Prediction") == 3
    assert {"driftline.events.Label", "driftline.events.Alert"} <= set(names)
    renamed = json.loads((SCHEMAS / "catalog" / "credit_risk_v2_renamed.avsc").read_text())
    renamed_fp = fingerprint(_canonical(renamed))
    assert catalog.writer_schema(renamed_fp) is not None
    assert "dti_ratio" in [f["name"] for f in catalog.writer_schema(renamed_fp).parsed_schema["fields"]]  # type: ignore[union-attr]
    assert catalog.event_schema("driftline.events.Label")["fields"][2]["name"] == "label"


def _canonical(schema: Any) -> str:
    from driftline.schemas.avro_types import canonical_form

    return canonical_form(schema)


def test_registering_a_writer_schema_makes_its_fingerprint_known(writer_schema: Any) -> None:
    catalog = Catalog.load()
    schema = writer_schema(add=[{"name": "extra", "type": "int", "default": 0}])
    expected = fingerprint(_canonical(schema))
    assert catalog.writer_schema(expected) is None
    assert catalog.register_writer_schema(schema) == expected
    assert catalog.writer_schema(expected) is not None
    with pytest.raises(WriterSchemaError, match="not a valid Avro schema"):
        catalog.register_writer_schema({"type": "record", "name": "X", "fields": [{"name": "a", "type": "no_such_type"}]})


def test_unknown_model_is_a_lookup_error_naming_the_known_models(catalog: Catalog) -> None:
    with pytest.raises(UnknownModelError, match="known models and feature sets: credit_features, credit_risk") as info:
        catalog.contract("churn")
    assert isinstance(info.value, LookupError) and isinstance(info.value, DriftlineError)


def _contract_json() -> dict[str, Any]:
    return json.loads((SCHEMAS / "credit_risk.avsc").read_text())


def _field(schema: dict[str, Any], name: str) -> dict[str, Any]:
    return next(f for f in schema["fields"] if f["name"] == name)


def _broken(change: Any) -> dict[str, Any]:
    schema = _contract_json()
    change(schema)
    return schema


BROKEN_CONTRACTS = [
    ("no record attribute", lambda s: s.pop("driftline"), 'no "driftline"'),
    ("bad model name", lambda s: s["driftline"].update(model="credit risk!"), "driftline.model"),
    ("version zero", lambda s: s["driftline"].update(contract_version=0), "contract_version"),
    ("unknown record key", lambda s: s["driftline"].update(owner="me"), "owner"),
    ("typo in field attribute", lambda s: _field(s, "age")["driftline"].update(rnage=[0, 1]), "rnage"),
    ("no role", lambda s: _field(s, "age")["driftline"].pop("role"), "'age' has no"),
    ("bad role", lambda s: _field(s, "age")["driftline"].update(role="input"), "role 'input'"),
    ("range on a string", lambda s: _field(s, "region")["driftline"].update(range=[0, 1]), "range applies to numeric"),
    ("range reversed", lambda s: _field(s, "age")["driftline"].update(range=[120, 18]), "must not exceed"),
    ("range malformed", lambda s: _field(s, "age")["driftline"].update(range=[0]), "range must be"),
    ("categories on a number", lambda s: _field(s, "age")["driftline"].update(categories=["a"]), "categories apply"),
    ("duplicate categories", lambda s: _field(s, "region")["driftline"].update(categories=["west", "west"]), "duplicates"),
    ("null budget on non-nullable", lambda s: _field(s, "age")["driftline"].update(max_null_fraction=0.1), "nullable"),
    ("null budget above one", lambda s: _field(s, "employment_type")["driftline"].update(max_null_fraction=1.5), "[0, 1]"),
    ("allow_nan on an int", lambda s: _field(s, "age")["driftline"].update(allow_nan=True), "allow_nan applies"),
    ("bad policy", lambda s: _field(s, "age")["driftline"].update(on_violation="drop"), "on_violation"),
    ("two ids", lambda s: _field(s, "model_version")["driftline"].update(role="id"), "several fields"),
    ("no event time", lambda s: _field(s, "event_time")["driftline"].update(role="feature"), "no field has role event_time"),
    ("event time not a timestamp", lambda s: _field(s, "event_time").update(type="long"), "timestamp-millis"),
    ("nullable id", lambda s: _field(s, "event_id").update(type=["null", "string"]), "non-nullable"),
    ("attributes on an id", lambda s: _field(s, "event_id")["driftline"].update(range=[0, 1]), "no value-contract"),
    ("nested type", lambda s: _field(s, "age").update(type={"type": "array", "items": "int"}), "not supported"),
    ("default of the wrong type", lambda s: _field(s, "age").update(default="old"), "Default value <old>"),
    ("not a record", lambda s: s.update(type="enum", symbols=["A"]), "record"),
    ("invalid Avro", lambda s: _field(s, "age").update(type="integer"), "not a valid Avro schema"),
    ("unknown kind", lambda s: s["driftline"].update(kind="dataset"), "driftline.kind must be one of"),
    ("a feature set with a score", lambda s: s["driftline"].update(kind="feature_set"), "a feature set's contract has no prediction"),
]


def test_a_feature_set_is_a_contract_of_its_own_kind_listed_apart_from_the_models(catalog: Catalog) -> None:
    features = catalog.contract("credit_features")
    assert features.kind == "feature_set" and catalog.contract("credit_risk").kind == "model"
    assert (catalog.models, catalog.feature_sets, catalog.names) == (("credit_risk",), ("credit_features",),
                                                                      ("credit_features", "credit_risk"))
    assert not any(f.prediction for f in features.fields)
    # Its features are the model's inputs of the same names, with the same value contracts.
    model = {f.name: f for f in catalog.contract("credit_risk").fields}
    assert all(f == model[f.name] for f in features.monitored_fields)


@pytest.mark.parametrize(("case", "change", "message"), BROKEN_CONTRACTS, ids=[c[0] for c in BROKEN_CONTRACTS])
def test_an_invalid_contract_raises_a_contract_error_saying_what_is_wrong(case: str, change: Any, message: str) -> None:
    with pytest.raises(ContractError) as info:
        parse_contract(_broken(change), source="broken.avsc")
    assert message in str(info.value)
    assert str(info.value).startswith("broken.avsc: ")


def test_open_bounds_enums_and_aliases_are_understood() -> None:
    schema = _contract_json()
    _field(schema, "loan_amount")["driftline"]["range"] = [0, None]
    _field(schema, "region").update(type={"type": "enum", "name": "Region", "symbols": ["north", "south"]})
    _field(schema, "region")["driftline"].pop("categories")
    _field(schema, "debt_to_income")["aliases"] = ["dti_ratio"]
    parsed = parse_contract(schema)
    assert parsed.field("loan_amount").range == (0.0, math.inf)
    assert (parsed.field("region").kind, parsed.field("region").categories) == ("categorical", ("north", "south"))
    assert parsed.field("debt_to_income").aliases == ("dti_ratio",)


def test_catalog_load_reports_unreadable_files_and_duplicate_models(tmp_path: Path) -> None:
    (tmp_path / "broken.avsc").write_text("{not json")
    with pytest.raises(ContractError, match=r"broken\.avsc: cannot read schema"):
        Catalog.load(tmp_path)
    (tmp_path / "broken.avsc").unlink()
    shutil.copy(SCHEMAS / "credit_risk.avsc", tmp_path / "a.avsc")
    schema = _contract_json()
    schema["namespace"] = "elsewhere"
    (tmp_path / "b.avsc").write_text(json.dumps(schema))
    with pytest.raises(CatalogError, match="model 'credit_risk' has two contracts"):
        Catalog.load(tmp_path)
    with pytest.raises(CatalogError, match="does not exist"):
        Catalog.load(tmp_path / "missing")


def test_load_contract_reads_a_file_and_rejects_a_missing_one(tmp_path: Path) -> None:
    loaded = load_contract(SCHEMAS / "credit_risk.avsc")
    assert loaded.fingerprint == Catalog.load().contract("credit_risk").fingerprint
    with pytest.raises(ContractError, match="cannot read schema"):
        load_contract(tmp_path / "nope.avsc")


def test_contract_schema_json_is_the_file_as_written(contract: Contract) -> None:
    on_disk = _contract_json()
    assert contract.schema_json == on_disk
    assert copy.deepcopy(contract.schema_json)["fields"][15]["driftline"]["range"] == [0, 1]

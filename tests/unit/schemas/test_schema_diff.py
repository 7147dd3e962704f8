from __future__ import annotations

import json
from typing import Any

import pytest
from schema_files import SCHEMAS

from driftline.schemas import Contract, WriterSchemaError, diff_schemas


def test_identical_writer_schema_has_no_changes(contract: Contract, writer_schema: Any) -> None:
    diff = diff_schemas(writer_schema(), contract)
    assert not diff.changed and diff.compatible
    assert (diff.missing_fields, diff.new_fields, diff.type_changes) == ((), (), ())
    assert diff.describe().startswith("identical to credit_risk v1")


def test_renamed_field_is_missing_plus_new_and_blocks_resolution(contract: Contract) -> None:
    renamed = json.loads((SCHEMAS / "catalog" / "credit_risk_v2_renamed.avsc").read_text())
    diff = diff_schemas(renamed, contract)
    assert diff.missing_fields == ("debt_to_income",)
    assert diff.blocking_missing_fields == ("debt_to_income",)
    assert diff.new_fields == ("dti_ratio",)
    assert diff.renamed_fields == (("debt_to_income", "dti_ratio"),)
    assert diff.type_changes == ()
    assert not diff.compatible
    text = diff.describe()
    assert "missing field 'debt_to_income' (no default)" in text and "new field 'dti_ratio' (double)" in text
    assert text.endswith("incompatible with credit_risk v1: events are rejected")


def test_new_field_alone_is_compatible(contract: Contract) -> None:
    added = json.loads((SCHEMAS / "catalog" / "credit_risk_v1_1_segment.avsc").read_text())
    diff = diff_schemas(added, contract)
    assert diff.new_fields == ("customer_segment",)
    assert diff.changed and diff.compatible
    assert diff.missing_fields == () and diff.type_changes == ()


def test_int_to_double_is_a_promotable_type_change(contract: Contract, writer_schema: Any) -> None:
    diff = diff_schemas(writer_schema({"annual_income": "int", "age": "long"}), contract)
    by_field = {t.field: t for t in diff.type_changes}
    assert by_field["annual_income"].resolution == "full" and by_field["annual_income"].promotable
    assert (by_field["annual_income"].writer_type, by_field["annual_income"].contract_type) == ("int", "double")
    # long -> int narrows: Avro does not promote it
    assert by_field["age"].resolution == "none"
    assert not diff.compatible
    assert diff.blocking_type_changes == (by_field["age"],)


def test_string_to_double_is_not_promotable(contract: Contract, writer_schema: Any) -> None:
    diff = diff_schemas(writer_schema({"annual_income": "string"}), contract)
    (change,) = diff.type_changes
    assert (change.field, change.writer_type, change.contract_type, change.promotable) == ("annual_income", "string", "double", False)
    assert not diff.compatible
    assert str(change) == "annual_income: string -> double (not promotable)"


@pytest.mark.parametrize(
    ("writer_type", "field", "resolution"),
    [
        (["null", "double"], "debt_to_income", "partial"),  # nulls fail event by event
        ("double", "months_since_last_delinquency", "full"),  # null-union widening
        (["null", "int"], "months_since_last_delinquency", "full"),  # widening plus promotion
        (["null", "double", "string"], "annual_income", "partial"),
        ("float", "annual_income", "full"),
        ("bytes", "region", "full"),  # string <-> bytes
        ("double", "credit_score", "none"),  # double -> int narrows
        ({"type": "array", "items": "double"}, "annual_income", "none"),
    ],
)
def test_union_and_promotion_rules_follow_avro_resolution(
    contract: Contract, writer_schema: Any, writer_type: Any, field: str, resolution: str
) -> None:
    diff = diff_schemas(writer_schema({field: writer_type}), contract)
    (change,) = diff.type_changes
    assert change.field == field and change.resolution == resolution
    assert diff.compatible == (resolution != "none")


def test_missing_field_with_a_default_is_filled_not_blocking(contract: Contract, writer_schema: Any) -> None:
    schema = writer_schema()
    schema["fields"] = [f for f in schema["fields"] if f["name"] != "months_since_last_delinquency"]
    diff = diff_schemas(schema, contract)
    assert diff.missing_fields == ("months_since_last_delinquency",)
    assert diff.defaulted_fields == ("months_since_last_delinquency",)
    assert diff.blocking_missing_fields == () and diff.compatible
    assert "filled with the contract's default" in diff.describe()


def test_contract_aliases_read_renamed_writer_fields(contract: Contract, writer_schema: Any) -> None:
    reader = json.loads(json.dumps(contract.schema_json))
    next(f for f in reader["fields"] if f["name"] == "debt_to_income")["aliases"] = ["dti_ratio"]
    diff = diff_schemas(writer_schema(rename={"debt_to_income": "dti_ratio"}), reader)
    assert diff.missing_fields == () and diff.new_fields == ()
    assert diff.aliased_fields == (("debt_to_income", "dti_ratio"),)
    assert diff.compatible


def test_a_record_of_another_name_cannot_be_resolved(contract: Contract, writer_schema: Any) -> None:
    schema = writer_schema()
    schema["name"] = "Scored"
    diff = diff_schemas(schema, contract)
    assert not diff.names_match and not diff.compatible
    assert "is not the contract's record" in diff.describe()


def test_an_invalid_writer_schema_is_a_writer_schema_error(contract: Contract) -> None:
    with pytest.raises(WriterSchemaError):
        diff_schemas('{"type": "record", "name": "X", "fields": [{"name": "a", "type": "nope"}]}', contract)

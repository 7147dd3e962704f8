from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from driftline.detectors import PageHinkley
from driftline.schemas.contract import Contract
from driftline.stream.cli.commands import main
from driftline.stream.demo.generator import SyntheticStream
from driftline.stream.kafka.connection import KafkaConnection
from driftline.stream.monitor.profile import ProfileError, ReferenceProfile, build_reference_profile
from driftline.stream.profiles import ProfileDirectory


def _training_table(contract: Contract, rows: int = 5000) -> pa.Table:
    columns = SyntheticStream(contract, seed=21).columns(rows)
    arrays = {name: pa.array(values.tolist()) for name, values in columns.items()}
    arrays["model_version"] = pa.array(["2026.11.1"] * rows)
    return pa.table(arrays)


def test_baseline_command_builds_and_stores_the_profile(contract: Contract, tmp_path: Path) -> None:
    source = tmp_path / "train.parquet"
    pq.write_table(_training_table(contract), source)
    assert main(["baseline", "--model", "credit_risk", "--input", str(source), "--profiles", str(tmp_path / "p")]) == 0
    profile = ProfileDirectory(tmp_path / "p").load("credit_risk", "2026.11.1")
    assert profile.model_version == "2026.11.1" and profile.rows == 5000
    income = profile.features["annual_income"]
    table_income = pq.read_table(source).column("annual_income").to_numpy()
    assert income.mean == pytest.approx(float(np.mean(table_income)))
    assert sum(income.counts) == 5000
    assert income.page_hinkley is not None
    detector = PageHinkley.from_state(income.page_hinkley)
    assert detector.threshold > 0
    channel = profile.features["channel"]
    assert channel.categories == tuple(next(f for f in contract.fields if f.name == "channel").categories)
    assert channel.counts[-1] == 0  # the unseen bucket of the reference is empty
    assert (tmp_path / "p" / "credit_risk" / "2026.11.1.json").is_file()


def test_profile_json_round_trips_exactly(contract: Contract) -> None:
    profile = build_reference_profile(contract, SyntheticStream(contract, seed=2).columns(3000), model_version="v9")
    text = profile.to_json()
    again = ReferenceProfile.from_json(text)
    assert again.to_json() == text
    assert json.loads(text)["features"]["debt_to_income"]["kind"] == "numeric"


def test_baseline_reports_a_column_that_does_not_fit_the_contract(
    contract: Contract, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    table = _training_table(contract, 2000)
    table = table.drop_columns(["credit_score"]).append_column("credit_score", pa.array(["high"] * 2000))
    table = table.drop_columns(["region"])
    source = tmp_path / "bad.parquet"
    pq.write_table(table, source)
    code = main(["baseline", "--model", "credit_risk", "--input", str(source), "--profiles", str(tmp_path)])
    error = capsys.readouterr().err
    assert code == 2
    assert "credit_score" in error and "expects numbers" in error and "missing column 'region'" in error


def test_baseline_errors_are_clear(contract: Contract, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["baseline", "--model", "credit_risk", "--input", str(tmp_path / "absent.parquet"), "--profiles", str(tmp_path)]) == 2
    assert capsys.readouterr().err == f"driftline baseline: error: no such file: {tmp_path / 'absent.parquet'}\n"
    (tmp_path / "text.parquet").write_text("not parquet")
    assert main(["baseline", "--model", "credit_risk", "--input", str(tmp_path / "text.parquet"), "--profiles", str(tmp_path)]) == 2
    assert "text.parquet is not a readable Parquet file" in capsys.readouterr().err
    assert main(["baseline", "--model", "no_such_model", "--input", str(tmp_path / "x.parquet"), "--profiles", str(tmp_path)]) == 2
    assert "no_such_model" in capsys.readouterr().err
    with pytest.raises(ProfileError, match="at least 1000"):
        build_reference_profile(contract, SyntheticStream(contract).columns(500), model_version="v1")
    with pytest.raises(ProfileError, match="no reference profile"):
        ProfileDirectory(tmp_path).load("credit_risk", "v404")


def test_baseline_stores_the_profile_where_the_worker_reads_it(contract: Contract, tmp_path: Path) -> None:
    from driftline.sinks.database import create_database_engine, upgrade_database
    from driftline.stream.kafka.settings import WorkerSettings
    from driftline.stream.kafka.worker import load_profiles

    source, url = tmp_path / "train.parquet", f"sqlite:///{tmp_path / 'driftline.sqlite'}"
    pq.write_table(_training_table(contract), source)
    upgrade_database(url)
    assert main(["baseline", "--model", "credit_risk", "--input", str(source), "--profiles", str(tmp_path / "p"), "--database-url", url]) == 0
    settings = WorkerSettings(kafka=KafkaConnection("127.0.0.1:1"), database_url=url, models=("credit_risk",))
    profiles = load_profiles(settings, create_database_engine(url), "credit_risk")
    assert list(profiles) == ["2026.11.1"]
    assert profiles["2026.11.1"].to_json() == ProfileDirectory(tmp_path / "p").load("credit_risk", "2026.11.1").to_json()


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("not a url", "database_url: not an SQLAlchemy URL"),
        ("mysql://db/driftline", "unsupported database 'mysql'"),
        ("sqlite:///{tmp}/empty.sqlite", "is at revision none, not 0006; run `driftline db upgrade` first"),
    ],
)
def test_a_bad_database_writes_nothing_and_says_so_in_one_line(
    contract: Contract, tmp_path: Path, capsys: pytest.CaptureFixture[str], url: str, message: str
) -> None:
    source = tmp_path / "train.parquet"
    pq.write_table(_training_table(contract, 2000), source)
    argv = ["baseline", "--model", "credit_risk", "--input", str(source), "--profiles", str(tmp_path / "p"),
            "--database-url", url.format(tmp=tmp_path)]
    assert main(argv) == 2
    error = capsys.readouterr().err
    assert message in error and error.count("\n") == 1 and "Traceback" not in error
    assert not (tmp_path / "p").exists()


def test_profiles_go_to_the_data_directory_by_default(contract: Contract, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    source = tmp_path / "train.parquet"
    pq.write_table(_training_table(contract, 2000), source)
    monkeypatch.setenv("DRIFTLINE_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.chdir(tmp_path)
    assert main(["baseline", "--model", "credit_risk", "--input", str(source)]) == 0
    assert (tmp_path / "data" / "profiles" / "credit_risk" / "2026.11.1.json").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "train.parquet"]  # nothing in the working directory


@pytest.mark.parametrize("suffix", [".parquet", ".jsonl", ".csv"])
def test_generate_writes_training_data_that_baseline_reads(tmp_path: Path, suffix: str, capsys: pytest.CaptureFixture[str]) -> None:
    output = tmp_path / "new" / f"train{suffix}"  # a directory that does not exist yet is made
    assert main(["generate", "--model", "credit_risk", "--events", "3000", "--output", str(output)]) == 0
    assert capsys.readouterr().out == f"wrote 3,000 credit_risk events to {output}\n"
    if suffix == ".parquet":
        assert main(["baseline", "--model", "credit_risk", "--input", str(output), "--profiles", str(tmp_path / "p")]) == 0
        assert ProfileDirectory(tmp_path / "p").load("credit_risk", "v1").rows == 3000
    assert not list(output.parent.glob("*.tmp"))


def test_generate_refuses_an_unknown_extension(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["generate", "--model", "credit_risk", "--output", str(tmp_path / "train.xlsx")]) == 2
    assert "the extension must be one of .parquet, .jsonl, .csv" in capsys.readouterr().err
    assert not (tmp_path / "train.xlsx").exists()


def test_a_label_column_gives_the_profile_its_concept_drift_test(
    contract: Contract, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    stream = SyntheticStream(contract, seed=21)
    columns = stream.columns(5000)
    table = _training_table(contract).append_column("defaulted", pa.array(stream.labels(columns).astype(int).tolist()))
    source = tmp_path / "train.parquet"
    pq.write_table(table, source)
    assert main(["baseline", "--model", "credit_risk", "--input", str(source), "--profiles", str(tmp_path / "p"),
                 "--label-column", "defaulted"]) == 0
    assert "labelled rows: 5,000 (classification; mean error" in capsys.readouterr().out
    labels = ProfileDirectory(tmp_path / "p").load("credit_risk", "2026.11.1").labels
    assert labels is not None and labels["rows"] == 5000 and labels["concept"]["test"]["params"]["direction"] == "up"
    assert labels["estimator"] is not None  # the score calibration of the performance estimate
    # A missing, a text and a non-0/1 label column are each refused with a clear message.
    assert main(["baseline", "--model", "credit_risk", "--input", str(source), "--profiles", str(tmp_path / "p"),
                 "--label-column", "outcome"]) == 2
    assert "no label column 'outcome'" in capsys.readouterr().err
    for name, values in (("text", ["yes"] * 5000), ("counts", [2] * 5000)):
        pq.write_table(table.append_column(name, pa.array(values)), source)
        assert main(["baseline", "--model", "credit_risk", "--input", str(source), "--profiles", str(tmp_path / "p"),
                     "--label-column", name]) == 2
        assert ("labels are numbers" if name == "text" else "must be 0 or 1") in capsys.readouterr().err

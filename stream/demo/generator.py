"""Synthetic prediction events for a model contract, with known drift episodes.

Used by ``driftline demo``, the tests and the benchmarks. Values are generated column-wise with
numpy from a seeded generator, so a stream is reproducible bit for bit. Each field's distribution
is chosen from its contract: a realistic shape for the example credit-risk fields, otherwise a
shape that respects the field's range and categories.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from driftline.schemas.contract import Contract, FieldContract
from driftline.schemas.results import DecodedBatch, FieldStatus

__all__ = ["Episode", "SyntheticStream", "records_from_columns"]

START_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z

# name -> (sampler, clip range) for the example model; z is a standard normal "creditworthiness"
# factor shared by several fields so that the prediction score depends on them.
_LOG_NORMAL = {"annual_income": (10.9, 0.45), "loan_amount": (9.4, 0.6), "revolving_balance": (8.6, 1.0)}
_POISSON = {"open_accounts": 8.0, "delinquencies_2y": 0.3, "num_inquiries_6m": 1.0, "total_accounts": 20.0, "public_records": 0.1}


@dataclass(frozen=True)
class Episode:
    """A known disturbance of the stream between two event positions.

    kind: ``"mean_shift"`` (a gradual shift of ``feature`` by ``size`` standard deviations, ramping
    up over the first half of the episode), ``"rename"`` (the producer renames ``feature`` to
    ``new_name``), ``"new_category"`` (a fraction ``size`` of events carry ``new_name`` as the
    value of ``feature``), ``"concept"`` (the inputs stay as they are; the outcome follows the
    score less: with probability ``size`` it is a coin flip — see :meth:`SyntheticStream.labels`).
    """

    kind: str
    start: int
    end: int
    feature: str
    size: float = 0.0
    new_name: str = ""


class SyntheticStream:
    """Columns of synthetic events for ``contract``.

    Parameters
    ----------
    contract
        The model contract the events must satisfy.
    seed
        Seed of the numpy generator.
    events_per_second
        Event-time rate of the stream (events are 1/rate apart, with a little jitter).
    """

    def __init__(self, contract: Contract, seed: int = 7, events_per_second: float = 10.0) -> None:
        if events_per_second <= 0:
            raise ValueError(f"events_per_second must be positive, got {events_per_second}")
        self.contract = contract
        self.seed = seed
        self.events_per_second = events_per_second
        self.fields = contract.monitored_fields
        self._by_name = {f.name: f for f in contract.fields}

    def columns(self, n: int, *, offset: int = 0, seed_offset: int = 0) -> dict[str, np.ndarray]:
        """``n`` clean rows; numeric columns float64 (NaN = null), categorical columns object arrays."""
        rng = np.random.default_rng([self.seed, seed_offset, offset])
        z = rng.standard_normal(n)
        columns: dict[str, np.ndarray] = {}
        for spec in self.fields:
            if spec.prediction:  # the outputs are computed from the features below
                continue
            columns[spec.name] = self._sample(spec, n, z, rng)
        self._predict(columns, z, rng)
        return columns

    def _sample(self, spec: FieldContract, n: int, z: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        if spec.kind == "categorical":
            categories = list(spec.categories)
            weights = np.linspace(2.0, 1.0, num=len(categories))
            values = np.asarray(categories, dtype=object)[rng.choice(len(categories), size=n, p=weights / weights.sum())]
            return self._with_nulls(spec, values, rng)
        name = spec.name
        if name in _LOG_NORMAL:
            mu, sigma = _LOG_NORMAL[name]
            values = np.exp(mu + sigma * (0.6 * z + 0.8 * rng.standard_normal(n)))
        elif name in _POISSON:
            values = rng.poisson(_POISSON[name], size=n).astype(np.float64)
        elif name == "credit_score":
            values = np.round(690 + 55 * (0.7 * z + 0.71 * rng.standard_normal(n)))
        elif name == "age":
            values = np.round(42 + 12 * rng.standard_normal(n))
        elif name == "employment_years":
            values = rng.gamma(2.0, 3.0, size=n)
        elif spec.range is not None:
            low, high = spec.range
            values = low + (high - low) * rng.beta(2.0, 5.0 if "ratio" in name or "income" in name else 2.0, size=n)
        else:
            values = 50.0 + 10.0 * rng.standard_normal(n)
        if spec.range is not None:
            values = np.clip(values, spec.range[0], spec.range[1])
        if spec.avro_type in ("int", "long"):
            values = np.round(values)
        return self._with_nulls(spec, values, rng)

    @staticmethod
    def _with_nulls(spec: FieldContract, values: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        if not spec.nullable:
            return values
        # Stay well inside the contract's null budget so the clean stream never breaches it.
        budget = spec.max_null_fraction if spec.max_null_fraction is not None else 0.0
        missing = rng.random(values.size) < budget * 0.5
        if values.dtype == object:
            values = values.copy()
            values[missing] = None
        else:
            values = np.where(missing, np.nan, values)
        return values

    def _predict(self, columns: dict[str, np.ndarray], z: np.ndarray, rng: np.random.Generator) -> None:
        logit = -1.2 - 1.1 * z
        if "annual_income" in columns:
            income = np.log(columns["annual_income"])
            logit -= 0.8 * (income - _LOG_NORMAL["annual_income"][0]) / _LOG_NORMAL["annual_income"][1]
        if "debt_to_income" in columns:
            logit += 2.0 * (np.nan_to_num(columns["debt_to_income"], nan=0.3) - 0.3)
        score = 1.0 / (1.0 + np.exp(-(logit + 0.3 * rng.standard_normal(z.size))))
        for spec in self.fields:
            if spec.role == "prediction_score":
                columns[spec.name] = score
            elif spec.role == "prediction_class":
                columns[spec.name] = (score >= 0.5).astype(np.float64)

    def decoded_batch(
        self, columns: dict[str, np.ndarray], event_times: np.ndarray, *, offset: int = 0, model_version: str = "v1"
    ) -> DecodedBatch:
        """Clean generated rows as the codec decodes them (all accepted; nulls marked), without the Avro round trip.

        For long benchmark and test streams where the codec's work is not what is measured;
        ``tests/unit/stream/demo/test_generator.py`` checks it against the codec on the same events.
        """
        n = len(event_times)
        status: dict[str, np.ndarray] = {}
        for spec in self.fields:
            values = columns[spec.name]
            missing = np.isnan(values) if spec.kind != "categorical" else np.array([v is None for v in values], dtype=bool)
            status[spec.name] = np.where(missing, FieldStatus.NULL, FieldStatus.OK).astype(np.int8)
        return DecodedBatch(
            model=self.contract.model,
            n_input=n,
            rows=np.arange(n, dtype=np.int64),
            event_time_ms=np.asarray(event_times, dtype=np.int64),
            model_version=np.full(n, model_version, dtype=object),
            event_id=np.array([f"evt-{offset + i:09d}" for i in range(n)], dtype=object),
            values={spec.name: columns[spec.name] for spec in self.fields},
            status=status,
            accepted=np.ones(n, dtype=bool),
        )

    def event_times(self, n: int, *, offset: int = 0) -> np.ndarray:
        """Event times in ms: evenly spaced with ±1 s jitter, so a few events arrive out of order."""
        rng = np.random.default_rng([self.seed, 99, offset])
        base = START_MS + (np.arange(offset, offset + n) * (1000.0 / self.events_per_second)).astype(np.int64)
        return base + rng.integers(-1000, 1000, size=n)

    def apply_episodes(self, columns: dict[str, np.ndarray], episodes: list[Episode], *, offset: int = 0) -> None:
        """Disturb ``columns`` (rows ``offset`` … ``offset + n``) in place with value episodes."""
        n = len(next(iter(columns.values())))
        position = np.arange(offset, offset + n)
        for episode in episodes:
            inside = (position >= episode.start) & (position < episode.end)
            if not inside.any():
                continue
            if episode.feature not in columns:
                raise ValueError(f"episode feature {episode.feature!r} is not a monitored field")
            rng = np.random.default_rng([self.seed, 7, episode.start, offset])
            if episode.kind == "mean_shift":
                values = columns[episode.feature]
                spread = float(np.nanstd(self.columns(20_000, seed_offset=1)[episode.feature]))
                ramp_end = episode.start + (episode.end - episode.start) / 2
                fraction = np.clip((position - episode.start) / max(ramp_end - episode.start, 1.0), 0.0, 1.0)
                values[inside] = values[inside] + episode.size * spread * fraction[inside]
            elif episode.kind == "new_category":
                flood = inside & (rng.random(n) < episode.size)
                columns[episode.feature][flood] = episode.new_name
            elif episode.kind not in ("rename", "concept"):  # a rename is the producer's; a concept change the outcome's
                raise ValueError(f"unknown episode kind {episode.kind!r}")

    def labels(
        self, columns: dict[str, np.ndarray], episodes: Sequence[Episode] = (), *, offset: int = 0, seed_offset: int = 0
    ) -> np.ndarray:
        """The observed outcome (0/1) of rows ``offset`` … of ``columns``, from the rows' own scores.

        The scores are calibrated by construction (each is the probability the model's logit gives),
        so an outcome drawn with that probability is what the model expects. Inside a ``"concept"``
        episode the relation weakens: with probability ``size`` the outcome is a coin flip instead.
        """
        score = next(columns[spec.name] for spec in self.fields if spec.role == "prediction_score")
        n = len(score)
        rng = np.random.default_rng([self.seed, 13, seed_offset, offset])
        probability = np.asarray(score, dtype=np.float64).copy()
        position = np.arange(offset, offset + n)
        for episode in episodes:
            if episode.kind == "concept":
                inside = (position >= episode.start) & (position < episode.end)
                probability[inside] = (1.0 - episode.size) * probability[inside] + episode.size * 0.5
        return (rng.random(n) < probability).astype(np.float64)

    def records(
        self, columns: dict[str, np.ndarray], event_times: np.ndarray, *, offset: int = 0, model_version: str = "v1"
    ) -> list[dict[str, object]]:
        """Avro-ready records (``None`` for nulls, ints for int fields)."""
        return records_from_columns(self.contract, columns, event_times, offset=offset, model_version=model_version)


def records_from_columns(
    contract: Contract,
    columns: dict[str, np.ndarray],
    event_times: np.ndarray,
    *,
    offset: int = 0,
    model_version: str = "v1",
) -> list[dict[str, object]]:
    """Turn generated columns into records of ``contract`` (ids, times and version included)."""
    n = len(event_times)
    converted: dict[str, list[object]] = {}
    for spec in contract.monitored_fields:
        column = columns[spec.name]
        if spec.kind == "categorical":
            converted[spec.name] = list(column)
        elif spec.avro_type in ("int", "long"):
            converted[spec.name] = [None if v != v else int(v) for v in column.tolist()]
        else:
            converted[spec.name] = [None if (v != v and spec.nullable) else v for v in column.tolist()]
    names = list(converted)
    rows = zip(*(converted[name] for name in names))
    times = event_times.tolist()
    records: list[dict[str, object]] = []
    for i, values in enumerate(rows):
        record: dict[str, object] = dict(zip(names, values))
        for spec in contract.fields:
            if spec.role == "id":
                record[spec.name] = f"evt-{offset + i:09d}"
            elif spec.role == "event_time":
                record[spec.name] = times[i]
            elif spec.role == "model_name":
                record[spec.name] = contract.model
            elif spec.role == "model_version":
                record[spec.name] = model_version
        records.append(record)
    assert len(records) == n
    return records

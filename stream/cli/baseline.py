"""``driftline baseline``: the reference profile of a model version, from training data (Parquet).

Everything is checked before anything is written: the contract, the database (reachable and
migrated, when ``--database-url`` is given), the training file. Then the profile goes to the
database first and to the profile directory last, so a failure leaves neither half-written.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from .arguments import UsageError, add_data_dir, data_dir

__all__ = ["register", "run"]


def register(commands: Any) -> None:
    parser = commands.add_parser(
        "baseline",
        help="build a model version's reference profile from training data (Parquet)",
        description="Reads a Parquet file with pyarrow, summarises every contract field and calibrates "
        "the streaming detectors; stores the profile under <profiles>/<model>/<version>.json and, with "
        "--database-url, in the reference_profiles table the worker reads.",
    )
    parser.add_argument("--model", required=True, help="model name, as in its contract")
    parser.add_argument("--input", type=Path, required=True, help="Parquet file of reference data (e.g. from `driftline generate`)")
    parser.add_argument("--model-version", help="version to store the profile under (default: the file's model_version column)")
    parser.add_argument("--profiles", type=Path, help="profile directory (default: <data dir>/profiles)")
    add_data_dir(parser)
    parser.add_argument("--schemas", type=Path, help="contract directory (default: the bundled contracts)")
    parser.add_argument(
        "--seasonality", choices=("auto", "none", "daily", "weekly"), default="auto",
        help="daily or weekly cycles of the numeric fields' means, from the training data's event times: found where "
        "significant (auto, the default), fitted on every numeric field (daily, weekly) or not at all (none); a cycle "
        "needs two whole periods of data",
    )
    parser.add_argument(
        "--label-column",
        help="the training data's observed outcome (0/1 for a classifier, the value for a regression model): calibrates "
        "the concept-drift test on the model's errors and, for a classifier, the score calibration of the performance estimate",
    )
    parser.add_argument("--database-url", help="also store the profile in this database's reference_profiles table (where the worker reads it)")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from driftline.schemas.contract_catalog import Catalog
    from driftline.stream.monitor.budget import FALLBACK_EVENTS_PER_SECOND
    from driftline.stream.monitor.profile import build_reference_profile
    from driftline.stream.profiles import ProfileDirectory, read_training_data

    catalog = Catalog.load(args.schemas) if args.schemas is not None else Catalog.load()
    contract = catalog.contract(args.model)
    store = _profile_store(args.database_url) if args.database_url else None
    directory = ProfileDirectory(args.profiles if args.profiles is not None else data_dir(args) / "profiles")
    data = read_training_data(args.input, contract, args.model_version, args.label_column)
    profile = build_reference_profile(
        contract, data.columns, model_version=data.model_version, event_times_ms=data.event_times_ms,
        source=str(args.input), seasonality=args.seasonality, labels=data.labels,
    )
    if store is not None:
        from driftline.sinks.database import display_url

        store.save(profile.model, profile.model_version, profile.to_json())
        print(f"reference profile of {profile.model} {profile.model_version} stored in {display_url(args.database_url)}")
    path = directory.save(profile)
    print(f"reference profile written to {path}")
    if profile.events_per_second is None:
        print(
            f"note: the training data has no event times, so the worker assumes the model sees "
            f"{FALLBACK_EVENTS_PER_SECOND:,.0f} events/s until its live rate says more (pass --events-per-second to the worker to set it)"
        )
    else:
        print(f"reference event rate: {profile.events_per_second:,.3g} events/s (the worker's false-alarm budget is spread over it)")
    if profile.labels is not None:
        print(f"labelled rows: {profile.labels['rows']:,} ({profile.labels['task']}; mean error {profile.labels['mean_error']:.3g})")
    cycles = {name: f.seasonal_cycle.period for name, f in sorted(profile.features.items()) if f.seasonal_cycle is not None}
    if cycles:
        print("cycles found: " + ", ".join(f"{name} ({period})" for name, period in cycles.items()))
    return 0


def _profile_store(url: str) -> Any:
    """The database's profile store, once it is known to be reachable and migrated."""
    from driftline.sinks import SqlProfileStore, create_database_engine, current_revision, head_revision
    from driftline.sinks.database import display_url

    engine = create_database_engine(url)
    revision = current_revision(engine)
    if revision != head_revision():
        raise UsageError(
            f"the database {display_url(url)} is at revision {revision or 'none'}, not {head_revision()}; run `driftline db upgrade` first"
        )
    return SqlProfileStore(engine)

"""Engine throughput against a naive per-event baseline, measured in the same run.

    python tests/benchmarks/engine_throughput.py [--events N] [--naive-events N]

Prints events/s for
  (a) the engine from decoded columns (window sketches + contract status counts + detectors),
  (b) end to end from Avro bytes (single-object encoding: decode + contract check + engine),
  (c) a naive baseline: per-event ``fastavro.schemaless_reader`` and per-event river
      ``PageHinkley.update`` for every numeric field (a counter update for categorical fields),
and the ratios. The process is pinned to one core and BLAS threads are limited to one, so the
figures are single-core figures.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse
import io
import resource
import sys
import time
from collections import Counter

import fastavro
from river import drift

from driftline.schemas.codec import Codec, encode_single_object
from driftline.schemas.contract_catalog import Catalog
from driftline.stream.demo.generator import SyntheticStream
from driftline.stream.monitor.engine import EngineConfig, MonitorEngine
from driftline.stream.monitor.profile import build_reference_profile

BATCH = 10_000


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=400_000)
    parser.add_argument("--naive-events", type=int, default=40_000)
    parser.add_argument(
        "--events-per-second",
        type=float,
        default=1000.0,
        help="event-time density of the stream: events per second of event time (1,000 = 60,000 "
        "events per 1-minute window, a busy model; per-window costs are amortised over a window)",
    )
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    print(f"$ python {' '.join(sys.argv)}")
    print(f"python {sys.version.split()[0]}, pinned to 1 core, batch {BATCH} events, "
          f"{args.events_per_second:g} events per second of event time (1-minute windows)")

    catalog = Catalog.load()
    contract = catalog.contract("credit_risk")
    stream = SyntheticStream(contract, seed=11, events_per_second=args.events_per_second)
    profile = build_reference_profile(contract, stream.columns(50_000, seed_offset=1), model_version="v1")
    fields = contract.monitored_fields
    print(f"model credit_risk: {len(contract.fields)} contract fields, {len(fields)} monitored")

    payloads: list[bytes] = []
    for offset in range(0, args.events, BATCH):
        n = min(BATCH, args.events - offset)
        records = stream.records(stream.columns(n, offset=offset), stream.event_times(n, offset=offset), offset=offset)
        payloads.extend(encode_single_object(record, contract.schema_json) for record in records)
    batches = [payloads[i : i + BATCH] for i in range(0, len(payloads), BATCH)]

    # (b) end to end from bytes
    codec = Codec(catalog)
    engine = MonitorEngine(contract, profile, EngineConfig())
    started = time.perf_counter()
    decoded = []
    for batch in batches:
        one = codec.decode_batch(batch, model="credit_risk")
        engine.process(one)
        decoded.append(one)
    engine.flush()
    end_to_end = len(payloads) / (time.perf_counter() - started)

    # (a) engine alone, from the decoded columns
    engine = MonitorEngine(contract, profile, EngineConfig())
    started = time.perf_counter()
    for one in decoded:
        engine.process(one)
    engine.flush()
    engine_only = len(payloads) / (time.perf_counter() - started)

    # decode alone, for the breakdown
    codec = Codec(catalog)
    started = time.perf_counter()
    for batch in batches:
        codec.decode_batch(batch, model="credit_risk")
    decode_only = len(payloads) / (time.perf_counter() - started)

    # (c) naive: per-event decode and per-event river updates
    schema = fastavro.parse_schema(contract.schema_json)
    numeric = [f.name for f in fields if f.kind != "categorical"]
    categorical = [f.name for f in fields if f.kind == "categorical"]
    detectors = {name: drift.PageHinkley() for name in numeric}
    counters = {name: Counter() for name in categorical}
    sample = payloads[: args.naive_events]
    started = time.perf_counter()
    for payload in sample:
        record = fastavro.schemaless_reader(io.BytesIO(payload[10:]), schema, None)
        for name in numeric:
            value = record[name]
            if value is not None:
                detectors[name].update(value)
        for name in categorical:
            counters[name][record[name]] += 1
    naive = len(sample) / (time.perf_counter() - started)

    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"{'path':58s} {'events/s':>12s} {'vs naive':>9s}")
    for label, rate in (
        ("(a) engine from decoded columns", engine_only),
        ("    codec decode + contract check alone", decode_only),
        ("(b) end to end from Avro bytes (decode + check + engine)", end_to_end),
        ("(c) naive: per-event fastavro + river PageHinkley", naive),
    ):
        print(f"{label:58s} {rate:12,.0f} {rate / naive:8.1f}x")
    print(f"events: {len(payloads)} (naive on the first {len(sample)}); peak RSS {peak_mb:.0f} MiB")
    print(f"targets: (a) >= 300,000 events/s -> {'met' if engine_only >= 300_000 else 'NOT met'}; "
          f"(b) >= 3x naive -> {'met' if end_to_end >= 3 * naive else 'NOT met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""What labels cost the engine: throughput without labels, with the join (predictions held, every one labelled), in one run.

    python tests/benchmarks/label_cost.py [--events N]

Prints events/s of the engine from decoded columns (the credit-risk contract, 1,000 events/s of event
time) for
  (a) no labels: the engine as the worker runs it without a label horizon,
  (b) the join: the same engine with a label horizon and a labelled profile — every accepted prediction
      held, its label joined a batch later, performance per window, the concept-drift test and the
      performance estimate (predictions and labels counted together as events/s of predictions),
and the ratio (b)/(a); then the River challenger as a component (test-then-train: scoring and learning
each labelled event), which the engine does not run yet. The process is pinned to one core.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse
import sys
import time

import numpy as np

from driftline.schemas.contract_catalog import Catalog
from driftline.stream.demo.generator import SyntheticStream
from driftline.stream.monitor.challenger import Challenger, default_classifier
from driftline.stream.monitor.engine import EngineConfig, MonitorEngine
from driftline.stream.monitor.profile import build_reference_profile

BATCH = 10_000


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=300_000)
    parser.add_argument("--challenger-events", type=int, default=20_000)
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    print(f"$ python {' '.join(sys.argv)}")
    catalog = Catalog.load()
    contract = catalog.contract("credit_risk")
    stream = SyntheticStream(contract, seed=11, events_per_second=1000.0)
    reference = stream.columns(50_000, seed_offset=1)
    profile = build_reference_profile(
        contract, reference, model_version="v1", labels=stream.labels(reference, seed_offset=1)
    )
    batches, labels = [], []
    for offset in range(0, args.events, BATCH):
        columns = stream.columns(BATCH, offset=offset)
        times = stream.event_times(BATCH, offset=offset)
        batches.append(stream.decoded_batch(columns, times, offset=offset))
        labels.append(([f"evt-{offset + i:09d}" for i in range(BATCH)], times + 60_000, stream.labels(columns, offset=offset)))

    def run(config: EngineConfig, with_labels: bool) -> float:
        engine = MonitorEngine(contract, profile, config)
        started = time.perf_counter()
        for i, batch in enumerate(batches):
            engine.process(batch)
            if with_labels and i > 0:
                engine.process_labels(*labels[i - 1])
        if with_labels:
            engine.process_labels(*labels[-1])
        engine.flush()
        return args.events / (time.perf_counter() - started)

    plain = run(EngineConfig(), with_labels=False)
    joined = run(EngineConfig(label_horizon_ms=3_600_000, label_capacity=1_000_000), with_labels=True)
    print(f"{'path':64s} {'events/s':>10s}")
    print(f"{'(a) engine, no labels':64s} {plain:10,.0f}")
    print(f"{'(b) engine with the label join (every prediction labelled)':64s} {joined:10,.0f}")
    print(f"(b)/(a) = {joined / plain:.2f}")

    n = args.challenger_events
    columns = stream.columns(n, offset=10**7)
    y = stream.labels(columns, offset=10**7)
    features = [f.name for f in contract.monitored_fields if f.role == "feature"]
    rows = [{name: (None if isinstance(v, float) and np.isnan(v) else v) for name, v in zip(features, values, strict=True)}
            for values in zip(*(columns[name].tolist() for name in features), strict=True)]
    challenger = Challenger(default_classifier())
    started = time.perf_counter()
    for start in range(0, n, 1_000):
        challenger.score(rows[start:start + 1_000])
        challenger.learn(rows[start:start + 1_000], y[start:start + 1_000])
    rate = n / (time.perf_counter() - started)
    print(f"{'(c) River challenger, test-then-train per labelled event (component)':64s} {rate:10,.0f}")
    print(f"events: {args.events} (challenger: {n}, {len(features)} features)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""What labels and the challenger cost the engine: throughput without labels, with the join, with the challenger, in one run.

    python tests/benchmarks/label_cost.py [--events N]

Prints events/s of the engine from decoded columns (the credit-risk contract, 1,000 events/s of event
time) for
  (a) no labels: the engine as the worker runs it without a label horizon,
  (b) the join: the same engine with a label horizon and a labelled profile — every accepted prediction
      held, its label joined a batch later, performance per window, the concept-drift test and the
      performance estimate (predictions and labels counted together as events/s of predictions),
  (c) the join and the River challenger on every prediction (scored in event time, learned from its label),
  (d) the same with the challenger on a 10 % sample of the predictions (``challenger_sample=0.1``),
and the ratios to (a) and (b). The process is pinned to one core.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse
import sys
import time

from driftline.schemas.contract_catalog import Catalog
from driftline.stream.demo.generator import SyntheticStream
from driftline.stream.monitor.engine import EngineConfig, MonitorEngine
from driftline.stream.monitor.profile import build_reference_profile

BATCH = 10_000


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=300_000)
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
    labels_on = {"label_horizon_ms": 3_600_000, "label_grace_ms": 60_000, "label_capacity": 1_000_000}
    joined = run(EngineConfig(**labels_on), with_labels=True)
    challenged = run(EngineConfig(**labels_on, challenger="default"), with_labels=True)
    sampled = run(EngineConfig(**labels_on, challenger="default", challenger_sample=0.1), with_labels=True)
    print(f"{'path':64s} {'events/s':>10s} {'/(a)':>6s} {'/(b)':>6s}")
    for name, rate in (("(a) engine, no labels", plain), ("(b) engine with the label join (every prediction labelled)", joined),
                       ("(c) (b) and the River challenger on every prediction", challenged),
                       ("(d) (b) and the challenger on a 10 % sample", sampled)):
        print(f"{name:64s} {rate:10,.0f} {rate / plain:6.2f} {rate / joined:6.2f}")
    print(f"events: {args.events} (and as many labels)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

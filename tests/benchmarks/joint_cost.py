"""Cost of the joint-drift test (JointShift) against one Page–Hinkley test, measured in the same run.

    python tests/benchmarks/joint_cost.py [--batches N] [--repeats N]

Prints events/s of ``JointShift.update_many`` on batches of 50,000 events × 17 features, on a stream
like the reference (no signal) and on one whose correlation structure changed (the test signals every
few dozen events, which takes the Page–Hinkley test's slower restart path), beside a calibrated
``PageHinkley.update_many`` on one feature of the same events, the per-feature mean test the engine
already runs for each numeric field. Also: the per-event statistic alone, and the size of the
checkpointed state. The process is pinned to one core and BLAS threads are limited to one; each
figure is the best of ``--repeats`` passes over ``--batches`` batches (the machine is shared).
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse
import json
import sys
import time
from collections.abc import Callable

import numpy as np

from driftline.detectors.joint import JointShift
from driftline.detectors.page_hinkley import PageHinkley

FEATURES = 17
BATCH = 50_000


def events(n: int, seed: int, sign: float = 1.0) -> np.ndarray:
    """17 features: three latent factors load on the first twelve (correlations 0.3-0.8), five independent.

    ``sign=-1`` flips the first factor's loading on features 0-1, which reverses their correlation with
    features 2-3 and leaves every marginal as it was."""
    rng = np.random.default_rng(seed)
    factors = rng.standard_normal((n, 3))
    loadings = np.zeros((3, FEATURES))
    loadings[0, 0:4] = [0.9, 0.8, 0.7, 0.6]
    loadings[1, 4:8] = [0.85, 0.75, 0.65, 0.55]
    loadings[2, 8:12] = [0.8, 0.7, 0.6, 0.5]
    loadings[0, 0:2] *= sign
    noise = np.sqrt(1.0 - (loadings**2).sum(axis=0))
    values = factors @ loadings + rng.standard_normal((n, FEATURES)) * noise
    values[:, 12] = rng.standard_t(3, size=n)  # one heavy-tailed feature among the independent ones
    return values


def best_rate(run: Callable[[], int], total_events: int, repeats: int) -> tuple[float, int]:
    """Events per second of the fastest of ``repeats`` runs, and the signals of the last."""
    best, signals = float("inf"), 0
    for _ in range(repeats):
        started = time.perf_counter()
        signals = run()
        best = min(best, time.perf_counter() - started)
    return total_events / best, signals


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    print(f"$ python {' '.join(sys.argv)}")
    print(f"python {sys.version.split()[0]}, numpy {np.__version__}, pinned to 1 core; "
          f"{args.batches} batches of {BATCH:,} events × {FEATURES} features, best of {args.repeats}")

    reference = events(50_000, seed=1)
    joint_state = JointShift.calibrate(reference, false_alarm_rate=1e-6 / 37).to_state()
    mean_state = PageHinkley.calibrate(reference[:, 0], false_alarm_rate=1e-6 / 37).to_state()
    watched = len(joint_state["params"]["variances"])
    calm = [events(BATCH, seed=100 + k) for k in range(args.batches)]
    changed = [events(BATCH, seed=200 + k, sign=-1.0) for k in range(args.batches)]
    total = args.batches * BATCH

    def joint(batches: list[np.ndarray]) -> Callable[[], int]:
        def run() -> int:
            detector = JointShift.from_state(joint_state)
            return sum(int(detector.update_many(batch).size) for batch in batches)
        return run

    def statistic_only() -> int:
        detector = JointShift.from_state(joint_state)
        for batch in calm:
            detector.statistic(batch)
        return 0

    columns = [np.ascontiguousarray(batch[:, 0]) for batch in calm]

    def mean_test() -> int:
        detector = PageHinkley.from_state(mean_state)
        return sum(int(detector.update_many(column).size) for column in columns)

    rows = [
        ("PageHinkley.update_many, 1 feature (baseline)", *best_rate(mean_test, total, args.repeats)),
        ("JointShift.update_many, 17 features, stream like the reference", *best_rate(joint(calm), total, args.repeats)),
        ("JointShift.update_many, 17 features, correlation flipped", *best_rate(joint(changed), total, args.repeats)),
        ("JointShift.statistic alone, 17 features", *best_rate(statistic_only, total, args.repeats)),
    ]
    baseline = rows[0][1]
    print(f"JointShift calibrated at 1e-6 / 37 per event: {watched} of {FEATURES} principal components watched")
    print(f"{'path':66s} {'events/s':>12s} {'vs baseline':>12s} {'signals':>8s}")
    for name, rate, signals in rows:
        print(f"{name:66s} {rate:12,.0f} {rate / baseline:11.2f}x {signals:8d}")
    state = json.dumps(JointShift.from_state(joint_state).to_state())
    print(f"checkpointed state: {len(state):,} bytes of JSON ({FEATURES} features, {watched} watched components)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

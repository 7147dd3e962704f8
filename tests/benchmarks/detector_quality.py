"""Detector quality: false alarms on stationary streams and detection delays after mean and variance changes.

For each calibrated detector (Page–Hinkley, ADWIN, PSI, the spread test) and each stationary stream (Gaussian,
Student-t with 3 dof, AR(1) with phi = 0.5), calibrated on a separate 50,000-event reference sample
of the same process (another seed) at the product's target of 1e-6 false alarms per event:

* false alarms per 1,000,000 events, over a long seeded stream fed in 10,000-event batches;
* median / p90 detection delay (events from the change to the first signal at or after it) for a
  1-sigma, a 0.5-sigma and a 0.25-sigma mean shift, sigma = the stream's marginal standard deviation,
  a gradual drift (the mean rising linearly by 1 sigma over the 5,000 events after the change, then
  staying there), and a doubling of the variance (values after the change times sqrt(2); every stream
  has mean 0); each
  trial starts with 5,000-5,999 pre-change events (random offset, so that change points do not
  align with ADWIN blocks or PSI windows), and a trial without a signal in the 20,000 events
  after the change is a miss (counted as an infinite delay in the percentiles).

Beside them, on the same streams and changes, river's ADWIN and PageHinkley with their defaults (fed
one event at a time, as river is used; fewer events and trials, stated in the table, since a Python
call per event is slow), and the throughput of ``update_many``.

The seeds here (base 20_240_601) are not the ones the detectors' safety margins were tuned on.

Usage: ``python tests/benchmarks/detector_quality.py [--quick] [--seed N]``
"""

from __future__ import annotations

import argparse
import math
import platform
import sys
import time
from collections.abc import Callable

import numpy as np
from stationary_streams import chunks

from driftline.detectors.adwin import ADWIN
from driftline.detectors.base import DriftDetector
from driftline.detectors.page_hinkley import PageHinkley
from driftline.detectors.psi import PSI
from driftline.detectors.scale import ScaleShift

TARGET_RATE = 1e-6
REFERENCE_SIZE = 50_000
HORIZON = 20_000
SHIFTS = (1.0, 0.5, 0.25)
#: Events over which the gradual drift's mean rises by 1 sigma.
RAMP = 5_000
#: The changes of the delay columns: an abrupt mean shift (in marginal standard deviations), the gradual
#: drift, or the variance doubled.
CHANGES: tuple[tuple[str, float | str], ...] = (*((f"{shift:g}σ", shift) for shift in SHIFTS), ("ramp", "ramp"), ("var×2", "variance"))
STREAMS = {
    # name: (marginal standard deviation, index used in seeds)
    "gaussian": (1.0, 0),
    "student_t3": (math.sqrt(3.0), 1),
    "ar1_phi0.5": (math.sqrt(1.0 / (1.0 - 0.25)), 2),
}
DETECTORS: dict[str, Callable[[np.ndarray], DriftDetector]] = {
    "PageHinkley": lambda reference: PageHinkley.calibrate(reference, TARGET_RATE),
    "ADWIN": lambda reference: ADWIN.calibrate(reference, TARGET_RATE),
    "PSI": lambda reference: PSI.calibrate(reference, TARGET_RATE),
    "ScaleShift": lambda reference: ScaleShift.calibrate(reference, TARGET_RATE),
}


def sample(stream: str, n: int, seed: list[int]) -> np.ndarray:
    return np.concatenate(list(chunks(stream, n, seed)))


def false_alarms(detector: DriftDetector, stream: str, total: int, seed: list[int]) -> int:
    count = 0
    for chunk in chunks(stream, total, seed):
        for start in range(0, chunk.size, 10_000):
            count += detector.update_many(chunk[start : start + 10_000]).size
    return count


def river_hits(make: Callable[[], object], values: np.ndarray) -> np.ndarray:
    """Indices where a fresh river detector signals on ``values`` (one ``update`` per event, as river is used)."""
    detector = make()
    hits = []
    for index, value in enumerate(values.tolist()):
        detector.update(value)  # type: ignore[attr-defined]
        if detector.drift_detected:  # type: ignore[attr-defined]
            hits.append(index)
    return np.asarray(hits, dtype=np.int64)


def percentile(delays: np.ndarray, q: float) -> str:
    value = float(np.percentile(delays, q, method="higher"))
    return f">{HORIZON}" if math.isinf(value) else f"{value:.0f}"


def river_rows(stream: str, sigma: float, stream_index: int, base: int, fa_events: int, trials: int) -> None:
    """river's ADWIN and PageHinkley (defaults) on the same stream and changes, in the table's format."""
    from river import drift

    for name, make in (("river ADWIN", drift.ADWIN), ("river PH", drift.PageHinkley)):
        alarms = int(river_hits(make, sample(stream, fa_events, [base, stream_index, 1])).size)
        row = f"{name:<12} {stream:<11} {alarms / (fa_events / 1e6):>6.0f} {alarms:>6d}"
        early = 0
        for change_index, (label, shift) in enumerate(CHANGES):
            delays = []
            for trial in range(trials):
                rng = np.random.default_rng([base, stream_index, 2, change_index, trial])
                change = 5_000 + int(rng.integers(0, 1_000))
                values = shifted(sample(stream, change + HORIZON, [base, stream_index, 3, change_index, trial]), change, shift, sigma)
                hits = river_hits(make, values)
                early += int((hits < change).sum())
                after = hits[hits >= change]
                delays.append(float(after[0] - change) if after.size else math.inf)
            d = np.asarray(delays)
            row += f" | {'':<{len(label) + 1}} {percentile(d, 50):>6} {percentile(d, 90):>6} {int(np.isinf(d).sum()):>4}"
        row += f" | {early:>7d} / {trials * len(CHANGES) * 5_500 / 1e6:.1f}M"
        print(row, flush=True)


def shifted(values: np.ndarray, change: int, shift: float | str, sigma: float) -> np.ndarray:
    """``values`` with the change applied from index ``change`` on."""
    if shift == "variance":
        values[change:] *= math.sqrt(2.0)
    elif shift == "ramp":
        values[change:] += sigma * np.minimum(np.arange(1, values.size - change + 1) / RAMP, 1.0)
    else:
        values[change:] += float(shift) * sigma
    return values


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (< 1 minute)")
    parser.add_argument("--seed", type=int, default=20_240_601, help="base seed of every stream")
    args = parser.parse_args(argv)
    fa_events = 1_000_000 if args.quick else 20_000_000
    trials = 40 if args.quick else 300
    river_fa_events = 100_000 if args.quick else 1_000_000
    river_trials = 10 if args.quick else 40
    base = args.seed

    print(f"$ python {' '.join(['tests/benchmarks/detector_quality.py', *argv])}")
    print(f"python {platform.python_version()}, numpy {np.__version__}, {platform.machine()}")
    print(
        f"target {TARGET_RATE:g} false alarms/event; reference {REFERENCE_SIZE:,} events per stream (own seed); "
        f"false alarms over {fa_events:,} events per stream; {trials} trials per change, horizon {HORIZON:,}; "
        f"river (defaults): {river_fa_events:,} events, {river_trials} trials"
    )
    print()
    header = f"{'detector':<12} {'stream':<11} {'FA/1M':>6} {'alarms':>6}"
    for label, _ in CHANGES:
        header += f" | {label}: {'median':>6} {'p90':>6} {'miss':>4}"
    header += f" | {'pre-change FA':>13}"
    print(header)
    print("-" * len(header))
    started = time.perf_counter()
    for stream, (sigma, stream_index) in STREAMS.items():
        reference = sample(stream, REFERENCE_SIZE, [base, stream_index, 0])
        calibrated = {name: make(reference) for name, make in DETECTORS.items()}
        states = {name: detector.to_state() for name, detector in calibrated.items()}
        delays: dict[tuple[str, str], list[float]] = {(name, label): [] for name in DETECTORS for label, _ in CHANGES}
        early: dict[str, int] = {name: 0 for name in DETECTORS}
        for change_index, (label, shift) in enumerate(CHANGES):
            for trial in range(trials):
                rng = np.random.default_rng([base, stream_index, 2, change_index, trial])
                change = 5_000 + int(rng.integers(0, 1_000))
                values = shifted(sample(stream, change + HORIZON, [base, stream_index, 3, change_index, trial]), change, shift, sigma)
                for name in DETECTORS:
                    hits = type(calibrated[name]).from_state(states[name]).update_many(values)
                    early[name] += int((hits < change).sum())
                    after = hits[hits >= change]
                    delays[(name, label)].append(float(after[0] - change) if after.size else math.inf)
        for name, detector in calibrated.items():
            alarms = false_alarms(detector, stream, fa_events, [base, stream_index, 1])
            row = f"{name:<12} {stream:<11} {alarms / (fa_events / 1e6):>6.2f} {alarms:>6d}"
            for label, _ in CHANGES:
                d = np.asarray(delays[(name, label)])
                row += f" | {'':<{len(label) + 1}} {percentile(d, 50):>6} {percentile(d, 90):>6} {int(np.isinf(d).sum()):>4}"
            row += f" | {early[name]:>7d} / {trials * len(CHANGES) * 5_500 / 1e6:.1f}M"
            print(row, flush=True)
        river_rows(stream, sigma, stream_index, base, river_fa_events, river_trials)
    print()
    print("pre-change FA: false alarms in the trials' pre-change segments / events in them (about 5,500 each).")
    print("AR(1) phi=0.5 carries a third of the information per event of iid data (long-run variance 3x the")
    print("marginal), so its delays are about three times longer at the same false-alarm rate.")
    print()

    # Throughput of update_many on 10,000-value batches of a stationary stream.
    print("throughput: update_many on 10,000-value batches (stationary Gaussian, after 1M warm-up values)")
    batch = sample("gaussian", 10_000, [base, 0, 5])
    warm = sample("gaussian", 1_000_000, [base, 0, 6])
    reference = sample("gaussian", REFERENCE_SIZE, [base, 0, 0])
    for name, make in DETECTORS.items():
        detector = make(reference)
        detector.update_many(warm)
        repeats = 200
        tick = time.perf_counter()
        for _ in range(repeats):
            detector.update_many(batch)
        seconds = (time.perf_counter() - tick) / repeats
        print(f"  {name:<12} {seconds * 1e3:7.3f} ms per batch   {10_000 / seconds / 1e6:6.1f} M values/s")
    print()
    print(f"elapsed {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main(sys.argv[1:])

"""False-alarm rate per event of the calibrated detectors on every kind of field (issue 10, item 2).

For each detector (Page–Hinkley, the spread test ScaleShift, ADWIN), each field kind and each target
rate, ``--references`` references of 50,000 values are drawn from the process (each its own seed) and
each calibrated detector reads its own live stream of the same process (another seed) in
10,000-value batches; alarms are summed over the references, so the figure is the rate averaged over
what a reference of that size gives, not the luck of one reference.

Field kinds:

* ``gaussian``, ``student_t3``, ``ar1`` (phi = 0.5, reference and stream in time order);
* ``zero_inflated``: 90 % zeros, otherwise 1 + NegativeBinomial(2, 0.5) (mean 3, values up to ~15);
* ``poisson0.1`` / ``poisson0.3``: the generator's ``public_records`` / ``delinquencies_2y``;
* ``binary0.05``, ``binary0.5``: Bernoulli(p);
* ``lowcard5``: the values 1..5 with probabilities 0.4, 0.3, 0.15, 0.1, 0.05.

Columns: alarms counted, expected at the target (events x target), measured / target, and a 95 %
Poisson interval of that ratio. The calibrations aim at ``target / SAFETY_FACTOR`` (a deliberate
margin, see ``detectors/page_hinkley.py``); the column ``x margin`` is measured / (target / margin), the
accuracy of the run-length model itself.

``--before`` measures the calibration as it was before the run-length model (``detectors/run_length.py``)
and ADWIN's skewness correction: the same calibrated detectors with those parameters removed, which is
what a state written before them loads as (one Siegmund threshold for both sides of Page–Hinkley and
the spread test, Gaussian tails in ADWIN's cut test).

Usage: ``python tests/benchmarks/discrete_calibration.py [--before] [--kinds K ...] [--detectors D ...]
[--targets 1e-4 1e-5] [--references 4] [--events-per-reference 2.5e6]``; without
``--events-per-reference`` it uses 1e6 events per reference at 1e-4 and 5e6 below (each scaled
by 1e-4 / target beyond 1e-5).
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse
import platform
import sys
import time
from collections.abc import Callable

import numpy as np
from stationary_streams import chunks, poisson_interval

from driftline.detectors import adwin as adwin_module
from driftline.detectors import page_hinkley as page_hinkley_module
from driftline.detectors.adwin import ADWIN
from driftline.detectors.base import DriftDetector
from driftline.detectors.page_hinkley import PageHinkley
from driftline.detectors.scale import ScaleShift

REFERENCE_SIZE = 50_000
BATCH = 10_000
KINDS = ("gaussian", "student_t3", "ar1", "zero_inflated", "poisson0.1", "poisson0.3", "binary0.05", "binary0.5", "lowcard5")
DETECTORS: dict[str, Callable[[np.ndarray, float], DriftDetector]] = {
    "PageHinkley": lambda reference, rate: PageHinkley.calibrate(reference, rate),
    "ScaleShift": lambda reference, rate: ScaleShift.calibrate(reference, rate),
    "ADWIN": lambda reference, rate: ADWIN.calibrate(reference, rate),
}
#: Parameters added by the run-length model and ADWIN's skewness correction (see ``--before``).
NEW_PARAMETERS = (
    *("threshold_down", "adjustment_up", "overshoot_up", "adjustment_down", "overshoot_down", "silent_side"),
    *("tail_points", "tail_factors"),
)


def as_before(detector: DriftDetector, rate: float) -> DriftDetector:
    """The detector as a state written before the new parameters loads, re-targeted to ``rate``."""
    state = detector.to_state()
    # A spread test holds its Page–Hinkley test's params twice: as a constructor argument and in its state.
    places = [state["params"]["test"], state["state"]["test"]["params"]] if isinstance(detector, ScaleShift) else [state["params"]]
    for params in places:
        for key in NEW_PARAMETERS:
            params.pop(key, None)
    restored = type(detector).from_state(state)
    if not isinstance(restored, ADWIN):
        restored.retarget(rate)  # type: ignore[attr-defined]
    return restored


MARGINS = {"PageHinkley": page_hinkley_module.SAFETY_FACTOR, "ScaleShift": page_hinkley_module.SAFETY_FACTOR, "ADWIN": adwin_module.SAFETY_FACTOR}


def sample(kind: str, n: int, seed: list[int]) -> np.ndarray:
    return np.concatenate(list(chunks(kind, n, seed)))


def alarms_on(detector: DriftDetector, kind: str, total: int, seed: list[int]) -> int:
    count = 0
    for chunk in chunks(kind, total, seed):
        for start in range(0, chunk.size, BATCH):
            count += detector.update_many(chunk[start : start + BATCH]).size
    return count


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kinds", nargs="+", default=list(KINDS), choices=KINDS)
    parser.add_argument("--detectors", nargs="+", default=list(DETECTORS), choices=list(DETECTORS))
    parser.add_argument("--targets", nargs="+", type=float, default=[1e-4, 1e-5])
    parser.add_argument("--references", type=int, default=4)
    parser.add_argument("--events-per-reference", type=float, default=None)
    parser.add_argument("--seed", type=int, default=20_250_310, help="base seed of every reference and stream")
    parser.add_argument("--before", action="store_true", help="the calibration before the run-length model and the skewness correction")
    args = parser.parse_args(argv)

    print(f"$ python {' '.join(['tests/benchmarks/discrete_calibration.py', *argv])}")
    print(f"python {platform.python_version()}, numpy {np.__version__}, {platform.machine()}")
    print(f"{args.references} references of {REFERENCE_SIZE:,} values per (kind, target), each with its own live stream; seed {args.seed}")
    print()
    header = (
        f"{'detector':<12} {'kind':<14} {'target':>7} {'events':>7} {'alarms':>6} {'expect':>7} "
        f"{'meas/target':>11} {'95% interval':>13} {'x margin':>8} {'per ref':>18} {'calib ms':>8}"
    )
    print(header)
    print("-" * len(header))
    started = time.perf_counter()
    for name in args.detectors:
        make = DETECTORS[name]
        for kind_index, kind in enumerate(args.kinds):
            kind_seed = KINDS.index(kind)
            del kind_index
            for target in args.targets:
                if args.events_per_reference is not None:
                    per_reference = int(args.events_per_reference)
                else:
                    per_reference = 1_000_000 if target >= 1e-4 else int(5_000_000 * max(1.0, 1e-5 / target))
                counts = []
                calibration_seconds = 0.0
                for reference_index in range(args.references):
                    reference = sample(kind, REFERENCE_SIZE, [args.seed, kind_seed, 0, reference_index])
                    tick = time.perf_counter()
                    detector = make(reference, target)
                    if args.before:
                        detector = as_before(detector, target)
                    calibration_seconds += time.perf_counter() - tick
                    counts.append(alarms_on(detector, kind, per_reference, [args.seed, kind_seed, 1, reference_index]))
                events = per_reference * args.references
                alarms = sum(counts)
                expected = events * target
                low, high = poisson_interval(alarms)
                margin = MARGINS[name]
                print(
                    f"{name:<12} {kind:<14} {target:>7.0e} {events / 1e6:>6.1f}M {alarms:>6d} {expected:>7.0f} "
                    f"{alarms / expected:>11.2f} {f'{low / expected:.2f}-{high / expected:.2f}':>13} "
                    f"{alarms / expected * margin:>8.2f} {','.join(str(c) for c in counts):>18} "
                    f"{calibration_seconds / args.references * 1e3:>8.0f}",
                    flush=True,
                )
    print()
    print(f"elapsed {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main(sys.argv[1:])

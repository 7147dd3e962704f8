"""Per-window false-alarm rate of WindowPSIThreshold.threshold(n, rate), as the engine uses it.

For each field kind and window size: R references of N values (in time order), each binned as the
profile bins it (20 quantile bins via quantile_bin_edges for numeric fields; categories + an
"unseen" bucket for categorical ones), calibrated as the profile calibrates it
(WindowPSIThreshold.calibrate(bins, k, window_size=1000)); then M windows per reference drawn from
the same (stationary) process, PSI computed by the engine's own function (_psi_rows with the
engine's epsilon 1e-4 on the reference's proportions), compared with threshold(n, rate).

Independent kinds draw window counts as Multinomial(n, true bin probabilities) -- exact for iid
values; AR(1) windows are simulated value by value (consecutive windows of one long stream).

Usage: python tests/benchmarks/window_psi_calibration.py [--scale 0.1] [--kinds a,b] [--sizes 50,100] [--out file.json]
"""

from __future__ import annotations

import argparse
import json
import math
import time
import zlib

import numpy as np
from scipy import stats
from scipy.signal import lfilter

from driftline.detectors.distances import quantile_bin_edges
from driftline.detectors.psi import WindowPSIThreshold, _psi_rows

IMPLEMENTATION = "detectors/psi.py"

EPSILON = 1e-4
N_BINS = 20
CALIBRATION_WINDOW = 1000


# ----- field kinds: reference values / bins, true bin probabilities or a window sampler -----

def count_pmf(upto: int = 200) -> np.ndarray:
    x = np.arange(upto)
    return 0.8 * stats.poisson.pmf(x, 0.1) + 0.2 * stats.nbinom.pmf(x, 1, 0.25)  # mean 0.08 + 0.6


def draw_count(rng, size):
    pick = rng.random(size) < 0.8
    return np.where(pick, rng.poisson(0.1, size), rng.negative_binomial(1, 0.25, size)).astype(float)


LOW_CARD_VALUES = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
LOW_CARD_P = np.array([0.4, 0.3, 0.15, 0.1, 0.05])
CATEGORY_P = np.array([0.5, 0.3, 0.15, 0.0488, 0.001, 0.0002])  # a rare (0.1 %) and a very rare (0.02 %) one
BINARY_P = 0.1


def numeric_reference(kind, rng, size):
    if kind == "gaussian":
        return rng.standard_normal(size)
    if kind == "student_t3":
        return rng.standard_t(3, size)
    if kind == "ar1":
        return ar1(rng, size)
    if kind == "count":
        return draw_count(rng, size)
    if kind == "binary":
        return (rng.random(size) < BINARY_P).astype(float)
    if kind == "five_values":
        return rng.choice(LOW_CARD_VALUES, size=size, p=LOW_CARD_P)
    raise ValueError(kind)


def ar1(rng, size):
    return lfilter([1.0], [1.0, -0.5], rng.standard_normal(size + 200))[200:] * math.sqrt(0.75)  # unit variance


def true_bin_probabilities(kind, edges):
    inner = edges[1:-1]
    if kind in ("gaussian", "student_t3"):
        cdf = stats.norm.cdf(inner) if kind == "gaussian" else stats.t.cdf(inner, 3)
        return np.diff(np.concatenate(([0.0], cdf, [1.0])))
    if kind == "count":
        pmf = count_pmf()
        pmf = pmf / pmf.sum()
        bins = np.searchsorted(inner, np.arange(pmf.size, dtype=float), side="right")
        return np.bincount(bins, weights=pmf, minlength=inner.size + 1)
    if kind == "binary":
        bins = np.searchsorted(inner, np.array([0.0, 1.0]), side="right")
        return np.bincount(bins, weights=[1 - BINARY_P, BINARY_P], minlength=inner.size + 1)
    if kind == "five_values":
        bins = np.searchsorted(inner, LOW_CARD_VALUES, side="right")
        return np.bincount(bins, weights=LOW_CARD_P, minlength=inner.size + 1)
    raise ValueError(kind)


def reference_bins(kind, rng, size):
    """(bins of each reference value in time order, k, true probabilities or None, edges or None)."""
    if kind == "categorical":
        bins = rng.choice(CATEGORY_P.size, size=size, p=CATEGORY_P)
        k = CATEGORY_P.size + 1  # + the "unseen" bucket (reference count 0)
        return bins, k, np.append(CATEGORY_P, 0.0), None
    values = numeric_reference(kind, rng, size)
    edges = quantile_bin_edges(values, N_BINS)
    bins = np.searchsorted(edges[1:-1], values, side="right")
    k = edges.size - 1
    probabilities = None if kind == "ar1" else true_bin_probabilities(kind, edges)
    return bins, k, probabilities, edges


def window_counts(kind, rng, n, m, probabilities, edges):
    if probabilities is not None:
        return rng.multinomial(n, probabilities, size=m)
    # AR(1): one long stream cut into m windows, in chunks of ~2e7 values
    k = edges.size - 1
    out = np.empty((m, k), dtype=np.int64)
    per_chunk = max(1, 20_000_000 // n)
    state = rng.standard_normal() * 1.0  # stationary start (unit variance)
    for start in range(0, m, per_chunk):
        rows = min(per_chunk, m - start)
        noise = rng.standard_normal(rows * n) * math.sqrt(0.75)
        values, _ = lfilter([1.0], [1.0, -0.5], noise, zi=[0.5 * state])
        state = values[-1]
        bins = np.searchsorted(edges[1:-1], values, side="right").reshape(rows, n)
        out[start:start + rows] = np.bincount((bins + (np.arange(rows) * k)[:, None]).ravel(), minlength=rows * k).reshape(rows, k)
    return out


# ----- the measurement -----

def measure(kind, n, rates, references, windows_per_reference, reference_size, seed):
    rng = np.random.default_rng(seed)
    alarms = {r: [] for r in rates}
    for _ in range(references):
        bins, k, probabilities, edges = reference_bins(kind, rng, reference_size)
        proportions = np.bincount(bins, minlength=k) / bins.size
        calibrated = WindowPSIThreshold.calibrate(bins, k, window_size=CALIBRATION_WINDOW)
        threshold_of = _threshold_function(calibrated, proportions)
        counts = window_counts(kind, rng, n, windows_per_reference, probabilities, edges)
        psi = _psi_rows(counts.astype(float), np.maximum(proportions, EPSILON), n, EPSILON)
        for rate in rates:
            alarms[rate].append(int((psi > threshold_of(n, rate)).sum()))
    result = {}
    for rate in rates:
        per_reference = np.array(alarms[rate])
        total_windows = references * windows_per_reference
        count = int(per_reference.sum())
        measured = count / total_windows
        # Cluster-robust standard error (references differ: the reference's own sampling error is
        # shared by all its windows) and an exact Poisson interval for the count alone.
        rates_per_reference = per_reference / windows_per_reference
        cluster_se = float(rates_per_reference.std(ddof=1) / math.sqrt(references)) if references > 1 else math.nan
        _low, _high = stats.poisson.interval(0.95, count) if count else (0.0, stats.poisson.ppf(0.95, 0.0))
        lo_exact = stats.chi2.ppf(0.025, 2 * count) / 2 if count else 0.0
        hi_exact = stats.chi2.ppf(0.975, 2 * count + 2) / 2
        result[rate] = {
            "alarms": count,
            "windows": total_windows,
            "measured": measured,
            "ratio_to_target": measured / rate,
            "ratio_to_intended": measured / (rate / 3.0),
            "poisson95": [lo_exact / total_windows, hi_exact / total_windows],
            "cluster_se": cluster_se,
        }
    return result


def _threshold_function(calibrated, proportions):
    # The engine calls threshold(n, rate) on WindowPSIThreshold(weights, rows); a fixed method may
    # want the reference proportions too (passed when the class accepts them).
    try:
        full = WindowPSIThreshold(calibrated.weights, calibrated.reference_size, reference_proportions=tuple(proportions))  # type: ignore[call-arg]
    except TypeError:
        full = calibrated
    return full.threshold


PLAN = {
    # kind: {n: (references, windows per reference)}
    # n = 100,000 against N = 50,000: the reference's own error is two thirds of the variance, so the
    # rate varies a lot between references -- many references, few windows each.
    "iid": {50: (50, 4000), 100: (50, 4000), 300: (50, 4000), 1000: (50, 4000), 10_000: (50, 4000), 100_000: (400, 50)},
    "ar1": {50: (30, 10_000), 100: (30, 10_000), 300: (30, 10_000), 1000: (30, 10_000), 10_000: (30, 1000), 100_000: (100, 30)},
}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--kinds", default="gaussian,student_t3,ar1,count,binary,five_values,categorical")
    parser.add_argument("--sizes", default="50,100,300,1000,10000,100000")
    parser.add_argument("--reference-size", type=int, default=50_000)
    parser.add_argument("--rates", default="1e-2,1e-3")
    parser.add_argument("--scale", type=float, default=1.0, help="multiply windows per reference")
    parser.add_argument("--plan", default="", help="references,windows per reference (overrides PLAN)")
    parser.add_argument("--out", default="")
    args = parser.parse_args()
    rates = [float(r) for r in args.rates.split(",")]
    table = []
    print(f"implementation: {IMPLEMENTATION}; reference size N = {args.reference_size}; intended rate = target / 3 (SAFETY_FACTOR)")
    print(f"{'kind':12s} {'n':>7s} {'target':>7s} {'alarms':>7s} {'windows':>8s} {'measured':>10s} {'x target':>9s} "
          f"{'x target/3':>10s}  95% CI (Poisson)        cluster SE")
    for kind in args.kinds.split(","):
        plan = PLAN["ar1" if kind == "ar1" else "iid"]
        for n in (int(s) for s in args.sizes.split(",")):
            references, per = plan[n] if not args.plan else (int(x) for x in args.plan.split(","))
            per = max(1, int(per * args.scale))
            started = time.time()
            result = measure(kind, n, rates, references, per, args.reference_size, seed=zlib.crc32(f'{kind}/{n}'.encode()))
            for rate, r in result.items():
                table.append({"kind": kind, "n": n, "target": rate, **r})
                print(f"{kind:12s} {n:7d} {rate:7.0e} {r['alarms']:7d} {r['windows']:8d} {r['measured']:10.2e} {r['ratio_to_target']:9.2f} "
                      f"{r['ratio_to_intended']:10.2f}  [{r['poisson95'][0]:.2e}, {r['poisson95'][1]:.2e}]  "
                      f"{r['cluster_se']:.1e}   ({time.time() - started:.0f} s)",
                      flush=True)
    if args.out:
        with open(args.out, "w") as handle:
            json.dump(table, handle, indent=1)


if __name__ == "__main__":
    main()

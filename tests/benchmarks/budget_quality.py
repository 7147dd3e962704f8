"""False alerts per model-month on clean streams, at 10 and at 1,000 events per second of event time.

    python tests/benchmarks/budget_quality.py [--slow-days 7] [--fast-days 3] [--budgets 1,300]

The whole engine (every streaming detector and window check of the example credit-risk contract)
runs over clean synthetic streams — the generator without drift episodes, fresh values throughout —
spanning simulated days of event time, with the model's budget in alerts per month
(``--false-alarms-per-month``). It prints, per rate and budget: the alerts raised (what on-call
would see, after the 15-minute episode gate), the tests' firings before the gate, both scaled to
alerts per 30 days, and the budget. A budget of 1 a month cannot be told apart from 0 in a few
days, so a looser budget (300 a month) runs too: its expected count is large enough to measure.

Events go to the engine as decoded columns (``SyntheticStream.decoded_batch``: the codec's work is
not what is measured here; tests/unit/stream/demo/test_generator.py checks it against the codec).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter

import numpy as np
from stationary_streams import poisson_interval

from driftline.schemas.contract import Contract
from driftline.schemas.contract_catalog import Catalog
from driftline.stream.demo.generator import SyntheticStream
from driftline.stream.monitor.budget import SECONDS_PER_MONTH, AlarmBudget
from driftline.stream.monitor.engine import EngineConfig, MonitorEngine
from driftline.stream.monitor.profile import ReferenceProfile, build_reference_profile

CHUNK = 100_000


def _psi_fired(psi: float | None, threshold: float | None) -> bool:
    return psi is not None and threshold is not None and psi > threshold


def field_kinds(contract: Contract, columns: dict[str, np.ndarray]) -> dict[str, str]:
    """Each monitored field's kind, from its reference values (the kinds the calibration must hold on)."""
    kinds: dict[str, str] = {}
    for spec in contract.monitored_fields:
        if spec.kind == "categorical":
            kinds[spec.name] = "categorical"
            continue
        values = columns[spec.name][np.isfinite(columns[spec.name])]
        distinct = np.unique(values)
        integer = bool(np.all(values == np.round(values)))
        centred = (values - values.mean()) / max(values.std(), 1e-12)
        if distinct.size == 2:
            kinds[spec.name] = "binary"
        elif integer and np.mean(values == 0) >= 0.5:
            kinds[spec.name] = "count"
        elif distinct.size <= 10:
            kinds[spec.name] = "low-cardinality"
        elif abs(float(np.mean(centred**3))) > 2 or float(np.mean(centred**4)) > 6:
            kinds[spec.name] = "heavy/skewed"
        else:
            kinds[spec.name] = "continuous"
    return kinds


def tests_by_kind(contract: Contract, kinds: dict[str, str]) -> Counter[str]:
    """How many of the model's tests watch each kind of field (the budget's shares)."""
    shares: Counter[str] = Counter()
    for spec in contract.monitored_fields:
        numeric = spec.kind != "categorical"
        shares[kinds[spec.name]] += 1 + (2 if numeric else 0) + (1 if spec.role == "prediction_score" else 0)
    shares["joint"] += AlarmBudget.for_fields(contract.monitored_fields, 1.0).tests - sum(shares.values())
    return shares


def run(contract: Contract, profile: ReferenceProfile, kinds: dict[str, str], rate: float, days: float, budgets: list[float],
        seed: int) -> list[str]:
    stream = SyntheticStream(contract, seed=seed, events_per_second=rate)
    engines = {b: MonitorEngine(contract, profile, EngineConfig(false_alarms_per_month=b)) for b in budgets}
    alerts: dict[float, Counter[str]] = {b: Counter() for b in budgets}
    by_kind: dict[float, Counter[str]] = {b: Counter() for b in budgets}
    firings: dict[float, int] = {b: 0 for b in budgets}
    total = int(days * 86_400 * rate)
    started = time.perf_counter()
    for offset in range(0, total, CHUNK):
        n = min(CHUNK, total - offset)
        batch = stream.decoded_batch(stream.columns(n, offset=offset), stream.event_times(n, offset=offset), offset=offset)
        for budget, engine in engines.items():
            result = engine.process(batch)
            alerts[budget].update(f"{a.kind}/{a.detector}" for a in result.alerts)
            by_kind[budget].update(kinds.get(str(a.feature), "joint" if a.kind == "joint_drift" else "model") for a in result.alerts)
            firings[budget] += len(result.signals) + sum(1 for w in result.feature_windows if _psi_fired(w.psi, w.psi_threshold))
    for budget, engine in engines.items():
        result = engine.flush()
        alerts[budget].update(f"{a.kind}/{a.detector}" for a in result.alerts)
        by_kind[budget].update(kinds.get(str(a.feature), "joint" if a.kind == "joint_drift" else "model") for a in result.alerts)
    seconds = time.perf_counter() - started
    months = days * 86_400 / SECONDS_PER_MONTH
    lines = []
    for budget in budgets:
        count = sum(alerts[budget].values())
        low, high = poisson_interval(count)
        listing = ", ".join(f"{k} {v}" for k, v in sorted(alerts[budget].items())) or "-"
        lines.append(
            f"{rate:>7,.0f} {days:>5g} {total:>12,} {budget:>7g} {count:>7} {count / months:>10.2f} "
            f"{low / months:>7.2f}-{high / months:<8.2f} {firings[budget] / months:>9.2f}   {listing}"
        )
    shares = tests_by_kind(contract, kinds)
    tests = sum(shares.values())
    for budget in budgets:
        lines.append(f"        by field kind at budget {budget:g}: alerts per month (the kind's share of the budget): " + ", ".join(
            f"{kind} {by_kind[budget][kind] / months:.1f} ({budget * count / tests:.1f})" for kind, count in sorted(shares.items())
        ) + (f", model-level {by_kind[budget]['model'] / months:.1f}" if by_kind[budget]["model"] else ""))
    lines.append(f"        ({total:,} events through {len(budgets)} engine(s) in {seconds:.0f} s; "
                 f"rate used by the engine at the end: {engines[budgets[0]].events_per_second:,.1f} events/s)")
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slow-days", type=float, default=7.0, help="simulated days at 10 events/s (default 7)")
    parser.add_argument("--fast-days", type=float, default=3.0, help="simulated days at 1,000 events/s (default 3)")
    parser.add_argument("--budgets", default="1,300", help="false alarms per month to run at 10 events/s (default 1,300)")
    parser.add_argument("--fast-budget", type=float, default=300.0, help="the budget at 1,000 events/s (default 300)")
    args = parser.parse_args()
    print(f"$ python {' '.join(sys.argv)}")
    catalog = Catalog.load()
    contract = catalog.contract("credit_risk")
    print(f"{'ev/s':>7} {'days':>5} {'events':>12} {'budget':>7} {'alerts':>7} {'per month':>10} {'95% CI':>16} {'firings/mo':>9}   alerts by kind")
    budgets = [float(b) for b in args.budgets.split(",")]
    for rate, days, run_budgets, seed in ((10.0, args.slow_days, budgets, 21), (1000.0, args.fast_days, [args.fast_budget], 22)):
        reference = SyntheticStream(contract, seed=seed + 100, events_per_second=rate)
        columns = reference.columns(50_000, seed_offset=1)
        profile = build_reference_profile(contract, columns, model_version="v1", event_times_ms=reference.event_times(50_000))
        kinds = field_kinds(contract, columns)
        if rate == 10.0:
            groups = {kind: ", ".join(n for n, k in kinds.items() if k == kind) for kind in sorted(set(kinds.values()))}
            print("field kinds: " + "; ".join(f"{kind}: {names}" for kind, names in groups.items()))
        for line in run(contract, profile, kinds, rate, days, run_budgets, seed):
            print(line, flush=True)
    print("per month: alerts / simulated months (30 days); 95% CI: Garwood interval of the Poisson mean, per month;")
    print("firings/mo: streaming-detector signals and window PSI verdicts before the episode gate, per month.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
